"""Shared fixtures: every test runs with a clean environment and its own var dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import get_settings

# Variables of ours that must not leak from the developer's shell or .env into tests.
_OURS = (
    "BOT_TOKEN",
    "TELEGRAM_API_URL",
    "DATABASE_URL",
    "REDIS_URL",
    "ADMIN_IDS",
    "TIMEZONE",
    "SENTRY_DSN",
    "LOG_FORMAT",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "VAR_DIR",
    "METRICS_PORT",
    "METRICS_HOST",
    "PROMETHEUS_MULTIPROC_DIR",
    "ZAVHOZ_METRICS_DIR_OWNER",
    "BROKER_URL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in _OURS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


pytest_plugins = ("tests.support.services",)
