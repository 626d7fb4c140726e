"""Upkeep: the scheduled maintenance jobs' services (the task layer is maintenance_tasks)."""
