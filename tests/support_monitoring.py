"""Helpers for the metrics and monitoring tests (importable: tests/ is on pytest's pythonpath).

* :func:`scrape`: GET a ``/metrics`` endpoint over a real socket and parse it with
  prometheus_client's text parser (a malformed exposition raises, so the test fails);
* :func:`promised`: the metric families docs/metrics.md promises, per section of its tables;
* the PromQL of k8s/monitoring: alert and recording rules, the dashboard's queries with Grafana's
  variables replaced (:func:`as_promql`), and the metric names an expression reads
  (:func:`metric_names`);
* :func:`promtool`: the real linter, installed into ``.cache/bin`` by k8s/monitoring/check.sh on
  first use (like k8s/check.sh installs its tools), never skipped.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "metrics.md"
MONITORING = ROOT / "k8s" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
ALERTS_TEST = MONITORING / "alerts_test.yaml"
DASHBOARD = MONITORING / "dashboard.json"
CHECK = MONITORING / "check.sh"
DASHBOARD_QUERIES = MONITORING / "dashboard_queries.py"
BIN = ROOT / ".cache" / "bin"
PROMTOOL_VERSION = "v0.316.0"


def _load_dashboard_queries() -> ModuleType:
    """k8s/monitoring/dashboard_queries.py (a script, not a package): how check.sh reads the dashboard."""
    spec = importlib.util.spec_from_file_location("dashboard_queries", DASHBOARD_QUERIES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


dq = _load_dashboard_queries()


# -- scraping -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` response, parsed."""

    url: str
    content_type: str
    text: str
    families: dict[str, Metric]

    def family(self, name: str) -> Metric:
        if name not in self.families:
            raise AssertionError(f"{self.url}: no metric family {name!r}; it has {sorted(self.families)}")
        return self.families[name]

    def value(self, series: str, **labels: str) -> float:
        """The sum of the samples of ``series`` (a name as the exposition writes it) whose labels
        include ``labels`` (0 if none)."""
        # The parser names a counter's samples ``*_total`` even where the text does not (Triton).
        names = {series, f"{series}_total"} if series in self.series_names() else {series}
        return sum(
            s.value
            for f in self.families.values()
            for s in f.samples
            if s.name in names and labels.items() <= s.labels.items()
        )

    def series_names(self) -> set[str]:
        """Every series name as the text writes it, which is what Prometheus stores and PromQL reads
        (``x_total``, ``x_bucket``...; Triton's counters have no ``_total``)."""
        return {m[0] for m in _SERIES.finditer(self.text)}


_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?=[{ ])", re.MULTILINE)


def scrape(url: str, *, timeout_s: float = 10.0) -> Scrape:
    """GET ``url`` and parse it strictly (a parse error propagates as ValueError)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode()
    families: dict[str, Metric] = {}
    for family in text_string_to_metric_families(text):
        if family.name in families:
            raise AssertionError(f"{url}: metric family {family.name!r} appears twice")
        families[family.name] = family
    return Scrape(url, content_type, text, families)


# -- what docs/metrics.md promises ----------------------------------------------------------------------
@dataclass(frozen=True)
class Promise:
    """One row of a metrics table: ``name{labels}`` and its type."""

    name: str
    type: str
    labels: frozenset[str]

    @property
    def family(self) -> str:
        """The family name prometheus_client's parser gives it (counters lose ``_total``)."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name


_ROW = re.compile(r"^\| `(?P<name>[a-z_:][a-z0-9_:]*)(?:\{(?P<labels>[a-z_,]*)\})?` \| (?P<type>\w+) \|")


def promised(section: str) -> list[Promise]:
    """The metric rows of the table under ``## {section}`` in docs/metrics.md."""
    rows: list[Promise] = []
    inside = False
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == section
            continue
        match = _ROW.match(line) if inside else None
        if match:
            labels = frozenset(filter(None, (match["labels"] or "").split(",")))
            rows.append(Promise(match["name"], match["type"], labels))
    if not rows:
        raise AssertionError(f"docs/metrics.md: no metric table under '## {section}'")
    return rows


def label_names(family: Metric) -> set[str]:
    """The label names of a family's series (``le`` of histogram buckets left out)."""
    return {k for s in family.samples for k in s.labels if not (family.type == "histogram" and k == "le")}


# -- the PromQL of k8s/monitoring ------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from (for messages)."""

    where: str
    expr: str


def load_rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yaml (recording and alerting)."""
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def rule_queries() -> list[Query]:
    return [Query(f"alerts.yaml: {r.get('alert') or r['record']}", r["expr"]) for r in load_rules()]


def recorded_names() -> set[str]:
    return {r["record"] for r in load_rules() if "record" in r}


def dashboard_queries() -> list[Query]:
    """The dashboard's queries, with Grafana's variables replaced (as Prometheus gets them)."""
    return [Query(f"dashboard.json: {q.where}", dq.as_promql(q.expr)) for q in dq.queries(dq.load())]


_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a valid PromQL expression selects (functions, keywords, label names,
    durations and strings left out). Promtool has checked the syntax; this only reads names."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = _GROUPING.sub("", text)
    text = re.sub(r"\boffset\s+-?\w+", "", text)
    text = re.sub(r"@\s*[\w.()]+", "", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match[1], match[2]
        if call or name in _KEYWORDS:
            continue
        names.add(name)
    return names


# -- promtool ---------------------------------------------------------------------------------------------
@cache
def promtool() -> Path:
    """The promtool binary in .cache/bin, installed by ``k8s/monitoring/check.sh --install-only`` when it
    is missing (Go module proxy, first run only). Fails, never skips, when it cannot be had."""
    binary = BIN / "promtool"
    stamp = BIN / f".promtool-{PROMTOOL_VERSION}"
    if not (binary.is_file() and stamp.is_file()):
        if shutil.which("go") is None:
            raise AssertionError(f"promtool is not in {BIN} and Go is missing to build it: run `make tools`")
        done = subprocess.run(
            ["bash", str(CHECK), "--install-only"], capture_output=True, text=True, timeout=1500, check=False
        )
        assert done.returncode == 0, (
            f"installing promtool failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return binary


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
