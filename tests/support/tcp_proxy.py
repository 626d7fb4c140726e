"""A TCP proxy a test can cut: the way to take 'the broker' down for one process only.

While paused nothing gets through: every connection attempt is refused (the port is bound but
nobody listens), connections waiting in the old listener's backlog are reset, and the open ones
are cut. Once `pause()` returns, the target sees no new connection from the proxy until
`resume()`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url

# Bound for the proxy's whole life, never listening: the port stays ours while paused, so
# an outgoing connection cannot be given it as its ephemeral port and resume() can bind it.
_REUSE = (socket.SO_REUSEADDR, socket.SO_REUSEPORT)
_CONNECT_TIMEOUT_S = 5.0


def _socket() -> socket.socket:
    sock = socket.socket()
    for option in _REUSE:
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
    return sock


class _Pair:
    """One proxied connection: closed once both directions have stopped."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self._lock = threading.Lock()
        self._open_pipes = 2

    def cut(self) -> None:
        # shutdown, not close: it wakes the pipe threads blocked in recv/send on them.
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def pipe_ended(self) -> bool:
        with self._lock:
            self._open_pipes -= 1
            last = self._open_pipes == 0
        if last:
            for s in (self.client, self.upstream):
                s.close()
        return last


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._holder = _socket()
        self._holder.bind(("127.0.0.1", 0))
        self.port: int = self._holder.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._closed = False
        self.resume()

    @property
    def paused(self) -> bool:
        return self._listener is None

    def resume(self) -> None:
        """Accept connections again (a no-op when not paused)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the proxy is closed")
            if self._listener is not None:
                return
            listener = _socket()
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self._listener = listener
            self._acceptor = threading.Thread(
                target=self._accept, args=(listener,), name=f"tcp-proxy-{self.port}", daemon=True
            )
            self._acceptor.start()

    def pause(self) -> None:
        """Refuse new connections and cut the open ones, as a dead server would."""
        with self._lock:
            # Under the lock: a connection being set up is either registered already (and cut
            # below) or sees that its listener is no longer the current one and is dropped.
            listener, self._listener = self._listener, None
            acceptor, self._acceptor = self._acceptor, None
            pairs, self._pairs = self._pairs, set()
        if listener is not None:
            # Wakes the accept() blocked in the acceptor and resets what waits in the backlog;
            # close() alone would let a blocked accept() complete one more connection.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if acceptor is not None:
            acceptor.join(timeout=_CONNECT_TIMEOUT_S + 5)
            assert not acceptor.is_alive(), "the proxy's acceptor did not stop"
        for pair in pairs:
            pair.cut()

    def close(self) -> None:
        self.pause()
        with self._lock:
            self._closed = True
        self._holder.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if listener is not self._listener:  # accepted while being paused: refuse
                    with contextlib.suppress(OSError):
                        client.shutdown(socket.SHUT_RDWR)
                    client.close()
                    return
                # Connecting under the lock: pause() waits for it, so after pause() returns
                # the target sees no new connection.
                try:
                    upstream = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT_S)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                pair = _Pair(client, upstream)
                self._pairs.add(pair)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(pair, a, b), daemon=True).start()

    def _pipe(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            pair.cut()  # one side gone: the other is cut too, as with a real peer
            if pair.pipe_ended():
                with self._lock:
                    self._pairs.discard(pair)


def via_proxy(url: str, proxy: TcpProxy) -> str:
    """`url` with its host and port replaced by the proxy's (Redis or SQLAlchemy URLs)."""
    if url.startswith("redis"):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    return (
        make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )


def proxy_for(url: str) -> TcpProxy:
    if url.startswith("redis"):
        parts = urlsplit(url)
        return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    parsed = make_url(url)
    return TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
