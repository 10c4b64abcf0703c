"""The Grafana dashboard queries only metrics Vigil exports, through the provisioned datasource.

Metric names are parsed out of every PromQL expression (panel targets, template variables,
annotations) and compared with Vigil's metric catalogue, which is itself compared with the
metrics ``stream.metrics.VigilMetrics`` registers. A renamed metric fails here instead of
leaving an empty panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from vigil.stream.metrics import VigilMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "vigil.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "vigil.rules.yml"

CATALOGUE: dict[str, str] = {
    "vigil_events_processed": "counter",
    "vigil_events_invalid": "counter",
    "vigil_anomalies": "counter",
    "vigil_alerts_produced": "counter",
    "vigil_alerts_suppressed": "counter",
    "vigil_produce_errors": "counter",
    "vigil_rebalances": "counter",
    "vigil_snapshots_rejected": "counter",
    "vigil_series_evicted": "counter",
    "vigil_series_expired": "counter",
    "vigil_series_gauges_dropped": "counter",
    "vigil_processing_seconds": "histogram",
    "vigil_checkpoint_seconds": "histogram",
    "vigil_series": "gauge",
    "vigil_last_commit_timestamp_seconds": "gauge",
    "vigil_last_checkpoint_timestamp_seconds": "gauge",
    "vigil_consumer_lag": "gauge",
    "vigil_broker_up": "gauge",
    "vigil_build": "info",
    "vigil_series_value": "gauge",
    "vigil_series_centre": "gauge",
    "vigil_series_upper": "gauge",
    "vigil_series_lower": "gauge",
    "vigil_series_score": "gauge",
    "vigil_model_loss": "gauge",
    "vigil_model_updates": "counter",
    "vigil_model_held": "counter",
    "vigil_labels_joined": "counter",
    "vigil_labels_expired": "counter",
    "vigil_labels_unmatched": "counter",
    "vigil_labels_evicted": "counter",
    "vigil_models_untracked": "counter",
}
"""Vigil's metric families (as prometheus_client names them) and their types."""


SUFFIXES = {"counter": ("_total",), "gauge": ("",), "info": ("_info",),
            "histogram": ("_bucket", "_sum", "_count")}


def exported_series_names() -> frozenset[str]:
    """The series names Prometheus sees for the catalogue (``_total``, ``_bucket``, ...)."""
    return frozenset(name + suffix for name, kind in CATALOGUE.items()
                     for suffix in SUFFIXES[kind])


PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
"""Series Prometheus itself makes, which dashboards and rules may also use."""

_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2", "start", "end",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MODIFIER = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<expr>.*?)\s*,\s*\w+\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\(\s*(?P<expr>.*)\s*\)\s*$", re.S)


def metric_names(expression: str) -> set[str]:
    """Metric names an expression selects (PromQL, or a Grafana variable query).

    >>> sorted(metric_names('sum by (le) (rate(x_bucket{a="b,c"}[$__rate_interval])) / y'))
    ['x_bucket', 'y']
    >>> sorted(metric_names('label_values(vigil_series_value{key="$key"}, metric)'))
    ['vigil_series_value']
    >>> sorted(metric_names('time() - max(last_ts offset 5m) > 1e3 and on (job) up == 0'))
    ['last_ts', 'up']
    """
    match = _LABEL_VALUES.match(expression)
    if match:
        expression = match["expr"]
    elif re.match(r"^\s*label_values\(\s*\w+\s*\)\s*$", expression):
        return set()
    match = _QUERY_RESULT.match(expression)
    if match:
        expression = match["expr"]
    text = _STRING.sub('""', expression)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _MODIFIER.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS}


