"""The text catalogue: every user-facing string, in English and Russian.

Texts are HTML (parse_mode=HTML); values substituted into them must be escaped by the caller
with `html.escape` (see `render`).
"""

from __future__ import annotations

import html
from typing import Any

DEFAULT_LANGUAGE = "en"

_CATALOGUE: dict[str, dict[str, str]] = {
    "en": {
        "welcome": (
            "Hello, <b>{name}</b>! I am the request desk of your building.\n"
            "Report a problem and follow it here; the staff get it at once."
        ),
        "welcome_staff": "You are <b>{role}</b> here.",
        "role.resident": "a resident",
        "role.staff": "staff",
        "role.admin": "an admin",
        "menu.help": "❓ Help",
        "help": ("<b>What I can do</b>\n/start: the main menu\n/help: this message"),
        "unknown": "I did not understand that. Send /help to see what I can do.",
        "busy": "Sorry, something went wrong on our side. Please try again in a minute.",
        "placeholder": "Choose an action",
        "cmd.start": "Main menu",
        "cmd.help": "What this bot can do",
    },
    "ru": {
        "welcome": (
            "Здравствуйте, <b>{name}</b>! Я служба заявок вашего дома.\n"
            "Сообщите о проблеме и следите за ней здесь; сотрудники получат её сразу."
        ),
        "welcome_staff": "Ваша роль: <b>{role}</b>.",
        "role.resident": "житель",
        "role.staff": "сотрудник",
        "role.admin": "администратор",
        "menu.help": "❓ Помощь",
        "help": ("<b>Что я умею</b>\n/start: главное меню\n/help: это сообщение"),
        "unknown": "Я не понял. Отправьте /help, чтобы увидеть, что я умею.",
        "busy": "Извините, у нас что-то пошло не так. Попробуйте через минуту.",
        "placeholder": "Выберите действие",
        "cmd.start": "Главное меню",
        "cmd.help": "Что умеет бот",
    },
}

LANGUAGES = tuple(_CATALOGUE)


def pick_language(language_code: str | None) -> str:
    """Telegram sends IETF tags like 'ru' or 'en-US'; anything unknown falls back to English."""
    base = (language_code or "").split("-", 1)[0].lower()
    return base if base in _CATALOGUE else DEFAULT_LANGUAGE


def t(key: str, language: str | None = None, **values: Any) -> str:
    """The text for `key`; substituted values are HTML-escaped (user text is never markup)."""
    lang = pick_language(language)
    template = _CATALOGUE[lang].get(key, _CATALOGUE[DEFAULT_LANGUAGE][key])
    return template.format(**{k: html.escape(str(v)) for k, v in values.items()})


def all_translations(key: str) -> frozenset[str]:
    """Every language's text for `key`: the bot matches menu buttons in any language."""
    return frozenset(texts[key] for texts in _CATALOGUE.values() if key in texts)
