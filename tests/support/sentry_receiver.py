"""A local Sentry DSN: stores every envelope the SDK posts, so tests can read what would leave."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class SentryReceiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path.startswith("/api/") and self.path.endswith("/envelope/")
                if ok:
                    with receiver._lock:
                        receiver.bodies.append(body)
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self._server.server_address[1]}/1"

    def __enter__(self) -> SentryReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def raw(self) -> list[bytes]:
        with self._lock:
            return list(self.bodies)

    def events(self) -> list[dict[str, Any]]:
        """The error events among the envelopes' items."""
        return [payload for kind, payload in self._items() if kind == "event"]

    def check_ins(self) -> list[dict[str, Any]]:
        """Cron monitors' check-ins (Sentry's `monitor_beat_tasks`)."""
        return [payload for kind, payload in self._items() if kind == "check_in"]

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if match(event):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no such Sentry event among: {json.dumps(self.events())[:4000]}")

    def _items(self) -> list[tuple[str, Any]]:
        items = []
        for body in self.raw():
            # An envelope: a header line, then per item a header line and its payload.
            _, _, rest = body.partition(b"\n")
            while rest.strip():
                header_line, _, rest = rest.partition(b"\n")
                header = json.loads(header_line)
                if "length" in header:
                    payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
                else:
                    payload, _, rest = rest.partition(b"\n")
                try:
                    items.append((header.get("type", ""), json.loads(payload)))
                except ValueError:
                    items.append((header.get("type", ""), payload))
        return items
