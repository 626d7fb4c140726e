"""Metrics on a real multi-process stack: a bot and two prefork workers started with one
METRICS_PORT each serve on a port of their own, `zavhoz status` says which serves where, and
what the pool children counted (tasks, sends, the end-to-end latency) is in their parent's
scrape."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Processes, zavhoz_cli
from tests.support.sandbox_api import SandboxAPI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_bot_and_workers_serve_metrics_side_by_side(
    procs: Processes, live_sandbox: SandboxAPI
) -> None:
    base = _free_port()
    settings = {"METRICS_PORT": str(base), "METRICS_HOST": "127.0.0.1"}
    # Two workers on one host with the same settings, each a prefork pool of two children.
    for name in ("wa", "wb"):
        procs.worker(name, "--concurrency", "2", "--pool", "prefork", **settings)
    procs.start("bot", "bot", **settings).wait_for_log("bot.polling")

    users = range(7001, 7007)
    for user in users:
        live_sandbox.send_text(user, "/start")
    for user in users:
        live_sandbox.wait_messages(user, 1)

    done = zavhoz_cli(procs.env, "status", "--json")
    served = json.loads(done.stdout)["metrics"]
    assert sorted(m["role"] for m in served) == ["bot", "worker", "worker"], done.stderr[-2000:]
    ports = [m["port"] for m in served]
    assert len(set(ports)) == 3 and all(base <= p < base + 100 for p in ports)

    deadline = time.monotonic() + 20
    while True:
        scrapes = [(m["role"], _scrape(f"http://127.0.0.1:{m['port']}/metrics")) for m in served]
        workers = [s for role, s in scrapes if role == "worker"]
        latency = sum(_total(s, "zavhoz_command_latency_seconds_count") for s in workers)
        if latency >= len(users) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    [bot] = [s for role, s in scrapes if role == "bot"]

    assert _total(bot, "zavhoz_bot_updates_total", type="message") == len(users)
    assert _total(bot, "zavhoz_bot_enqueue_seconds_count") == len(users)
    # Counted in the pool children, added up by each worker's own server, nothing twice.
    register = {"task": "commands.register_user", "outcome": "success"}
    assert sum(_total(s, "zavhoz_tasks_total", **register) for s in workers) == len(users)
    assert sum(_total(s, "zavhoz_outbox_sends_total", outcome="sent") for s in workers) >= len(
        users
    )
    assert latency == len(users)
    assert sum(_total(s, "zavhoz_limiter_wait_seconds_count") for s in workers) >= len(users)
    for samples in workers:
        assert _total(samples, "zavhoz_backlog_up") == 1
        assert _total(samples, "zavhoz_worker_consumes", queue="interactive") == 1
        assert ("zavhoz_outbox_rows", (("state", "sent"),)) in samples
    # The bot's scrape has no worker metrics, and the other way round.
    assert _total(bot, "zavhoz_tasks_total") == 0
    assert all(_total(s, "zavhoz_bot_updates_total") == 0 for s in workers)
