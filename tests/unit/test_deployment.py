"""The deployment files name real services and commands of this project."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.queues import ALL_QUEUES
from zavhoz.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _zavhoz_command_is_valid(command: list[str]) -> None:
    assert command[0] == "zavhoz", command
    build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown command


def test_compose_has_the_services_with_health_checks() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "bot", "worker", "beat"} <= services.keys()
    for name in ("postgres", "redis", "worker"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("migrate", "bot", "worker", "beat"):
        _zavhoz_command_is_valid(services[name]["command"])
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["REDIS_URL"].startswith("redis://")
    # The image's VAR_DIR is a volume the app's user may write (orphans backups, locks).
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "VAR_DIR=/var/lib/zavhoz" in dockerfile and "chown zavhoz /var/lib/zavhoz" in dockerfile
    for name in ("bot", "worker", "beat"):
        assert "zavhozvar:/var/lib/zavhoz" in services[name]["volumes"], name
    assert "zavhozvar" in compose["volumes"]
    assert services["migrate"]["command"] == ["zavhoz", "db", "upgrade"]
    assert services["bot"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_procfile_runs_migrations_on_release() -> None:
    entries = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    pools = {"worker_interactive", "worker_notifications", "worker_batch"}
    assert set(entries) == {"release", "bot", "worker", "beat", *pools}
    assert entries["release"].split() == ["zavhoz", "db", "upgrade"]
    for command in entries.values():
        _zavhoz_command_is_valid(command.split())
    _isolated_pools_cover_every_queue_once([entries[p].split() for p in pools])


def _isolated_pools_cover_every_queue_once(commands: list[list[str]]) -> None:
    consumed: list[str] = []
    for command in commands:
        ours, celery = command[: command.index("--")], command[command.index("--") + 1 :]
        consumed += build_parser().parse_args(ours[1:]).queues.split(",")
        # Each pool its own node name, size and limits to recycle a child that grew.
        for flag in ("-n", "--concurrency", "--max-tasks-per-child", "--max-memory-per-child"):
            assert flag in celery, (flag, command)
    assert sorted(consumed) == sorted(ALL_QUEUES)


def test_compose_isolated_profile_runs_one_pool_per_kind_of_work() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    pools = [s for s in services.values() if s.get("profiles") == ["isolated"]]
    assert len(pools) == 3
    for pool in pools:
        _zavhoz_command_is_valid(pool["command"])
        assert pool["healthcheck"]["test"]
    _isolated_pools_cover_every_queue_once([p["command"] for p in pools])
