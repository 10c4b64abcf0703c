"""Static checks of the deployment files: Dockerfile, docker-compose.yml and deploy/.

No Docker engine and no network: the files are parsed and checked against each other and
against Vigil's documented configuration, so a renamed key, a moved file or a port changed in
one place only fails here rather than in a user's `docker compose up`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigil.stream.config import ENVIRONMENT, VigilConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
VIGIL_TOML = ROOT / "deploy" / "vigil.toml"

SERVICES = ("kafka", "topics", "vigil", "prometheus", "alertmanager", "grafana")
"""Every service of the compose stack."""

COMPACTED_TOPICS = frozenset({"vigil-state", "model-updates"})
"""Topics the topic-creation service must create with cleanup.policy=compact."""

PLAIN_TOPICS = frozenset({"predictions", "telemetry", "labels", "alerts", "vigil-dlq"})
"""Topics the topic-creation service must create with the default (delete) policy."""

DOCUMENTED_ENVIRONMENT = frozenset(ENVIRONMENT)
"""Environment variables that override the config file."""

DOCUMENTED_KEYS: dict[str, frozenset[str]] = {
    section.name: frozenset(
        f.name for f in dataclasses.fields(getattr(VigilConfig(), section.name)))
    for section in dataclasses.fields(VigilConfig)
}
"""Config file sections and the keys each may hold."""


# --- loaders ------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    with COMPOSE.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    assert isinstance(document, dict), "docker-compose.yml must be a mapping"
    return document


def _service(name: str) -> dict[str, Any]:
    service = _compose()["services"][name]
    assert isinstance(service, dict), f"service {name!r} must be a mapping"
    return service


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, written as a mapping or as a list of NAME=value."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.partition("=")[::2] for item in raw)
    return {name: "" if value is None else str(value) for name, value in raw.items()}


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, _, rest = volume.partition(":")
        if source.startswith((".", "/", "~")):
            mounts.append((source, rest.partition(":")[0]))
    return mounts


def _yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    assert isinstance(document, dict), f"{path} must be a mapping"
    return document


def _host_path(service: str, container_path: str) -> Path:
    """The host path that a container path of ``service`` comes from, through its bind mounts."""
    candidates = []
    for source, target in _bind_mounts(_service(service)):
        target = target.rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            candidates.append((len(target), ROOT / source / container_path[len(target):]
                               .lstrip("/")))
    assert candidates, f"{service}: nothing is mounted at {container_path}"
    return max(candidates)[1]


def _depends_on(service: str) -> dict[str, Any]:
    depends_on = _service(service).get("depends_on") or {}
    if isinstance(depends_on, list):
        return {name: {"condition": "service_started"} for name in depends_on}
    assert isinstance(depends_on, dict)
    return depends_on


def _published_ports(service: str) -> set[int]:
    """Container ports a service publishes ("host:container" mappings)."""
    return {int(str(mapping).rpartition(":")[2].partition("/")[0])
            for mapping in _service(service).get("ports") or []}


def _vigil_toml() -> dict[str, Any]:
    with VIGIL_TOML.open("rb") as handle:
        return tomllib.load(handle)


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of every instruction, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exposed_ports() -> set[int]:
    ports = set()
    for keyword, arguments in _final_stage():
        if keyword == "EXPOSE":
            ports.update(int(port.partition("/")[0]) for port in arguments.split())
    return ports


def _exec_form(arguments: str) -> list[str]:
    words = yaml.safe_load(arguments)  # a JSON array is valid YAML
    assert isinstance(words, list), f"use the exec (JSON array) form, got {arguments!r}"
    return [str(word) for word in words]


# --- docker-compose.yml -------------------------------------------------------------------


def test_compose_has_every_service() -> None:
    assert set(SERVICES) <= set(_compose()["services"])


@pytest.mark.parametrize("name", SERVICES)
def test_bind_mounted_host_paths_exist(name: str) -> None:
    for source, target in _bind_mounts(_service(name)):
        assert (ROOT / source).exists(), f"{name}: {source} (mounted at {target}) is missing"


def test_build_context_and_dockerfile_exist() -> None:
    built = {name: svc["build"] for name, svc in _compose()["services"].items() if "build" in svc}
    assert "vigil" in built, "the vigil service must be built from this repository"
    for name, build in built.items():
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile",
                                                                             "Dockerfile")
        assert (ROOT / context).is_dir(), f"{name}: build context {context} is missing"
        assert (ROOT / context / dockerfile).is_file(), f"{name}: {dockerfile} is missing"


def test_vigil_environment_uses_documented_variables_only() -> None:
    unknown = set(_environment(_service("vigil"))) - DOCUMENTED_ENVIRONMENT
    assert not unknown, f"undocumented variables in the vigil service: {sorted(unknown)}"


def test_vigil_bootstrap_is_an_advertised_kafka_listener() -> None:
    bootstrap = _environment(_service("vigil"))["VIGIL_BOOTSTRAP_SERVERS"]
    advertised = _environment(_service("kafka"))["KAFKA_ADVERTISED_LISTENERS"]
    addresses = {listener.partition("://")[2] for listener in advertised.split(",")}
    assert set(bootstrap.split(",")) <= addresses, (bootstrap, advertised)


def test_vigil_waits_for_a_healthy_kafka() -> None:
    assert "healthcheck" in _service("kafka")
    depends_on = _service("vigil")["depends_on"]
    assert isinstance(depends_on, dict), "use the long form: kafka: {condition: ...}"
    assert depends_on["kafka"]["condition"] == "service_healthy"


def test_vigil_config_is_mounted_where_the_image_reads_it() -> None:
    command = _exec_form(dict(_final_stage())["CMD"])
    config_path = command[command.index("-c") + 1]
    targets = {target for _, target in _bind_mounts(_service("vigil"))}
    assert config_path in targets, f"CMD reads {config_path}; mounts: {sorted(targets)}"


def test_prometheus_mounts_its_config() -> None:
    mounts = dict(_bind_mounts(_service("prometheus")))
    assert mounts.get("./deploy/prometheus/prometheus.yml") == "/etc/prometheus/prometheus.yml"


def test_images_are_pinned() -> None:
    for name, service in _compose()["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


# --- topic creation -----------------------------------------------------------------------


def test_vigil_starts_after_the_topics_are_created() -> None:
    assert _depends_on("topics")["kafka"]["condition"] == "service_healthy"
    assert _depends_on("vigil")["topics"]["condition"] == "service_completed_successfully"
    assert str(_service("topics").get("restart", "no")) == "no", "a one-shot must not restart"


def test_topics_service_bootstraps_from_an_advertised_kafka_listener() -> None:
    bootstrap = _environment(_service("topics"))["BOOTSTRAP"]
    advertised = _environment(_service("kafka"))["KAFKA_ADVERTISED_LISTENERS"]
    assert bootstrap in {listener.partition("://")[2] for listener in advertised.split(",")}


def test_topics_service_creates_every_topic_idempotently(tmp_path: Path) -> None:
    """Run the service's script with a stand-in kafka-topics.sh that records its arguments."""
    service = _service("topics")
    assert service["image"].startswith("apache/kafka:"), "kafka-topics.sh comes with the image"
    script = "\n".join(service["command"]).replace("$$", "$")  # compose's escape for a dollar
    assert "/opt/kafka/bin/kafka-topics.sh" in script
    calls = tmp_path / "calls"
    fake = tmp_path / "kafka-topics.sh"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n')
    fake.chmod(0o755)
    entrypoint = service["entrypoint"]
    assert entrypoint[:2] == ["/bin/bash", "-c"], entrypoint
    result = subprocess.run(
        ["bash", "-c", script.replace("/opt/kafka/bin/kafka-topics.sh", str(fake))],
        env={**os.environ, **_environment(service)}, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    created: dict[str, list[str]] = {}
    for line in calls.read_text().splitlines():
        words = line.split()
        if "--create" not in words:
            continue
        assert "--if-not-exists" in words, f"not idempotent: {line}"
        assert words[words.index("--bootstrap-server") + 1] == _environment(service)["BOOTSTRAP"]
        configs = [words[i + 1] for i, word in enumerate(words) if word == "--config"]
        created[words[words.index("--topic") + 1]] = configs
    assert set(created) == PLAIN_TOPICS | COMPACTED_TOPICS
    for topic, configs in created.items():
        expected = ["cleanup.policy=compact"] if topic in COMPACTED_TOPICS else []
        assert configs == expected, (topic, configs)


def test_topics_service_creates_the_topics_vigil_toml_names() -> None:
    topics = _vigil_toml()["topics"]
    names = {topics[name] for name in ("predictions", "telemetry", "alerts", "dead_letter")}
    names.add(load_config(VIGIL_TOML, environ={}).state.topic)
    script = "\n".join(_service("topics")["command"])
    for name in names:
        assert f"create {name}" in script, f"the topics service does not create {name}"


# --- Prometheus, Alertmanager, Grafana -----------------------------------------------------


def test_prometheus_rule_files_exist_and_are_mounted() -> None:
    config = _yaml(PROMETHEUS)
    rule_files = config.get("rule_files") or []
    assert rule_files, "prometheus.yml loads no rule files"
    config_dir = "/etc/prometheus"
    for rule_file in rule_files:
        assert not any(c in rule_file for c in "*?["), "name the rule files, no globs"
        assert (PROMETHEUS.parent / rule_file).is_file(), f"{rule_file} is missing"
        in_container = rule_file if rule_file.startswith("/") else f"{config_dir}/{rule_file}"
        assert _host_path("prometheus", in_container).is_file(), (
            f"{in_container} is not mounted into the prometheus container")


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    managers = _yaml(PROMETHEUS)["alerting"]["alertmanagers"]
    targets = [t for m in managers for group in m["static_configs"] for t in group["targets"]]
    assert targets == ["alertmanager:9093"]
    assert 9093 in _published_ports("alertmanager")
    assert "alertmanager" in _depends_on("prometheus")


def test_alertmanager_mounts_its_config_where_the_image_reads_it() -> None:
    host = _host_path("alertmanager", "/etc/alertmanager/alertmanager.yml")
    assert host.resolve() == ALERTMANAGER.resolve()
    receivers = {r["name"] for r in _yaml(ALERTMANAGER)["receivers"]}
    assert _yaml(ALERTMANAGER)["route"]["receiver"] in receivers


def test_grafana_provisioning_is_mounted_where_grafana_reads_it() -> None:
    assert _host_path("grafana", "/etc/grafana/provisioning").resolve() == \
        GRAFANA_PROVISIONING.resolve()
    datasources = _yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    urls = {source["url"] for source in datasources if source["type"] == "prometheus"}
    assert urls == {"http://prometheus:9090"}, urls
    assert 9090 in _published_ports("prometheus")


def test_grafana_dashboard_provider_path_is_the_mounted_dashboards() -> None:
    providers = _yaml(GRAFANA_PROVISIONING / "dashboards" / "vigil.yml")["providers"]
    for provider in providers:
        host = _host_path("grafana", provider["options"]["path"])
        assert host.is_dir(), f"{provider['options']['path']} maps to {host}, not a directory"
        assert (host / "vigil.json").is_file(), f"no vigil.json in {host}"
    home = _environment(_service("grafana")).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert _host_path("grafana", home).is_file(), home


def test_grafana_lets_anonymous_users_view_only() -> None:
    environment = _environment(_service("grafana"))
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


# --- one metrics port everywhere ----------------------------------------------------------


def test_metrics_port_agrees_across_prometheus_config_dockerfile_and_compose() -> None:
    port = _vigil_toml()["metrics"]["port"]
    with PROMETHEUS.open(encoding="utf-8") as handle:
        prometheus = yaml.safe_load(handle)
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert "vigil" in jobs, f"no scrape job named vigil: {sorted(jobs)}"
    targets = [t for group in jobs["vigil"]["static_configs"] for t in group["targets"]]
    assert f"vigil:{port}" in targets, f"the vigil job scrapes {targets}, not vigil:{port}"
    assert port in _exposed_ports(), f"the Dockerfile does not EXPOSE {port}"
    published = {str(mapping).rpartition(":")[2] for mapping in _service("vigil")["ports"]}
    assert str(port) in published, f"compose publishes {published}, not {port}"


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [arguments for keyword, arguments in _final_stage() if keyword == "USER"]
    assert users, "the final stage has no USER"
    user = users[-1].partition(":")[0]
    assert user not in ("root", "0"), f"the container runs as {users[-1]}"


def test_dockerfile_healthcheck_asks_healthz() -> None:
    checks = [arguments for keyword, arguments in _final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "the final stage needs exactly one HEALTHCHECK"
    assert "/healthz" in checks[0]
    assert "curl" not in checks[0] and "wget" not in checks[0], "python:slim has neither"


def test_dockerfile_copies_existing_paths() -> None:
    for keyword, arguments in _dockerfile():
        words = [word for word in shlex.split(arguments) if not word.startswith("--")]
        if keyword == "COPY" and not arguments.startswith("--from"):
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"


def test_dockerfile_sets_documented_environment_only() -> None:
    names = set()
    for keyword, arguments in _dockerfile():
        if keyword == "ENV":
            names.update(word.partition("=")[0] for word in shlex.split(arguments))
    vigil_names = {name for name in names if name.startswith("VIGIL_")}
    assert "VIGIL_METRICS_HOST" in vigil_names, "listen on 0.0.0.0 inside the container"
    assert vigil_names <= DOCUMENTED_ENVIRONMENT, sorted(vigil_names - DOCUMENTED_ENVIRONMENT)


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "var"} <= patterns


# --- deploy/vigil.toml --------------------------------------------------------------------


def test_vigil_toml_uses_documented_sections_and_keys_only() -> None:
    config = _vigil_toml()
    unknown_sections = set(config) - set(DOCUMENTED_KEYS)
    assert not unknown_sections, f"undocumented sections: {sorted(unknown_sections)}"
    for section, body in config.items():
        assert isinstance(body, dict), f"{section} must be a table"
        unknown = set(body) - DOCUMENTED_KEYS[section]
        assert not unknown, f"undocumented keys in [{section}]: {sorted(unknown)}"
    assert isinstance(config.get("detector", {}).get("params", {}), dict)


def test_vigil_toml_points_at_the_compose_broker() -> None:
    assert _vigil_toml()["kafka"]["bootstrap_servers"] == "kafka:9092"


def test_vigil_toml_loads_as_vigil_would() -> None:
    config = load_config(VIGIL_TOML, environ={})
    assert config.kafka.bootstrap_servers == "kafka:9092"
