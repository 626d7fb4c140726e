"""Sentry setup shared by the processes; PII never leaves the machine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.settings import Settings

_PII_KEYS = frozenset(
    {"text", "caption", "first_name", "last_name", "username", "title", "description", "location"}
)


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[scrubbed]" if k in _PII_KEYS else scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _before_send(event: Any, _hint: Any) -> Any:
    event.pop("user", None)
    for exc in (event.get("exception") or {}).get("values", []):
        for frame in (exc.get("stacktrace") or {}).get("frames", []):
            if "vars" in frame:
                frame["vars"] = scrub(frame["vars"])
    if "extra" in event:
        event["extra"] = scrub(event["extra"])
    return event


def init_sentry(settings: Settings, integrations: Sequence[Any] = ()) -> bool:
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        integrations=list(integrations),
        send_default_pii=False,
        before_send=_before_send,
    )
    return True
