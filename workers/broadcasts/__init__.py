"""Broadcasts: an admin's message fanned out as outbox rows in bulk, drained at the limit by
several workers at once, with progress edited into one message and a cancel button.

`handlers`: the commands (start, confirm, cancel). `engine`: fan-out, drain slices, progress.
"""
