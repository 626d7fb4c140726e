"""Timing rules between the workers and the broker.

How long a message fetched by a worker may stay unacknowledged before Redis hands it to another
worker: a worker host that died whole (no one left to reject its messages) delays its commands by
about this much. Every countdown or ETA parked on the broker stays well under it, and so does
every task's hard time limit; longer waits are scheduled through the database (the outbox's
next_attempt_at, picked up by the relay).
"""

VISIBILITY_TIMEOUT_S = 60
MAX_PARKED_DELAY_S = 25.0
# A task past its soft limit gets SoftTimeLimitExceeded (a command is then retried or
# dead-lettered); past the hard limit its process is killed. Both under the visibility timeout.
SOFT_TIME_LIMIT_S = 30
HARD_TIME_LIMIT_S = 45
