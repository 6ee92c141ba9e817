#!/usr/bin/env python3
"""The PromQL of dashboard.json, as Prometheus receives it, for promtool to check.

Grafana sends a panel's query with its variables replaced; this does the same with fixed values
(:data:`GRAFANA_VARIABLES`) and writes every query as a recording rule, so that
``promtool check rules`` parses each one (k8s/monitoring/check.sh does)::

    python3 k8s/monitoring/dashboard_queries.py > /tmp/dashboard-rules.yaml
    promtool check rules /tmp/dashboard-rules.yaml

Only the standard library: check.sh runs it with any python3. tests/support_monitoring.py
imports it, so the tests and check.sh read the dashboard the same way.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parent / "dashboard.json"

#: What Grafana puts in place of its variables; a multi-value variable sits inside ``=~"..."``.
GRAFANA_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "stream_id": ".*",
    "namespace": ".*",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"label_values\((?P<expr>.+),\s*(?P<label>\w+)\)")


class DashboardError(ValueError):
    """The dashboard has a query this script cannot turn into PromQL."""


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from (for messages)."""

    where: str
    expr: str


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[Query]:
    """The PromQL of every panel target and of every query variable (``label_values(m, l)`` gives
    ``m``), as Grafana writes them (with ``$variables``).

    Raises:
        DashboardError: a query variable that is not ``label_values(...)``.
    """
    out = [
        Query(f"panel {p.get('title')!r} target {t.get('refId')}", t["expr"])
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.fullmatch(query.strip())
        if match is None:
            raise DashboardError(f"variable {var['name']}: expected label_values(...), got {query!r}")
        out.append(Query(f"variable {var['name']!r}", match["expr"]))
    return out


def as_promql(expr: str) -> str:
    """``expr`` with Grafana's variables replaced, as Prometheus would receive it.

    Raises:
        DashboardError: it uses a variable that :data:`GRAFANA_VARIABLES` does not know.
    """

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in GRAFANA_VARIABLES:
            raise DashboardError(f"unknown Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(replace, expr)


def rule_file(dashboard: dict[str, Any]) -> str:
    """Every query as a recording rule ``dashboard:query_<n>`` of one group (JSON is YAML)."""
    rules = [
        {"record": f"dashboard:query_{n}", "expr": as_promql(q.expr)}
        for n, q in enumerate(queries(dashboard))
    ]
    return json.dumps({"groups": [{"name": "dashboard-queries", "rules": rules}]}, indent=2) + "\n"


def main() -> int:
    try:
        sys.stdout.write(rule_file(load(Path(sys.argv[1]) if len(sys.argv) > 1 else DASHBOARD)))
    except (DashboardError, OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"dashboard_queries.py: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
