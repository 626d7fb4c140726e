"""Files the workers make, sent through the outbox: stored in `generated_files` (any worker on
any host can send them), uploaded by the first send, re-sent by Telegram's file_id after.

An outbox row refers to one by `{"upload": {"field": "photo", "file": <id>}}` in its payload.
"""

from __future__ import annotations

from typing import Any

from aiogram.types import BufferedInputFile, Message
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from db.models import GeneratedFile, Outbox
from db.session import session_scope

UPLOAD = "upload"
# A row whose payload says so is deleted once sent, with the file it refers to (an export, the
# erasure's last message: they hold a user's data or chat id, kept only until delivered).
FORGET_AFTER_SEND = "forget_after_send"


def store(session: Session, key: str, file_name: str, content: bytes) -> GeneratedFile:
    """The file under `key`, stored once: a job that runs again for the same key reuses it."""
    row = session.query(GeneratedFile).filter_by(key=key).one_or_none()
    if row is None:
        row = GeneratedFile(key=key, file_name=file_name, content=content)
        session.add(row)
        session.flush()
    return row


def reference(field: str, file: GeneratedFile) -> dict[str, Any]:
    """The payload part of an outbox row that sends `file` as its `field` (photo, document)."""
    return {UPLOAD: {"field": field, "file": file.id}}


def resolve(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload to send: a referenced file as its file_id once Telegram has it, else its
    bytes (uploaded by this send)."""
    ref = payload.get(UPLOAD)
    if ref is None:
        return {k: v for k, v in payload.items() if k != FORGET_AFTER_SEND}
    with session_scope() as session:
        row = session.get(GeneratedFile, ref["file"])
        if row is None:
            raise ValueError(f"generated file {ref['file']} is gone")
        value: Any = row.telegram_file_id or BufferedInputFile(row.content, row.file_name)
    sendable = {k: v for k, v in payload.items() if k not in (UPLOAD, FORGET_AFTER_SEND)}
    sendable[ref["field"]] = value
    return sendable


def remember(payload: dict[str, Any], result: object) -> None:
    """After a send that uploaded a file: keep the file_id Telegram gave it."""
    ref = payload.get(UPLOAD)
    if ref is None or not isinstance(result, Message):
        return
    file_id = None
    if result.photo:
        file_id = result.photo[-1].file_id  # the largest size
    elif result.document:
        file_id = result.document.file_id
    if file_id is None:
        return
    with session_scope() as session:
        session.execute(
            update(GeneratedFile)
            .where(GeneratedFile.id == ref["file"], GeneratedFile.telegram_file_id.is_(None))
            .values(telegram_file_id=file_id)
        )


def forget(session: Session, row_id: int, payload: dict[str, Any]) -> bool:
    """After a send that ended (sent, or given up): delete a FORGET_AFTER_SEND row and its
    file; False for other rows."""
    if not payload.get(FORGET_AFTER_SEND):
        return False
    session.execute(delete(Outbox).where(Outbox.id == row_id))
    ref = payload.get(UPLOAD)
    if ref is not None:
        session.execute(delete(GeneratedFile).where(GeneratedFile.id == ref["file"]))
    return True
