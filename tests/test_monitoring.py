"""The Grafana dashboard: a valid dashboard model whose every query names metrics rayscribe really exports.

Ray 2.60 exports a custom metric NAME to Prometheus as ``ray_NAME``; a Counter as ``ray_NAME_total`` only, a
Gauge as ``ray_NAME``, a Histogram as ``ray_NAME_bucket`` / ``_sum`` / ``_count`` (measured on a local cluster's
metrics endpoint). A query with the wrong suffix silently shows "No data", so each one is checked here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "monitoring" / "grafana" / "rayscribe.json"

# Every rayscribe metric the dashboard may show, with its kind.
METRICS = {
    "rayscribe_http_requests": "counter",
    "rayscribe_http_errors": "counter",
    "rayscribe_http_latency_ms": "histogram",
    "rayscribe_http_audio_seconds": "counter",
    "rayscribe_serve_batch_size": "histogram",
    "rayscribe_serve_engine_seconds": "counter",
    "rayscribe_jobs_done": "counter",
    "rayscribe_jobs_failed": "counter",
    "rayscribe_audio_seconds": "counter",
    "rayscribe_real_time_factor": "gauge",
    "rayscribe_queue_messages": "gauge",
    "rayscribe_gpus_desired": "gauge",
    "rayscribe_gpus_actual": "gauge",
}
# Ray's own node metrics the dashboard uses too (names as Ray's bundled dashboards query them).
RAY_NODE_SERIES = {"ray_node_gpus_utilization", "ray_node_gram_used", "ray_node_gram_available"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
SERIES = {f"ray_{name}{suffix}": name for name, kind in METRICS.items() for suffix in SUFFIXES[kind]}


def _panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_is_a_grafana_model() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert {"title", "uid", "schemaVersion", "panels", "templating", "time"} <= set(dashboard)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]


def test_every_query_names_known_metrics() -> None:
    used = set()
    for panel in _panels():
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            names = set(re.findall(r"\bray_[a-z0-9_]+", target["expr"]))
            assert names, f"{panel['title']!r}: {target['expr']!r} names no ray_ metric"
            unknown = names - set(SERIES) - RAY_NODE_SERIES
            assert not unknown, (f"{panel['title']!r}: unknown series {sorted(unknown)}; counters end in _total, "
                                 "histograms in _bucket/_sum/_count, gauges have no suffix")
            used |= {SERIES[n] for n in names if n in SERIES}
    assert used == set(METRICS), f"metrics without a panel: {sorted(set(METRICS) - used)}"


def test_metric_kinds_match_the_code() -> None:
    """Where the code defines one of these metrics, it is of the kind the dashboard queries it as."""
    kinds = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}
    for path in [*REPO.glob("rayscribe/**/*.py"), *REPO.glob("actors/*.py"), *REPO.glob("serve/*.py"),
                 *REPO.glob("jobs/*.py")]:
        for cls, name in re.findall(r"\b(Counter|Gauge|Histogram)\(\s*[\"'](rayscribe_[a-z0-9_]+)[\"']",
                                    path.read_text()):
            if name in METRICS:
                assert METRICS[name] == kinds[cls], f"{path.name} defines {name} as a {cls}"


def test_ray_node_series_are_the_ones_rays_dashboards_use() -> None:
    import importlib.util

    spec = importlib.util.find_spec("ray")  # finds the package without importing it
    assert spec is not None and spec.origin is not None
    panels = Path(spec.origin).parent / "dashboard" / "modules" / "metrics" / "dashboards"
    text = "".join(p.read_text() for p in panels.glob("*.py"))
    for series in RAY_NODE_SERIES:
        assert series in text, f"Ray's own dashboards no longer query {series}"
