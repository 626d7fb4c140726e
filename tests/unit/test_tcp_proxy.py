"""The test proxy itself: a paused proxy lets nothing through, not even a racing connection."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.tcp_proxy import TcpProxy

ATTEMPT_TIMEOUT_S = 2.0


class EchoServer:
    """Echoes every connection; counts the connections it accepted."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def count(self) -> int:
        with self._lock:
            return self.accepted

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", echo.port)
    yield p
    p.close()


def attempt(port: int, payload: bytes = b"ping") -> str:
    """One connection through the proxy: 'echo', 'eof', 'refused', 'reset' or 'hang'."""
    return timed_attempt(port, payload)[0]


def timed_attempt(port: int, payload: bytes = b"ping") -> tuple[str, float | None]:
    """The outcome of one connection and when its connect() returned (None: it did not)."""
    connected_at = None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=ATTEMPT_TIMEOUT_S) as conn:
            connected_at = time.monotonic()
            conn.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = conn.recv(len(payload) - len(got))
                if not chunk:
                    return "eof", connected_at
                got += chunk
            assert got == payload
            return "echo", connected_at
    except TimeoutError:
        return "hang", connected_at
    except ConnectionRefusedError:
        return "refused", connected_at
    except (ConnectionResetError, BrokenPipeError):
        return "reset", connected_at


def settled_count(echo: EchoServer) -> int:
    """The echo server's count once connections already in its backlog are accepted."""
    time.sleep(0.2)
    return echo.count()


def test_echo_through_the_proxy_pause_refuses_everything_resume_works_again(
    proxy: TcpProxy, echo: EchoServer
) -> None:
    assert attempt(proxy.port) == "echo"
    established = socket.create_connection(("127.0.0.1", proxy.port), timeout=ATTEMPT_TIMEOUT_S)
    established.sendall(b"hello")
    assert established.recv(5) == b"hello"
    assert settled_count(echo) == 2

    proxy.pause()
    # The open connection is cut at once: EOF or a reset, never silence.
    with contextlib.suppress(ConnectionResetError):
        assert established.recv(5) == b""
    established.close()

    before = echo.count()
    outcomes = [attempt(proxy.port) for _ in range(50)]
    assert set(outcomes) <= {"refused", "eof", "reset"}, outcomes
    assert settled_count(echo) == before  # not one reached the target

    proxy.pause()  # pausing twice changes nothing
    assert attempt(proxy.port) == "refused"

    proxy.resume()
    proxy.resume()  # idempotent: still one listener, still working
    assert [attempt(proxy.port) for _ in range(5)] == ["echo"] * 5
    assert settled_count(echo) == before + 5


def test_connections_racing_the_pause_never_get_through(proxy: TcpProxy, echo: EchoServer) -> None:
    # Other threads keep connecting while the proxy is paused and resumed, over and over. A
    # connection made before pause() returned may have been served; one whose connect()
    # returned while the proxy was paused must not be. A client whose connection is cut
    # reconnects at once (as Redis and database clients do): that must be refused too.
    stop, hammering = threading.Event(), threading.Event()
    attempts: list[tuple[str, float | None]] = []
    reconnects: list[tuple[str, float]] = []  # (outcome, when the cut client reconnected)
    pauses: list[tuple[float, float, float]] = []  # (pause() called, returned, resume() called)

    def hammer() -> None:
        while not stop.is_set():
            if hammering.wait(0.05):
                attempts.append(timed_attempt(proxy.port))

    def reconnector() -> None:
        while not stop.is_set():
            try:
                conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.2)
            except OSError:
                time.sleep(0.01)
                continue
            with conn:
                cut = False
                while not stop.is_set() and not cut:
                    try:
                        conn.sendall(b"ping")
                        cut = conn.recv(4) == b""
                    except TimeoutError:
                        continue
                    except OSError:
                        cut = True
            if cut:
                at = time.monotonic()
                reconnects.append((attempt(proxy.port), at))

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    threads += [threading.Thread(target=reconnector, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(16):
            # Every other round without the hammers, so a leak cannot hide behind them.
            if round_ % 2:
                hammering.set()
            else:
                hammering.clear()
            time.sleep(0.1)  # connections flowing through the running proxy
            called = time.monotonic()
            proxy.pause()
            returned = time.monotonic()
            before = settled_count(echo)
            # 50 attempts in a row while paused, beside the racing threads.
            outcomes = [attempt(proxy.port) for _ in range(50)]
            assert set(outcomes) <= {"refused", "eof", "reset"}, outcomes
            assert echo.count() == before, "a connection reached the target while paused"
            pauses.append((called, returned, time.monotonic()))
            proxy.resume()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)

    assert [o for o, _ in attempts if o == "hang"] == []
    leaked = [
        (o, at)
        for o, at in attempts
        if o == "echo" and at is not None and any(r < at < e for _, r, e in pauses)
    ]
    assert leaked == [], "connections got through a paused proxy"
    # Every cut came from a pause, and no reconnect during it was served.
    assert len(reconnects) >= 16, reconnects
    assert all(any(c < at < e for c, _, e in pauses) for _, at in reconnects), reconnects
    assert [o for o, _ in reconnects if o not in ("refused", "eof", "reset")] == []
    # The race was exercised: served connections, and connections refused while paused.
    assert any(o == "echo" for o, _ in attempts)
    assert any(o != "echo" for o, _ in attempts)
    assert attempt(proxy.port) == "echo"
