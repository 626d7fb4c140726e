"""The naive alternative to the outbox broadcast, for `bench.broadcast`: one Celery task per
message with Celery's own `rate_limit`, which holds per worker process, not for the bot.

No outbox, no shared limiter, no retry: a 429 is a lost message. Loaded by the benchmark's
workers with `zavhoz worker -Q bench -- --include bench.naive_tasks`.
"""

from __future__ import annotations

import os

from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter

from workers.app import app
from workers.telegram import get_client, method_for

NAME = "bench.naive_send"
QUEUE = "bench"
RATE_ENV = "BENCH_NAIVE_RATE_LIMIT"  # Celery's syntax, e.g. "30/s"


@app.task(
    name=NAME, rate_limit=os.environ.get(RATE_ENV, "30/s"), acks_late=True, ignore_result=True
)
def naive_send(chat_id: int, text: str) -> str:
    try:
        get_client().call(method_for("sendMessage", {"chat_id": chat_id, "text": text}))
    except TelegramRetryAfter:
        return "429"  # lost: the naive task does not retry
    except TelegramAPIError as error:
        return f"error: {error.message}"
    return "sent"
