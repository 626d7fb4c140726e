"""The text catalogue: every user-facing string, in English and Russian.

Texts are HTML (parse_mode=HTML); values substituted into them must be escaped by the caller
with `html.escape` (see `render`).
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

from core.texts import areas, base, desk, dialog, ops, privacy, reports

DEFAULT_LANGUAGE = "en"

_MODULES = (base, dialog, desk, areas, ops, reports, privacy)


def _merge(language: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for module in _MODULES:
        texts: dict[str, str] = getattr(module, language.upper())
        clash = merged.keys() & texts.keys()
        assert not clash, f"text keys defined twice: {sorted(clash)}"
        merged.update(texts)
    return merged


_CATALOGUE: dict[str, dict[str, str]] = {lang: _merge(lang) for lang in ("en", "ru")}

LANGUAGES = tuple(_CATALOGUE)


def pick_language(language_code: str | None) -> str:
    """Telegram sends IETF tags like 'ru' or 'en-US'; anything unknown falls back to English."""
    base = (language_code or "").split("-", 1)[0].lower()
    return base if base in _CATALOGUE else DEFAULT_LANGUAGE


class Markup(str):
    """Text that is already HTML (a rendered text): substituted as is, never escaped twice."""

    __slots__ = ()


def escape(value: object) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value), quote=False)


def t(key: str, language: str | None = None, **values: Any) -> Markup:
    """The text for `key`; substituted values are HTML-escaped (user text is never markup)."""
    lang = pick_language(language)
    template = _CATALOGUE[lang].get(key) or _CATALOGUE[DEFAULT_LANGUAGE][key]
    return Markup(template.format(**{k: escape(v) for k, v in values.items()}))


def all_translations(key: str) -> frozenset[str]:
    """Every language's text for `key`: the bot matches menu buttons in any language."""
    return frozenset(texts[key] for texts in _CATALOGUE.values() if key in texts)


def duration(span: timedelta | None, lang: str | None) -> str:
    """Two units at most: '1 d 4 h', '3 h 20 min', '45 s'."""
    if span is None:
        return "—"
    seconds = max(0, round(span.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "unit.d"), (hours, "unit.h"), (minutes, "unit.min"), (secs, "unit.s")]
    shown = [t(unit, lang, n=n) for n, unit in parts if n][:2]
    return " ".join(shown) or t("unit.s", lang, n=0)
