"""`zavhoz report`: the summary as a table, the PNG and the CSV written, --send to the admins."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.support import report_data
from tests.support.sandbox_api import SandboxAPI
from workers.reports import service
from zavhoz.cli import main


def test_report_cli_prints_writes_and_sends(
    db: Engine,
    sandbox: SandboxAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(service, "now", lambda: report_data.AT)
    with Session(db) as s:
        report_data.seed(s)
        s.commit()
    sandbox._call("POST", "/sandbox/users", {"id": 503})  # the data set's admin
    assert main(["report", "today", "--out", str(tmp_path), "--send"]) == 0
    out = capsys.readouterr().out
    table = dict(line.split(None, 1) for line in out.splitlines() if line[:1].isalpha())
    assert table["period"].strip() == "22.11.2026"
    assert table["created"].strip() == "4" and table["rejected"].strip() == "1"
    assert "staff Anna Ivanova" in out and "open 1, done 2" in out
    png = (tmp_path / "zavhoz-today-2026-11-22.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    csv = (tmp_path / "zavhoz-today-2026-11-22.csv").read_text(encoding="utf-8")
    assert csv.replace("\r\n", "\n") == report_data.CSV
    assert "sent to 1 admin(s): {'sent': 3}" in out
    kinds = [bool(m["text"]) and m["text"][:1] for m in sandbox.messages(503)]
    assert len(kinds) == 3
    # Sending again for the same period sends nothing more.
    assert main(["report", "today", "--out", str(tmp_path), "--send"]) == 0
    assert "sent nothing" in capsys.readouterr().out
    assert len(sandbox.messages(503)) == 3
