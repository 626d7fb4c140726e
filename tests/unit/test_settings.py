from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from core.settings import SANDBOX_TOKEN, SANDBOX_URL, Settings, describe_error


def test_embedded_defaults_need_nothing_installed() -> None:
    s = Settings()
    assert s.token == SANDBOX_TOKEN
    assert s.api_url == SANDBOX_URL
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("zavhoz.sqlite3")
    assert s.broker_url.startswith("zavhoz-sqla+sqlite:///")
    assert s.embedded and s.admin_ids == frozenset()


def test_production_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "42:abc-DEF")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/zavhoz")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("ADMIN_IDS", " 1, 22 ,333")
    s = Settings()
    assert s.api_url == "https://api.telegram.org"  # a real token means real Telegram
    assert s.db_url == "postgresql+psycopg://u:p@db/zavhoz"
    assert s.broker_url == "redis://cache:6379/0" and not s.embedded
    assert s.admin_ids == {1, 22, 333}
    assert "abc-DEF" not in repr(s)  # secrets stay out of reprs and logs


def test_local_bot_api_server_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "42:abc")
    monkeypatch.setenv("TELEGRAM_API_URL", "http://localhost:9000/")
    assert Settings().api_url == "http://localhost:9000"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ADMIN_IDS", "12,bob", "invalid setting ADMIN_IDS: not a Telegram user id: 'bob'"),
        ("TELEGRAM_API_URL", "not a url", "invalid setting TELEGRAM_API_URL"),
        ("WEBHOOK_URL", "ftp:/x", "invalid setting WEBHOOK_URL"),
        ("REDIS_URL", "localhost:6379", "invalid setting REDIS_URL: expected redis://"),
        ("DATABASE_URL", "nonsense", "invalid setting DATABASE_URL"),
        ("BOT_TOKEN", "no-colon", "invalid setting BOT_TOKEN"),
        ("TIMEZONE", "Mars/Olympus", "invalid setting TIMEZONE: unknown time zone"),
        ("LOG_FORMAT", "xml", "invalid setting LOG_FORMAT"),
    ],
)
def test_invalid_values_are_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    message = describe_error(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_cli_refuses_to_start_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "123:very-secret-token")
    monkeypatch.setenv("ADMIN_IDS", "1,x")
    done = subprocess.run(
        [sys.executable, "-m", "zavhoz", "worker"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "zavhoz: invalid setting ADMIN_IDS: not a Telegram user id: 'x'"
    assert "Traceback" not in done.stderr and "very-secret-token" not in done.stderr


def test_rabbitmq_broker_beside_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("BROKER_URL", "amqp://zavhoz:s3cret@rabbit:5672/zavhoz")
    s = Settings()
    assert s.broker_url == "amqp://zavhoz:s3cret@rabbit:5672/zavhoz" and s.amqp
    assert not s.embedded  # Redis still holds dialogs, the limiter and the beat lock
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"BROKER_URL": "amqp://rabbit//"}, "BROKER_URL needs REDIS_URL"),
        ({"BROKER_URL": "kafka://x", "REDIS_URL": "redis://r/0"}, "expected amqp://"),
    ],
)
def test_bad_broker_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert says in describe_error(caught.value)
