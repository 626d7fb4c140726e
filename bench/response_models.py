"""Reading a Bot API answer: aiogram's own session beside ours (core/bot_session.py).

    .venv/bin/python -m bench.response_models [--calls 300] [--rounds 5]

aiogram reads every answer through `Response[<result type>]`, a pydantic generic model that
pydantic caches weakly. In a busy process a garbage collection runs between two calls more
often than not (the bot and the workers allocate plenty per update); then the class is gone
and built again. Each round times --calls reads of a sendMessage answer with a young
collection before each (as in those processes), first with aiogram's AiohttpSession, then with
BotSession, which keeps one class per result type, each in a fresh process; rounds alternate
so that both see the same machine. Prints ms per call for each and their ratio. Seconds to run.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import SendMessage

from core.bot_session import BotSession

ANSWER = json.dumps(
    {
        "ok": True,
        "result": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "hi"},
    }
)


def ms_per_call(kind: str, calls: int) -> float:
    """In a fresh process (see main): `kind` is "aiogram" or "ours"."""
    session = AiohttpSession() if kind == "aiogram" else BotSession()
    bot = Bot("123:abc", session=session)
    method = SendMessage(chat_id=1, text="hi")
    spent = 0.0
    for _ in range(calls):
        gc.collect(1)  # generations 0 and 1: what a busy process runs between two calls
        started = time.perf_counter()
        session.check_response(bot, method, 200, ANSWER)
        spent += time.perf_counter() - started
    return spent / calls * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    aiogram_ms: list[float] = []
    ours_ms: list[float] = []
    for _ in range(args.rounds):
        for kind, out in (("aiogram", aiogram_ms), ("ours", ours_ms)):
            # A fresh process each: a class kept once would outlive it in the oldest generation.
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                out.append(pool.submit(ms_per_call, kind, args.calls).result())
    a, o = statistics.median(aiogram_ms), statistics.median(ours_ms)
    print(f"{args.rounds} rounds of {args.calls} answers read, a young collection before each")
    print(f"aiogram's AiohttpSession: {a:.3f} ms a call (median of rounds)")
    print(f"BotSession:               {o:.3f} ms a call")
    print(f"ratio: {a / o:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
