"""Input limits: validated in the bot for fast feedback and again in the worker for truth."""

from __future__ import annotations

TITLE_MAX = 100
DESCRIPTION_MAX = 2000
LOCATION_MAX = 200
COMMENT_MAX = 2000
REASON_MAX = 1000
SEARCH_MAX = 64
MAX_ATTACHMENTS = 10  # in one message: a new request, a comment
REQUEST_FILES_MAX = 50  # on one request, over its life
MAX_FILE_BYTES = 20 * 1024 * 1024  # what a bot may download from Telegram
RECENT_LOCATIONS = 5
# Telegram's limits on what we send.
MESSAGE_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_DATA_MAX = 64
# Areas: a name, the places (prefixes) it groups; /areas draws a button per area.
AREA_NAME_MAX = 64
AREA_PLACES_MAX = 20
AREAS_MAX = 25  # /areas lists them all in one message
BROADCAST_MAX = 4000  # visible characters; leaves room under MESSAGE_MAX

# Users' quotas (bot/quotas.py) in Redis: `<prefix>:LIMITER/<kind>/<telegram id>/...`; an
# erasure deletes them (workers/privacy/dialogs.py).
USER_QUOTA_PREFIX = "zavhoz:uq"
