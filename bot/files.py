"""Files users send (photos, documents): read from the message and checked, for a new request's
draft and for files added to a request later. The bytes stay at Telegram: only ids travel."""

from __future__ import annotations

from typing import Any

from aiogram.types import Message
from pydantic import ValidationError

from core import limits
from core.commands import AttachmentIn
from core.texts import t

MB = 1024 * 1024


def attachment_of(message: Message) -> dict[str, Any]:
    """The file of a photo or document message as AttachmentIn's JSON fields."""
    if message.photo:
        best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return {
            "kind": "photo",
            "file_id": best.file_id,
            "file_unique_id": best.file_unique_id,
            "file_name": None,
            "mime_type": None,
            "size": best.file_size,
        }
    document = message.document
    assert document is not None
    mime = document.mime_type
    return {
        "kind": "document",
        "file_id": document.file_id,
        "file_unique_id": document.file_unique_id,
        "file_name": document.file_name[:255] if document.file_name else None,
        "mime_type": mime if mime and len(mime) <= 128 else None,
        "size": document.file_size,
    }


def accept_file(
    message: Message, held: int, language: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The message's file as AttachmentIn JSON to add to the `held` ones, or the reason not."""
    item = attachment_of(message)
    size = item["size"]
    if held >= limits.MAX_ATTACHMENTS:
        return None, t("new.error.too_many_files", language, max=limits.MAX_ATTACHMENTS)
    if size is not None and size > limits.MAX_FILE_BYTES:
        return None, t(
            "new.error.file_too_big",
            language,
            size_mb=f"{size / MB:.1f}",
            max_mb=limits.MAX_FILE_BYTES // MB,
        )
    try:
        return AttachmentIn.model_validate(item).model_dump(mode="json"), None
    except ValidationError:
        return None, t("new.error.files_expected", language)
