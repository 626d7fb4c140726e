"""The shipped alert rules and dashboard are valid and speak of metrics that exist.

No promtool on this machine (nor on PyPI): each expression goes through a real PromQL parser
(promql-parser, Prometheus's grammar), and every metric it selects must be one this code
exports, so a renamed metric breaks this test instead of silently muting an alert.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from core.metrics import Metrics
from workers.backlog import BacklogCollector

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "zavhoz.json"
# Prometheus's own, per scrape target.
BUILTIN = {"up"}


@pytest.fixture
def known(db: Engine) -> set[str]:
    """Every metric name this code exports (the backlog's read from a migrated database)."""
    registry = CollectorRegistry()
    made = Metrics(registry)
    for name in dir(Metrics):
        if isinstance(getattr(Metrics, name), property):
            getattr(made, name)
    backlog = BacklogCollector(consumes=["interactive"])
    families = [*registry.collect(), *backlog.collect()]
    # What a query names: a family's samples, by type (labelled ones may have none yet).
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = {f.name + end for f in families for end in suffixes.get(f.type, ("",))}
    return names | BUILTIN


def selectors(expr: str) -> set[str]:
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.add(node.name)
        for attr in ("expr", "lhs", "rhs", "param", "vector_selector"):
            child = getattr(node, attr, None)
            if isinstance(child, promql_parser.Expr):
                visit(child)
        for child in getattr(node, "args", None) or []:
            visit(child)

    visit(promql_parser.parse(expr))
    return found


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in document["panels"] for t in panel["targets"]]


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#+ (.+)$", (ROOT / "RUNBOOK.md").read_text(), re.MULTILINE)
    # GitHub's slugs: lower case, punctuation dropped, spaces to hyphens.
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_each_alert_parses_and_uses_known_metrics(rule: dict[str, Any], known: set[str]) -> None:
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
    assert rule["labels"]["severity"] in {"page", "warning"}
    used = selectors(rule["expr"])
    assert used, "an alert on no metric"
    assert used <= known, used - known
    assert rule["annotations"]["summary"]
    section = rule["annotations"]["runbook"].split("#", 1)[1]
    assert section in runbook_anchors(), f"RUNBOOK.md has no section #{section}"


def test_the_alerts_cover_what_ops_asked_for() -> None:
    names = {r["alert"] for r in rules()}
    asked = {
        "ZavhozQueueBacklogGrowing", "ZavhozTelegram429", "ZavhozDeadLetters",
        "ZavhozNoWorkerOnQueue", "ZavhozBeatSilent", "ZavhozScheduledJobFailing",
    }  # fmt: skip
    assert asked <= names


def test_the_dashboard_parses_and_uses_known_metrics(known: set[str]) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    for expr in exprs:
        used = selectors(expr)
        assert used <= known, (expr, used - known)
    # Every exported metric family is on a panel somewhere.
    shown = set().union(*(selectors(e) for e in exprs))
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in shown}
    for name in ("zavhoz_command_latency_seconds", "zavhoz_outbox_sends_total",
                 "zavhoz_queue_depth", "zavhoz_limiter_wait_seconds"):  # fmt: skip
        assert name in families


def test_a_broken_expression_is_caught() -> None:
    with pytest.raises(ValueError):
        selectors("sum by (queue (zavhoz_queue_depth)")
    assert selectors("rate(zavhoz_tasks_total[5m]) > 0") == {"zavhoz_tasks_total"}
