"""Dialog state on embedded defaults lives in a file: a restarted bot finds drafts where they
were, per user and per destiny."""

from __future__ import annotations

from pathlib import Path

from aiogram.fsm.storage.base import StorageKey

from bot.dialogs.sqlite_storage import SqliteStorage

KEY = StorageKey(bot_id=1, chat_id=1001, user_id=1001)
OTHER = StorageKey(bot_id=1, chat_id=1002, user_id=1002)
MEMORY = StorageKey(bot_id=1, chat_id=1001, user_id=1001, destiny="memory")


async def test_state_and_data_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "var" / "dialogs.sqlite3"
    storage = SqliteStorage(path)
    await storage.set_state(KEY, "NewRequest:confirm")
    await storage.set_data(KEY, {"title": "Лампа", "files": [{"kind": "photo", "file_id": "x"}]})
    await storage.set_data(MEMORY, {"recent": ["Room 101"]})
    await storage.close()

    again = SqliteStorage(path)  # the bot after a restart
    assert await again.get_state(KEY) == "NewRequest:confirm"
    assert await again.get_data(KEY) == {
        "title": "Лампа",
        "files": [{"kind": "photo", "file_id": "x"}],
    }
    assert await again.get_data(MEMORY) == {"recent": ["Room 101"]}
    assert await again.get_state(OTHER) is None and await again.get_data(OTHER) == {}
    await again.set_state(KEY, None)  # the dialog ends; its data stays until cleared
    assert await again.get_state(KEY) is None
    assert await again.get_value(KEY, "title") == "Лампа"
    await again.set_data(KEY, {})
    assert await again.get_data(KEY) == {}
    await again.close()