def recorded_names() -> frozenset[str]:
    """Series the shipped recording rules make (dashboards may use them)."""
    with RULES.open(encoding="utf-8") as handle:
        groups = yaml.safe_load(handle)["groups"]
    return frozenset(rule["record"] for group in groups for rule in group["rules"]
                     if "record" in rule)


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries() -> Iterator[tuple[str, str]]:
    """(where, expression) of every PromQL query in the dashboard."""
    dashboard = _dashboard()
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"variable {variable['name']}", query if isinstance(query, str) \
                else query["query"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


def _datasource_uid() -> str:
    with DATASOURCES.open(encoding="utf-8") as handle:
        sources = yaml.safe_load(handle)["datasources"]
    prometheus = [s for s in sources if s["type"] == "prometheus"]
    assert len(prometheus) == 1
    uid: str = prometheus[0]["uid"]
    return uid


# --- the catalogue itself -------------------------------------------------------------------


def _registered() -> dict[str, str]:
    families: list[Metric] = list(VigilMetrics().registry.collect())
    return {family.name: family.type for family in families}


def test_catalogue_lists_every_metric_vigil_registers() -> None:
    registered = _registered()
    missing = {name: kind for name, kind in registered.items() if CATALOGUE.get(name) != kind}
    assert not missing, f"add to CATALOGUE (and the README's metric table): {missing}"


def test_catalogued_metrics_are_registered() -> None:
    absent = set(CATALOGUE) - set(_registered())
    assert not absent, f"catalogued but not registered by VigilMetrics: {sorted(absent)}"


# --- the dashboard ------------------------------------------------------------------------


def test_every_query_names_only_exported_metrics() -> None:
    allowed = exported_series_names() | PROMETHEUS_SERIES | recorded_names()
    problems = []
    for where, expression in _queries():
        names = metric_names(expression)
        if not names:
            problems.append(f"{where}: selects no metric: {expression}")
        unknown = names - allowed
        if unknown:
            problems.append(f"{where}: not exported by Vigil: {sorted(unknown)}")
    assert not problems, "\n".join(problems)


def test_the_dashboard_shows_what_operators_need() -> None:
    used = set().union(*(metric_names(expression) for _, expression in _queries()))
    wanted = {
        "vigil_events_processed_total", "vigil_events_invalid_total", "vigil_anomalies_total",
        "vigil_processing_seconds_bucket", "vigil_consumer_lag", "vigil_series_value",
        "vigil_series_centre", "vigil_series_upper", "vigil_series_lower", "vigil_model_loss",
    }
    assert wanted <= used, f"no panel shows {sorted(wanted - used)}"
    expressions = [expression for _, expression in _queries()]
    assert any("histogram_quantile" in e and "vigil_processing_seconds_bucket" in e
               for e in expressions), "no latency quantiles"


def test_control_chart_follows_the_series_variables() -> None:
    variables = {v["name"] for v in _dashboard()["templating"]["list"]}
    assert {"event_type", "key", "metric"} <= variables
    charts = [panel for panel in _panels(_dashboard()["panels"])
              if panel["title"] in ("Control chart", "Anomaly score")]
    assert len(charts) == 2
    shown = set()
    for panel in charts:
        for target in panel["targets"]:
            shown |= metric_names(target["expr"])
            for variable in ("event_type", "key", "metric"):
                assert f'{variable}="${variable}"' in target["expr"], (
                    panel["title"], target["expr"])
    assert shown == {f"vigil_series_{part}"
                     for part in ("value", "centre", "upper", "lower", "score")}


def test_every_panel_uses_the_provisioned_prometheus() -> None:
    uid = _datasource_uid()
    for panel in _panels(_dashboard()["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, (panel["title"], target["refId"])
    for variable in _dashboard()["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid, variable["name"]


def test_datasource_points_at_the_compose_prometheus() -> None:
    with DATASOURCES.open(encoding="utf-8") as handle:
        source = yaml.safe_load(handle)["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = list(_panels(_dashboard()["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize(("expression", "names"), [
    ('rate(vigil_anomalies_total{detector=~"a|b"}[5m])', {"vigil_anomalies_total"}),
    ("sum without (instance) (vigil_series)", {"vigil_series"}),
    ("a / on (job) group_left (x) b", {"a", "b"}),
    ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[1m])))", {"h_bucket"}),
    ('{__name__="x"}', set()),
    ("vigil_build_info", {"vigil_build_info"}),
    ("max_over_time(g[5m:30s]) > bool 1", {"g"}),
    ("label_values(instance)", set()),
])
def test_metric_names_parser(expression: str, names: set[str]) -> None:
    assert metric_names(expression) == names
