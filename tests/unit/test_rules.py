"""The shipped Prometheus and Alertmanager configuration passes the tools' own checks.

``promtool check rules``, ``promtool check config``, ``promtool test rules`` (the unit tests
in deploy/prometheus/rules/vigil.rules.test.yml) and ``amtool check-config``; plus what the
tools cannot know: every alert is labelled, explained, tested firing and not firing, and asks
only for metrics Vigil exports. The tools come from Debian: ``make system-deps``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_dashboard import PROMETHEUS_SERIES, exported_series_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "vigil.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "rules" / "vigil.rules.test.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

REQUIRED_ALERTS = frozenset({
    "VigilDown", "VigilAnomalyRate", "VigilConsumerLagHigh", "VigilInvalidEventsHigh",
    "VigilNotCommitting", "VigilBrokerDown",
})
SEVERITIES = ("critical", "warning", "info")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps` (Debian packages "
                    "prometheus and prometheus-alertmanager)", pytrace=False)
    return path


def _run(*command: str) -> str:
    """The command's standard output; the test fails with both outputs if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def _yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    return document


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(RULES)["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


# --- the tools ------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    output = _run(_tool("promtool"), "check", "rules", str(RULES))
    assert "SUCCESS" in output


def test_promtool_check_config_with_its_rule_files() -> None:
    output = _run(_tool("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert "SUCCESS: 1 rule files found" in output


def test_promtool_test_rules() -> None:
    output = _run(_tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in output


def test_amtool_check_config() -> None:
    output = _run(_tool("amtool"), "check-config", str(ALERTMANAGER))
    assert "SUCCESS" in output


@pytest.mark.parametrize(("severity", "receiver"), [
    ("critical", "critical"), ("warning", "warning"), ("info", "default"),
])
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    output = _run(_tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}",
                  f"severity={severity}", "alertname=VigilDown", "job=vigil")
    assert output.split() == [receiver]


# --- what the tools cannot check ------------------------------------------------------------


def test_the_required_alerts_exist() -> None:
    assert REQUIRED_ALERTS <= set(_alerts())


@pytest.mark.parametrize("name", sorted(_alerts()))
def test_alert_is_labelled_and_explained(name: str) -> None:
    rule = _alerts()[name]
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    assert len(rule["annotations"]["description"].split()) >= 10, "say what to do about it"
    if rule["labels"]["severity"] != "info":
        assert "for" in rule, "give a `for:` window so that one bad scrape does not page"


def test_rules_ask_only_for_exported_metrics() -> None:
    allowed = exported_series_names() | PROMETHEUS_SERIES
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    for rule in _rules():
        unknown = metric_names(rule["expr"]) - allowed - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {sorted(unknown)}"


def test_recording_rules_follow_the_naming_convention() -> None:
    for rule in _rules():
        if "record" in rule:
            level, metric, operation = rule["record"].split(":")
            assert level and metric.startswith("vigil_") and operation, rule["record"]


def test_every_alert_has_unit_tests_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in _yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = set(_alerts())
    assert alerts <= firing, f"never shown firing: {sorted(alerts - firing)}"
    assert alerts <= quiet, f"never shown not firing: {sorted(alerts - quiet)}"
