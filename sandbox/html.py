"""Strict parser for Telegram's HTML parse_mode.

Telegram rejects malformed markup with ``can't parse entities``; the stdlib parser would
silently repair it, hiding exactly the bugs the sandbox exists to catch.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

# Tag -> MessageEntity type (span/a/code/pre/blockquote/tg-emoji need attribute handling).
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
SUPPORTED_TAGS = frozenset(_SIMPLE_TAGS) | {"span", "a", "blockquote", "tg-emoji"}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'", "nbsp": "\xa0"}
_ENTITY_RE = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));")
_NAME_RE = re.compile(r"[a-zA-Z0-9-]+")
_ATTR_RE = re.compile(r"[a-zA-Z0-9_-]+")


class HtmlParseError(ValueError):
    """Message text is Telegram's wording after ``can't parse entities: ``."""


@dataclass
class ParsedText:
    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Open:
    tag: str
    start: int  # UTF-16 offset in the output
    attrs: dict[str, str]


def _byte_offset(src: str, i: int) -> int:
    return len(src[:i].encode("utf-8"))


def _u16(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _decode_entity(src: str, i: int) -> tuple[str, int] | None:
    m = _ENTITY_RE.match(src, i)
    if not m:
        return None
    dec, hexa, name = m.groups()
    if name is not None:
        if name.lower() not in _NAMED_ENTITIES:
            return None
        return _NAMED_ENTITIES[name.lower()], m.end()
    code = int(dec, 10) if dec is not None else int(hexa, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), m.end()


def _parse_attrs(src: str, i: int, tag_start: int) -> tuple[dict[str, str], int]:
    """Parse attributes up to and including '>'; returns (attrs, index after '>')."""
    n = len(src)
    attrs: dict[str, str] = {}
    while True:
        while i < n and src[i].isspace():
            i += 1
        if i >= n:
            offset = _byte_offset(src, tag_start)
            raise HtmlParseError(f"Unclosed start tag at byte offset {offset}")
        if src[i] == ">":
            return attrs, i + 1
        m = _ATTR_RE.match(src, i)
        if not m:
            raise HtmlParseError(
                f"Expected equal sign in declaration of an attribute of the start tag at byte "
                f"offset {_byte_offset(src, tag_start)}"
            )
        name = m.group().lower()
        i = m.end()
        while i < n and src[i].isspace():
            i += 1
        if i < n and src[i] == "=":
            i += 1
            while i < n and src[i].isspace():
                i += 1
            if i >= n:
                raise HtmlParseError(
                    f"Unclosed start tag at byte offset {_byte_offset(src, tag_start)}"
                )
            if src[i] in "\"'":
                end = src.find(src[i], i + 1)
                if end < 0:
                    raise HtmlParseError(
                        f"Unclosed start tag at byte offset {_byte_offset(src, tag_start)}"
                    )
                raw = src[i + 1 : end]
                i = end + 1
            else:
                j = i
                while j < n and not src[j].isspace() and src[j] != ">":
                    j += 1
                raw = src[i:j]
                i = j
            attrs[name] = html.unescape(raw)
        else:
            attrs[name] = ""


def _entity_for(o: _Open, end: int) -> dict[str, Any] | None:
    length = end - o.start
    if length <= 0:
        return None  # Telegram drops empty entities
    ent: dict[str, Any] = {"offset": o.start, "length": length}
    if o.tag in _SIMPLE_TAGS:
        ent["type"] = _SIMPLE_TAGS[o.tag]
        cls = o.attrs.get("class", "")
        if o.tag == "code" and cls.startswith("language-"):
            ent["language"] = cls[len("language-") :]
    elif o.tag == "span":
        ent["type"] = "spoiler"
    elif o.tag == "a":
        href = o.attrs.get("href", "")
        if not href:
            return None  # Telegram renders <a> without href as plain text
        ent["type"] = "text_link"
        ent["url"] = href
    elif o.tag == "blockquote":
        ent["type"] = "expandable_blockquote" if "expandable" in o.attrs else "blockquote"
    elif o.tag == "tg-emoji":
        ent["type"] = "custom_emoji"
        ent["custom_emoji_id"] = o.attrs.get("emoji-id", "")
    return ent


def parse_html(src: str) -> ParsedText:
    """Return visible text and entities (UTF-16 offsets), or raise HtmlParseError."""
    out: list[str] = []
    pos = 0  # UTF-16 length of out
    stack: list[_Open] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch == "&":
            dec = _decode_entity(src, i)
            if dec is None:
                raise HtmlParseError(
                    f'Unsupported or unescaped "&" at byte offset {_byte_offset(src, i)}'
                )
            text, i = dec
            out.append(text)
            pos += sum(_u16(c) for c in text)
            continue
        if ch == ">":
            # Telegram tolerates a bare '>' in text.
            out.append(ch)
            pos += 1
            i += 1
            continue
        if ch != "<":
            out.append(ch)
            pos += _u16(ch)
            i += 1
            continue
        tag_start = i
        if i + 1 < n and src[i + 1] == "/":
            end = src.find(">", i + 2)
            if end < 0:
                raise HtmlParseError(f"Unclosed end tag at byte offset {_byte_offset(src, i)}")
            name = src[i + 2 : end].strip().lower()
            if not stack:
                raise HtmlParseError(f"Unexpected end tag at byte offset {_byte_offset(src, i)}")
            top = stack.pop()
            if name != top.tag:
                raise HtmlParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(src, i)}, expected "
                    f'"</{top.tag}>", found "</{name}>"'
                )
            ent = _entity_for(top, pos)
            if ent is not None:
                entities.append(ent)
            i = end + 1
            continue
        m = _NAME_RE.match(src, i + 1)
        name = m.group().lower() if m else ""
        if name not in SUPPORTED_TAGS:
            raise HtmlParseError(
                f'Unsupported start tag "{name}" at byte offset {_byte_offset(src, tag_start)}'
            )
        assert m is not None
        attrs, i = _parse_attrs(src, m.end(), tag_start)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise HtmlParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset '
                f"{_byte_offset(src, tag_start)}"
            )
        stack.append(_Open(name, pos, attrs))
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    # Entities are reported outer-first by offset, as Telegram does.
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText("".join(out), entities)


def strip_html(src: str) -> str:
    """Best-effort readable text (for the terminal chat): never raises."""
    try:
        return parse_html(src).text
    except HtmlParseError:
        return html.unescape(re.sub(r"<[^>]*>", "", src))
