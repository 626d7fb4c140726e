"""The main menu (a reply keyboard) and the "/" command menu of each role, as plain data: the
worker sends them, the bot matches the buttons."""

from __future__ import annotations

from core.roles import Role
from core.texts import t

# Rows of text keys; each feature adds its buttons here and a bot handler for them.
_RESIDENT = [["menu.new", "menu.my"], ["menu.help"]]
_STAFF = [["menu.new", "menu.my"], ["menu.queue", "menu.help"]]
_LAYOUT: dict[Role, list[list[str]]] = {
    Role.RESIDENT: _RESIDENT,
    Role.STAFF: _STAFF,
    Role.ADMIN: _STAFF,
}


def main_menu(role: Role, language: str | None) -> dict[str, object]:
    """Bot API ReplyKeyboardMarkup JSON."""
    return {
        "keyboard": [[{"text": t(key, language)} for key in row] for row in _LAYOUT[role]],
        "resize_keyboard": True,
        "is_persistent": True,
        "input_field_placeholder": t("placeholder", language),
    }


# Telegram's "/" menu: each role sees its own commands, nothing it would be refused.
_COMMON_HEAD = ("new", "my")
_COMMON_TAIL = ("export", "forget_me", "cancel", "start", "help")
_COMMANDS: dict[Role, tuple[str, ...]] = {
    Role.RESIDENT: (*_COMMON_HEAD, *_COMMON_TAIL),
    Role.STAFF: (*_COMMON_HEAD, "queue", "mine", "find", "areas", *_COMMON_TAIL),
    Role.ADMIN: (
        *_COMMON_HEAD,
        *("queue", "mine", "find", "areas", "area", "staff", "broadcast", "report"),
        *_COMMON_TAIL,
    ),
}


def commands_for(role: Role) -> tuple[str, ...]:
    return _COMMANDS[role]


def command_list(role: Role, language: str | None) -> list[dict[str, str]]:
    """Bot API BotCommand JSON of the role's menu."""
    return [
        {"command": name, "description": t(f"cmd.{name}", language)} for name in _COMMANDS[role]
    ]


def chat_command_menu(
    role: Role, language: str | None, chat_id: int
) -> tuple[str, dict[str, object]]:
    """The Bot API call (method, payload) that gives one private chat its role's "/" menu:
    residents go back to the bot's default one (which is theirs)."""
    scope = {"type": "chat", "chat_id": chat_id}
    if role is Role.RESIDENT:
        return "deleteMyCommands", {"scope": scope}
    return "setMyCommands", {"commands": command_list(role, language), "scope": scope}
