"""Local double of api.telegram.org for an unmodified aiogram bot, plus a control API.

Point aiogram at it with
``AiohttpSession(api=TelegramAPIServer.from_base(url))`` and drive users via ``/sandbox/*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from sandbox import botapi, control
from sandbox.botapi import STATE_KEY, Upload
from sandbox.persist import StateInUse, Store
from sandbox.state import ApiError, SandboxConfig, State

__all__ = [
    "RunningSandbox",
    "SandboxConfig",
    "SandboxThread",
    "create_app",
    "run",
    "start_sandbox",
]

log = logging.getLogger("sandbox")
WEBHOOK_RETRY_SECONDS = 1.0
MAX_BODY = 60 * 1024 * 1024  # above the 50 MB document limit so we can answer 413 ourselves


async def _webhook_reply(state: State, bot_id: int, resp: aiohttp.ClientResponse) -> None:
    """Run a method returned in the webhook response body, as Telegram does."""
    params: dict[str, Any] = {}
    files: dict[str, Upload] = {}
    if resp.content_type == "application/json":
        body = await resp.json(content_type=None)
        if isinstance(body, dict):
            params = body
    elif resp.content_type.startswith("multipart/"):
        reader = aiohttp.MultipartReader.from_response(resp)
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
                continue
            data = await part.read()
            if part.filename:
                ctype = part.headers.get(aiohttp.hdrs.CONTENT_TYPE)
                files[part.name] = Upload(bytes(data), part.filename, ctype)
            else:
                params[part.name] = bytes(data).decode("utf-8", "replace")
    name = params.pop("method", None)
    if not isinstance(name, str):
        return
    try:
        await botapi.execute(state, bot_id, name, params, files)
    except ApiError as exc:
        log.warning("webhook reply %s failed: %s", name, exc.description)


async def _deliver_webhooks(state: State) -> None:
    """Push pending updates to the webhook one at a time; failures are retried."""
    async with aiohttp.ClientSession() as session:
        while True:
            await state.updates_changed.wait_for(
                lambda: state.webhook is not None and bool(state.updates), 3600
            )
            hook, pending = state.webhook, state.updates
            if hook is None or not pending:
                continue
            update = pending[0]
            headers = {}
            if hook["secret_token"]:
                headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
            error: str | None = None
            try:
                timeout = aiohttp.ClientTimeout(total=30)
                async with session.post(
                    hook["url"], json=update, headers=headers, timeout=timeout
                ) as resp:
                    if 200 <= resp.status < 300:
                        state.confirm(update["update_id"] + 1)
                        with contextlib.suppress(Exception):
                            await _webhook_reply(state, hook["bot_id"], resp)
                        state.flush()  # outside any request: nothing else would write it
                    else:
                        error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"Connection failed: {type(exc).__name__}"
            if error is not None:
                state.webhook_last_error = (int(time.time()), error)
                await asyncio.sleep(WEBHOOK_RETRY_SECONDS)


async def _webhook_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_deliver_webhooks(app[STATE_KEY]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@web.middleware
async def _flush_state(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Write what the request changed before answering: what a client saw is on disk."""
    try:
        return await handler(request)
    finally:
        request.app[STATE_KEY].flush()


async def _close_store(app: web.Application) -> None:
    store = app[STATE_KEY].disk
    if store is not None:
        store.close()


def create_app(
    config: SandboxConfig | None = None, state_dir: str | Path | None = None
) -> web.Application:
    """The sandbox app; with ``state_dir`` its state lives on in ``state_dir/sandbox.sqlite3``."""
    store = Store(Path(state_dir)) if state_dir is not None else None
    app = web.Application(
        client_max_size=MAX_BODY, middlewares=[_flush_state] if store is not None else []
    )
    app[STATE_KEY] = State(config, store)
    botapi.add_routes(app)
    control.add_routes(app)
    app.cleanup_ctx.append(_webhook_ctx)
    app.on_cleanup.append(_close_store)
    return app


class RunningSandbox:
    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        app = runner.app
        assert app is not None
        self.app = app
        self.state: State = app[STATE_KEY]

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    config: SandboxConfig | None = None,
    state_dir: str | Path | None = None,
) -> RunningSandbox:
    # handler_cancellation: a client that gives up on a long poll must not leave it running.
    runner = web.AppRunner(
        create_app(config, state_dir),
        handle_signals=False,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=0.5,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # the only way to learn the port picked for port=0
    assert isinstance(server, asyncio.base_events.Server)
    real_port = int(server.sockets[0].getsockname()[1])
    return RunningSandbox(runner, host, real_port)


def run(
    host: str,
    port: int,
    config: SandboxConfig | None = None,
    state_dir: str | Path | None = None,
) -> None:
    """Serve until Ctrl-C (used by ``zavhoz sandbox`` and ``python -m sandbox``)."""

    async def main() -> None:
        sandbox = await start_sandbox(host, port, config, state_dir)
        store = sandbox.state.disk
        print(
            f"Telegram sandbox listening on {sandbox.url} "
            f"(bot API: {sandbox.url}/bot<token>/<method>, control: {sandbox.url}/sandbox/); "
            f"state {'in ' + str(store.path) if store else 'in memory only'}",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await sandbox.stop()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    except StateInUse as exc:
        raise SystemExit(f"sandbox: {exc}") from None


class SandboxThread:
    """Sandbox on a background thread with its own loop, for synchronous tests.

    Only talk to it over HTTP: ``state`` lives on the other thread's loop.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SandboxConfig | None = None,
        state_dir: str | Path | None = None,
    ) -> None:
        self._host, self._port, self._config = host, port, config
        self._state_dir = state_dir
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sandbox: RunningSandbox | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        assert self._sandbox is not None, "SandboxThread is not started"
        return self._sandbox.url

    @property
    def port(self) -> int:
        assert self._sandbox is not None, "SandboxThread is not started"
        return self._sandbox.port

    @property
    def state(self) -> State:
        assert self._sandbox is not None, "SandboxThread is not started"
        return self._sandbox.state

    def _main(self) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                self._sandbox = await start_sandbox(
                    self._host, self._port, self._config, self._state_dir
                )
            except BaseException as exc:
                self._error = exc
                raise
            finally:
                self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self._sandbox.stop()

        loop = asyncio.new_event_loop()
        self._loop = loop
        with contextlib.suppress(BaseException):
            loop.run_until_complete(serve())
        loop.close()

    def start(self) -> SandboxThread:
        self._thread = threading.Thread(target=self._main, name="sandbox", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError("sandbox failed to start") from self._error
        if self._sandbox is None:
            raise RuntimeError("sandbox did not start in time")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            stop = self._stop
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
