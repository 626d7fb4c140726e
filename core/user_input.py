"""Untrusted input made safe to keep: free text and ids typed by users or forged in buttons.

The bot applies these for fast feedback; the command models apply them again (validators in
`core.commands`), so the worker gets clean values whatever sent the command.
"""

from __future__ import annotations

import re
import unicodedata

# Exclusive upper bounds. Telegram user ids are positive and below 2**53 (they fit a double);
# our database ids are positive BIGINTs; pages past this are forged, no list is that long.
TELEGRAM_ID_LIMIT = 2**53
DB_ID_LIMIT = 2**63
PAGE_LIMIT = 100_000

_KEPT_CONTROLS = frozenset("\n\t")
# Shown as nothing, yet not category Cf (unicodedata has no Default_Ignorable property):
# the Hangul fillers and the braille blank, favourite "invisible" names and messages.
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")
# A Telegram username: 4-32 ASCII letters, digits and underscores, starting with a letter.
_USERNAME = re.compile(r"@?[A-Za-z][A-Za-z0-9_]{3,31}")


def _is_dropped(char: str) -> bool:
    """C0/C1 controls (PostgreSQL refuses NUL; the rest corrupt logs and displays) and lone
    surrogates (not encodable as UTF-8)."""
    category = unicodedata.category(char)
    return (category == "Cc" and char not in _KEPT_CONTROLS) or category == "Cs"


def _is_invisible(char: str) -> bool:
    return (
        char.isspace()
        or unicodedata.category(char) == "Cf"  # zero-width, joiners, BOM, direction marks
        or char in _BLANK_LOOKING
        or unicodedata.name(char, "").startswith("VARIATION SELECTOR")
    )


def clean_text(text: str) -> str:
    """`text` without control characters (newline and tab kept; CR/CRLF become newlines)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(char for char in text if not _is_dropped(char))


def normalize(text: str) -> str:
    """User free text as we keep it: cleaned and stripped, or "" when nothing visible is left
    (so an answer of zero-width spaces counts as empty, like an empty one)."""
    text = clean_text(text).strip()
    return "" if all(_is_invisible(char) for char in text) else text


def parse_id(text: str, limit: int) -> int | None:
    """A positive id written in ASCII digits below `limit`, else None. (`str.isdigit` accepts
    "²" and other digits `int` refuses; the length check keeps `int` off huge strings.)"""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(limit)):
        return None
    value = int(text)
    return value if 0 < value < limit else None


def parse_user_target(text: str) -> str | None:
    """A Telegram user id or an @username as /grant and /revoke take them, else None."""
    if text.isascii() and text.isdigit():
        user_id = parse_id(text, TELEGRAM_ID_LIMIT)
        return None if user_id is None else str(user_id)
    return text if _USERNAME.fullmatch(text) else None
