"""Real processes for integration and end-to-end tests, with their logs kept for failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "zavhoz", *args],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a kill reaches the worker's pool children too
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not log {needle!r}:\n{self.log()[-4000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def zavhoz_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`zavhoz <args>` as ops run it, with the test's services in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "zavhoz", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Processes:
    """Starts processes for a test and stops them all at its end."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env, self.started = log_dir, env, []

    def start(self, name: str, *args: str, **env: str) -> Proc:
        proc = Proc(name, list(args), {**self.env, **env}, self.log_dir)
        self.started.append(proc)
        return proc

    def worker(self, name: str = "worker", *celery_args: str, **env: str) -> Proc:
        proc = self.start(
            name,
            "worker",
            "--",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            *celery_args,
            **env,
        )
        proc.wait_for_log("ready.")
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


def beat_sends(log: str, entry: str) -> list[float]:
    """When a beat's JSON log says it sent the task of schedule entry `entry` (epoch seconds)."""
    from datetime import datetime

    return [
        datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
        for line in log.splitlines()
        if f"Sending due task {entry} " in line and line.startswith("{")
    ]
