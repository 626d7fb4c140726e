"""Queue names and the routing rule both the bot (producer) and the workers use."""

from __future__ import annotations

INTERACTIVE = "interactive"
NOTIFICATIONS = "notifications"
REPORTS = "reports"
PRIVACY = "privacy"
MAINTENANCE = "maintenance"
ALL_QUEUES = (INTERACTIVE, NOTIFICATIONS, REPORTS, PRIVACY, MAINTENANCE)

# Task-name prefix -> queue, per docs/design.md "Queues and task names".
_PREFIX_TO_QUEUE = {
    "commands": INTERACTIVE,
    "notifications": NOTIFICATIONS,
    "reports": REPORTS,
    "privacy": PRIVACY,
    "maintenance": MAINTENANCE,
}


def queue_for(task_name: str) -> str:
    prefix = task_name.split(".", 1)[0]
    try:
        return _PREFIX_TO_QUEUE[prefix]
    except KeyError:
        raise ValueError(f"task {task_name!r} has no queue") from None
