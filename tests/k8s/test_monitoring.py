"""k8s/monitoring: the Prometheus rules and the Grafana dashboard, checked by the real promtool.

* ``promtool check rules`` (all lints fatal) on alerts.yaml and on every dashboard query written as
  a recording rule; a broken query fails it;
* ``promtool test rules`` on alerts_test.yaml, and each alert, neutered in a copy, makes those tests
  fail (so every alert has a test that fires it), and has a case where it stays quiet;
* every alert carries a summary, a description and a runbook that points at a section of
  docs/metrics.md; the dashboard has the panels and the stream_id variable the docs describe;
* k8s/monitoring/check.sh, which runs the same checks, passes.

That the metric names all exist in the services' real /metrics is checked against a running mesh in
tests/service/test_metrics_scrape.py. promtool comes from .cache/bin (``make tools``), installed on
first use when missing: these tests fail, never skip, without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support_monitoring import (
    ALERTS,
    ALERTS_TEST,
    CHECK,
    DASHBOARD,
    DASHBOARD_QUERIES,
    DOC,
    dashboard_queries,
    dq,
    load_rules,
    metric_names,
    run_promtool,
)

# The first use may build promtool (a few minutes); later ones take a second.
pytestmark = pytest.mark.timeout(1800)


def alerts() -> list[dict[str, Any]]:
    return [r for r in load_rules() if "alert" in r]


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def promtool_output(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout + done.stderr)[-4000:]


# -- the rule file --------------------------------------------------------------------------------------
def test_promtool_checks_the_rule_file_with_every_lint() -> None:
    done = run_promtool("check", "rules", "--lint=all", "--lint-fatal", str(ALERTS))
    assert done.returncode == 0, promtool_output(done)
    assert f"SUCCESS: {len(load_rules())} rules found" in done.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    done = run_promtool("test", "rules", str(ALERTS_TEST))
    assert done.returncode == 0, promtool_output(done)
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("alert", [a["alert"] for a in alerts()])
def test_each_alert_has_a_test_that_fires_it(alert: str, tmp_path: Path) -> None:
    """A copy of alerts.yaml where ``alert`` can never fire must fail the unit tests on ``alert``."""
    doc = yaml.safe_load(ALERTS.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = "vector(1) == 0"
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yaml")
    done = run_promtool("test", "rules", str(tmp_path / "alerts_test.yaml"))
    assert done.returncode != 0, f"no test in alerts_test.yaml expects {alert} to fire"
    assert f"alertname: {alert}," in done.stdout + done.stderr, promtool_output(done)


def test_each_alert_has_a_case_where_it_stays_quiet() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    quiet = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts") == []
    }
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    names = {a["alert"] for a in alerts()}
    assert names <= quiet, f"alerts without a quiet case: {sorted(names - quiet)}"
    assert names <= fired, f"alerts without a firing case: {sorted(names - fired)}"


def test_the_alerts_cover_lag_dlq_triton_and_stalled_sources() -> None:
    exprs = {a["alert"]: a["expr"] for a in alerts()}
    reads = {name: metric_names(expr) for name, expr in exprs.items()}
    recorded = {r["record"]: metric_names(r["expr"]) for r in load_rules() if "record" in r}

    def metrics_of(alert: str) -> set[str]:
        names = reads[alert]
        return names.union(*(recorded.get(n, set()) for n in names))

    wanted = {
        "consumer lag": {"faceflow_analyzer_consumer_lag", "faceflow_aggregator_consumer_lag"},
        "DLQ": {"faceflow_analyzer_frames_total", "faceflow_aggregator_records_total"},
        "Triton": {"faceflow_analyzer_triton_ready", "nv_inference_request_failure"},
        "stalled sources": {"faceflow_ingest_reconnects_total", "faceflow_ingest_frames_produced_total"},
    }
    covered = set().union(*(metrics_of(a) for a in exprs))
    for topic, needed in wanted.items():
        assert needed <= covered, f"{topic}: no alert reads {sorted(needed - covered)}"


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_each_alert_says_what_happened_and_where_the_runbook_is(alert: dict[str, Any]) -> None:
    annotations = alert.get("annotations", {})
    assert {"summary", "description", "runbook_url"} <= set(annotations), alert["alert"]
    assert alert.get("labels", {}).get("severity") in ("warning", "critical"), alert["alert"]
    doc, _, section = annotations["runbook_url"].partition("#")
    assert doc == "docs/metrics.md", annotations["runbook_url"]
    headings = {anchor(line.lstrip("#")) for line in DOC.read_text().splitlines() if line.startswith("#")}
    assert section == anchor(alert["alert"]) and section in headings, (
        f"{alert['alert']}: docs/metrics.md has no section #{section}"
    )


# -- the dashboard ------------------------------------------------------------------------------------------
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = tmp_path / "dashboard-rules.yaml"
    rules.write_text(dq.rule_file(dq.load()))
    done = run_promtool("check", "rules", "--lint=all", "--lint-fatal", str(rules))
    where = "\n".join(f"dashboard:query_{n}: {q.where}" for n, q in enumerate(dashboard_queries()))
    assert done.returncode == 0, promtool_output(done) + "\n" + where
    assert f"SUCCESS: {len(dashboard_queries())} rules found" in done.stdout


def test_a_broken_dashboard_query_fails_the_check(tmp_path: Path) -> None:
    dashboard = dq.load()
    next(p for p in dq.panels(dashboard) if p.get("targets"))["targets"][0]["expr"] = (
        "sum by (le (rate(x[5m]))"
    )
    broken = tmp_path / "dashboard.json"
    broken.write_text(json.dumps(dashboard))
    rules = tmp_path / "rules.yaml"
    made = subprocess.run(
        ["python3", str(DASHBOARD_QUERIES), str(broken)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rules.write_text(made.stdout)
    done = run_promtool("check", "rules", str(rules))
    assert done.returncode != 0 and "parse error" in done.stdout + done.stderr, promtool_output(done)


def test_an_unknown_grafana_variable_is_refused() -> None:
    with pytest.raises(dq.DashboardError, match=r"unknown Grafana variable \$camera"):
        dq.as_promql('rate(faceflow_ingest_frames_in_total{stream_id=~"$camera"}[5m])')


def test_the_dashboard_has_the_documented_panels_and_a_stream_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "faceflow-mesh" and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["stream_id"]["multi"] and variables["stream_id"]["includeAll"]
    all_panels = list(dq.panels(dashboard))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [p for p in all_panels if p["type"] != "row"]
    for panel in graphs:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
    rows = [p["title"] for p in all_panels if p["type"] == "row"]
    assert rows == [
        "Throughput",
        "Lag and backpressure",
        "Latency",
        "Drops, refusals and DLQ",
        "Triton",
        "Per stream ($stream_id)",
        "Aggregator state",
    ]
    exprs = [t["expr"] for p in graphs for t in p["targets"]]
    assert sum("histogram_quantile(" in e for e in exprs) >= 9, "latency histograms are shown as quantiles"
    assert any("nv_inference_request_failure" in e for e in exprs)
    per_stream = [t["expr"] for p in graphs for t in p["targets"] if 'stream_id=~"$stream_id"' in t["expr"]]
    assert len(per_stream) >= 6


# -- the name reader the scrape test relies on -------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (stream_id) (rate(faceflow_ingest_frames_in_total{stream_id=~".*"}[5m]))',
            {"faceflow_ingest_frames_in_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(nv_latency_seconds_bucket[5m])))",
            {"nv_latency_seconds_bucket"},
        ),
        ("faceflow:analyzer_consumer_lag:sum > 300", {"faceflow:analyzer_consumer_lag:sum"}),
        (
            "sum(a_total) / ignoring (outcome) group_left sum without (outcome) (b_total offset 5m) > bool 1",
            {"a_total", "b_total"},
        ),
        ("x unless on (namespace, stream_id) y and z or vector(0)", {"x", "y", "z"}),
        ('label_replace(up, "dst", "$1", "instance", "(.*):.*")', {"up"}),
        ("rate(nv_inference_count[5m:1m]) / 1e6 * 60", {"nv_inference_count"}),
    ],
)
def test_metric_names_reads_the_selected_metrics(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# -- the script -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_check_sh_passes() -> None:
    done = subprocess.run(["bash", str(CHECK)], capture_output=True, text=True, timeout=1500, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert f"SUCCESS: {len(load_rules())} rules found" in done.stdout and "all checks passed" in done.stdout
