"""Settings: environment variables and `.env`; every one has a default that works embedded."""

from __future__ import annotations

import sys
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.schedules import Schedule, parse_duration, parse_schedule

# Used when BOT_TOKEN is unset: the local sandbox accepts any well-formed token.
SANDBOX_TOKEN = "123456789:zavhoz-sandbox"  # noqa: S105 - not a secret: sandbox only
SANDBOX_URL = "http://127.0.0.1:8081"
BROKER_SCHEMES = ("amqp://", "amqps://", "pyamqp://", "redis://", "rediss://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    bot_token: SecretStr | None = None
    telegram_api_url: AnyHttpUrl | None = None
    database_url: str | None = None
    redis_url: str | None = None
    # A broker other than Redis (RabbitMQ: amqp://user:pass@host:5672/vhost); Redis stays the
    # dialog store, limiter and beat lock, so REDIS_URL is needed too. Unset: REDIS_URL.
    broker: SecretStr | None = Field(default=None, validation_alias="BROKER_URL")
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    timezone: str = "UTC"
    sentry_dsn: SecretStr | None = None
    log_format: Literal["json", "console"] | None = None
    log_level: str = "INFO"
    webhook_url: AnyHttpUrl | None = None
    webhook_secret: SecretStr | None = None
    webhook_host: str = "0.0.0.0"  # noqa: S104 - the webhook server must be reachable
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    var_dir: Path = Path("var")
    # Prometheus metrics (core/metrics.py): each process serves on the first free port from
    # here on; unset, nothing is served.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes from another host
    reopen_window_days: int = Field(default=7, ge=0)
    # Telegram's limits, held globally by the workers' shared limiter.
    rate_bot_per_second: int = Field(default=30, ge=1)
    rate_private_per_second: float = Field(default=1.0, gt=0)
    rate_private_burst: int = Field(default=3, ge=1)
    rate_group_per_minute: int = Field(default=20, ge=1)
    # What one user may ask of the bot (a `limits` string: "10/hour", "10 per 10 seconds",
    # several separated by ";"; empty: no limit). ADMIN_IDS are exempt. Over a limit the user
    # is told when to try again and nothing is enqueued.
    user_limit_new: str = "10/hour"  # new requests
    user_limit_comments: str = "30/hour"
    user_limit_commands: str = "10 per 10 seconds"  # every command: a burst, then 1/s
    # Paid broadcasts (Telegram Stars) may go up to 1000 messages a second.
    paid_broadcast: bool = False
    paid_broadcast_per_second: int = Field(default=1000, ge=1)
    # How many workers drain one broadcast at once (the limiter keeps the total rate).
    broadcast_parallelism: int = Field(default=4, ge=1)
    # How long a worker may hold a message it is sending before the relay gives it to another
    # (longer than the worst rate-limit wait plus Telegram's answer).
    outbox_lease_seconds: float = Field(default=120, gt=0)
    # Bounded so a poisoned message cannot loop forever between dying workers.
    max_redeliveries: int = Field(default=3, ge=0)
    # A command that meets an outage (database, Redis) is retried, never dropped, for this
    # long; then it is dead-lettered (kept to replay). Backoff is capped by the second value,
    # which stays under the broker's visibility timeout (a longer countdown would be redelivered).
    command_retry_seconds: float = Field(default=24 * 3600, gt=0)
    command_retry_cap_seconds: float = Field(default=30, gt=0, le=45)
    # Scheduled jobs (see core.schedules): cron in TIMEZONE, or seconds; empty disables.
    schedule_relay: str = "30"
    schedule_report_daily: str = "0 8 * * *"
    schedule_report_weekly: str = "0 8 * * 1"
    schedule_retention: str = "30 3 * * *"
    schedule_escalate: str = "300"
    schedule_consistency: str = "0 3 * * *"
    schedule_orphans: str = "15 3 * * *"
    # Dialog state and drafts untouched this long are orphans (maintenance.orphans).
    dialog_ttl: str = "2d"
    # How long what is kept only for a while is kept (see workers/upkeep/retention.py).
    retention_idempotency: str = "7d"
    retention_outbox: str = "30d"
    retention_backups: str = "30d"
    # The time within which an open request of each priority should be done.
    sla_urgent: str = "4h"
    sla_high: str = "1d"
    sla_normal: str = "3d"
    sla_low: str = "7d"
    # What erasure does to a user's requests: keep them anonymous (status, priority, times,
    # for the statistics) or delete them with everything under them.
    erasure_mode: Literal["anonymize", "delete"] = "anonymize"
    # After the identity is unlinked, an erasure scrubs in steps of at most this many of the
    # user's requests, or of their other rows (each step one transaction, ~0.1-0.3 s at these
    # sizes on a 1M-request site: bench/privacy.py).
    erasure_step_requests: int = Field(default=500, ge=1, le=10_000)
    erasure_step_rows: int = Field(default=5000, ge=1, le=30_000)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _parse_admin_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            bad = [p for p in parts if not p.lstrip("-").isdigit()]
            if bad:
                raise ValueError(f"not a Telegram user id: {bad[0]!r}")
            return frozenset(int(p) for p in parts)
        if isinstance(value, int):
            return frozenset({value})
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator(
        "schedule_relay",
        "schedule_report_daily",
        "schedule_report_weekly",
        "schedule_retention",
        "schedule_escalate",
        "schedule_consistency",
        "schedule_orphans",
    )
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator(
        "sla_urgent",
        "sla_high",
        "sla_normal",
        "sla_low",
        "retention_idempotency",
        "retention_outbox",
        "retention_backups",
        "dialog_ttl",
    )
    @classmethod
    def _check_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("user_limit_new", "user_limit_comments", "user_limit_commands")
    @classmethod
    def _check_user_limit(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            parse_many(value)  # ValueError names what it could not read
        return value

    @field_validator(
        "database_url", "redis_url", "bot_token", "sentry_dsn", "metrics_port", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("bot_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            head, _, tail = value.get_secret_value().partition(":")
            if not head.isdigit() or not tail:
                raise ValueError("expected the form <digits>:<secret> from @BotFather")
        return value

    @field_validator("broker", mode="before")
    @classmethod
    def _check_broker(cls, value: object) -> object:
        if value is None or value == "":
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if not text.startswith(BROKER_SCHEMES):
            raise ValueError("expected amqp://user:pass@host:5672/vhost or redis://host:port/db")
        return value

    @model_validator(mode="after")
    def _broker_needs_redis(self) -> Settings:
        if self.broker is not None and self.redis_url is None:
            raise ValueError(
                "BROKER_URL needs REDIS_URL too (Redis holds dialogs, the limiter, the beat lock)"
            )
        return self

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://host:port/db")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database(cls, value: str | None) -> str | None:
        if value is not None:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(value)
            except ArgumentError:
                raise ValueError(
                    "expected a SQLAlchemy URL like postgresql+psycopg://..."
                ) from None
        return value

    # Derived values: embedded defaults when a service is not configured.
    @property
    def token(self) -> str:
        return self.bot_token.get_secret_value() if self.bot_token else SANDBOX_TOKEN

    @property
    def api_url(self) -> str:
        if self.telegram_api_url is not None:
            return str(self.telegram_api_url).rstrip("/")
        return SANDBOX_URL if self.bot_token is None else "https://api.telegram.org"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return normalize_db_url(self.database_url)
        return f"sqlite:///{(self.var_dir / 'zavhoz.sqlite3').resolve()}"

    @property
    def broker_url(self) -> str:
        if self.broker is not None:
            return self.broker.get_secret_value()
        if self.redis_url:
            return self.redis_url
        from core.embedded_broker import SCHEME, register

        register()
        return f"{SCHEME}+sqlite:///{(self.var_dir / 'broker.sqlite3').resolve()}"

    def schedule(self, job: str) -> Schedule | None:
        """`SCHEDULE_<JOB>` parsed (None: disabled)."""
        return parse_schedule(getattr(self, f"schedule_{job}"))

    def sla(self, priority: str) -> timedelta:
        return parse_duration(getattr(self, f"sla_{priority}"))

    def sla_by_priority(self) -> dict[str, timedelta]:
        from core.domain import Priority

        return {p.value: self.sla(p.value) for p in Priority}

    def retention(self, what: str) -> timedelta:
        return parse_duration(getattr(self, f"retention_{what}"))

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def amqp(self) -> bool:
        """The broker is RabbitMQ (BROKER_URL amqp://...)."""
        return self.broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))


def normalize_db_url(url: str) -> str:
    """Heroku-style `postgres://` and bare `postgresql://` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def describe_error(error: ValidationError) -> str:
    """One line naming the variable and the problem, never the value of a secret."""
    first = error.errors()[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "settings"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"invalid setting {name}: {message}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; exits with a one-line error on an invalid value."""
    try:
        return Settings()
    except ValidationError as error:
        print(f"zavhoz: {describe_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None
