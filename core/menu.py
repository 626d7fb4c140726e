"""The main menu (a reply keyboard) as plain data: the worker sends it, the bot matches it."""

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
