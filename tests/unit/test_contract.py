from __future__ import annotations

import html

import pytest

from core.commands import SCHEMA_VERSION, Actor, RegisterUser, idempotency_key
from core.menu import main_menu
from core.queues import ALL_QUEUES, queue_for
from core.roles import Role
from core.texts import _CATALOGUE, LANGUAGES, pick_language, t


def test_command_round_trips_as_json_kwargs() -> None:
    command = RegisterUser(
        idempotency_key=idempotency_key(77),
        actor=Actor(user_id=5, chat_id=5, language="ru", first_name="Аня"),
    )
    kwargs = command.to_kwargs()
    assert kwargs["command"]["schema"] == SCHEMA_VERSION
    assert kwargs["command"]["idempotency_key"] == "tg-update:77"
    assert RegisterUser.model_validate(kwargs["command"]) == command


def test_old_messages_with_unknown_fields_still_parse() -> None:
    raw = {
        "schema": 1,
        "idempotency_key": "tg-update:1",
        "actor": {"user_id": 1, "chat_id": 1},
        "added_in_a_later_release": True,
    }
    assert RegisterUser.model_validate(raw).actor.user_id == 1


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("commands.register_user", "interactive"),
        ("notifications.deliver", "notifications"),
        ("reports.daily", "reports"),
        ("privacy.export", "privacy"),
        ("maintenance.relay_outbox", "maintenance"),
    ],
)
def test_routing_by_task_name(task: str, queue: str) -> None:
    assert queue_for(task) == queue and queue in ALL_QUEUES


def test_unknown_task_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="has no queue"):
        queue_for("misc.thing")


def test_languages() -> None:
    assert pick_language("ru-RU") == "ru"
    assert pick_language("de") == "en"
    assert pick_language(None) == "en"
    assert set(LANGUAGES) == {"en", "ru"}
    assert _CATALOGUE["en"].keys() == _CATALOGUE["ru"].keys()


def test_user_values_are_escaped() -> None:
    text = t("welcome", "en", name="<b>x</b> & <script>")
    assert html.escape("<b>x</b> & <script>") in text
    assert "<script>" not in text


def test_main_menu_is_a_reply_keyboard() -> None:
    menu = main_menu(Role.RESIDENT, "ru")
    assert menu["resize_keyboard"] is True
    texts = [b["text"] for row in menu["keyboard"] for b in row]  # type: ignore[attr-defined]
    assert texts == [t("menu.new", "ru"), t("menu.my", "ru"), t("menu.help", "ru")]
    staff = [b["text"] for row in main_menu(Role.STAFF, "en")["keyboard"] for b in row]  # type: ignore[attr-defined]
    assert t("menu.queue", "en") in staff
