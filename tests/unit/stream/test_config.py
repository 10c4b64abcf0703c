"""Configuration: defaults, precedence file < environment < flags, and errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.stream.cli import render_toml
from vigil.stream.config import load_config
from vigil.stream.errors import ConfigError


def test_defaults_need_no_file() -> None:
    config = load_config(environ={})
    assert config.kafka.bootstrap_servers == "localhost:9092"
    assert config.kafka.group_id == "vigil"
    assert (config.topics.predictions, config.topics.telemetry) == ("predictions", "telemetry")
    assert (config.topics.alerts, config.topics.dead_letter) == ("alerts", "vigil-dlq")
    assert config.metrics.port == 9108
    assert config.detector.name == "adaptive"


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[kafka]\nbootstrap_servers = "file:9092"\ngroup_id = "from-file"\n'
                    "[metrics]\nport = 9000\n")
    env = {"VIGIL_BOOTSTRAP_SERVERS": "env:9092", "VIGIL_METRICS_PORT": "9001"}
    config = load_config(path, environ=env, overrides={"metrics.port": 9002})
    assert config.kafka.bootstrap_servers == "env:9092"
    assert config.kafka.group_id == "from-file"
    assert config.metrics.port == 9002


def test_detector_params_from_file(tmp_path: Path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[detector]\nname = "shewhart"\nparams = { k = 3.5, warmup = 50 }\n')
    assert load_config(path, environ={}).detector.params == {"k": 3.5, "warmup": 50}


@pytest.mark.parametrize(
    ("text", "env", "fragment"),
    [
        ("[kafka]\nbootstrapservers = 'x'\n", {}, "unknown key kafka.bootstrapservers"),
        ("[kafkaa]\n", {}, "unknown section [kafkaa]"),
        ("[metrics]\nport = 'ninety'\n", {}, "metrics.port"),
        ("[metrics]\nport = 70000\n", {}, "metrics.port = 70000"),
        ("[kafka]\nauto_offset_reset = 'begin'\n", {}, 'use "earliest" or "latest"'),
        ("[topics]\nalerts = 'telemetry'\n", {}, "topics.alerts"),
        ("[topics]\nalerts = 'bad topic!'\n", {}, "topics.alerts"),
        ("[detector]\nname = 'nope'\n", {}, "choose one of: "),
        ("[detector]\nname = 'shewhart'\nparams = { k = -1.0 }\n", {}, "k must be"),
        ("[detector]\nparams = { kk = 1.0 }\n", {}, "kk"),
        ("", {"VIGIL_METRICS_PORT": "abc"}, "metrics.port = 'abc' is not a valid int"),
        ("kafka = 3\n", {}, "must be a table"),
        ("[kafka\n", {}, "not valid TOML"),
    ],
)
def test_bad_config_names_key_and_fix(
    tmp_path: Path, text: str, env: dict[str, str], fragment: str
) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as error:
        load_config(path, environ=env)
    assert fragment in str(error.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", environ={})


def test_rendered_config_reads_back_the_same(tmp_path: Path) -> None:
    config = load_config(environ={"VIGIL_GROUP_ID": "g", "VIGIL_METRICS_PORT": "1234"})
    path = tmp_path / "effective.toml"
    path.write_text(render_toml(config))
    assert load_config(path, environ={}) == config


def test_alert_routes_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[alerts]\nroutes = { "colour:red" = "x" }\n')
    with pytest.raises(ConfigError, match="kind:<anomaly"):
        load_config(path, environ={})


def test_detector_overrides_pick_the_first_matching_glob(tmp_path: Path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[detector]\nname = "shewhart"\n'
                    '[detector.overrides]\n'
                    '"telemetry/*/latency_ms" = { name = "shewhart", params = { k = 4.0 } }\n'
                    '"telemetry/web-*/*" = { name = "shewhart", params = { warmup = 50 } }\n')
    detector = load_config(path, environ={}).detector
    assert detector.spec_for("telemetry/web-1/latency_ms") == ("shewhart", {"k": 4.0})
    assert detector.spec_for("telemetry/web-1/cpu") == ("shewhart", {"warmup": 50})
    assert detector.spec_for("prediction/fraud/prediction") == ("shewhart", {})


def test_a_bad_override_names_its_glob(tmp_path: Path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[detector.overrides]\n"telemetry/*" = { name = "shewhart", k = 4.0 }\n')
    with pytest.raises(ConfigError, match='detector.overrides."telemetry/\\*"'):
        load_config(path, environ={})


def test_state_keys_come_from_the_setting_or_a_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("new-key-0123456789abcdef\n\nold-key-0123456789abcdef\n")
    config = load_config(overrides={"state.hmac_key_file": str(keys)}, environ={})
    assert config.state.hmac_keys() == (b"new-key-0123456789abcdef", b"old-key-0123456789abcdef")
    env = load_config(environ={"VIGIL_STATE_HMAC_KEY": "k" * 32})
    assert env.state.hmac_keys() == (b"k" * 32,) and "k" * 32 not in repr(env)
    assert load_config(environ={}).state.hmac_keys() == ()
    with pytest.raises(ConfigError, match="too short"):
        load_config(environ={"VIGIL_STATE_HMAC_KEY": "short"})
    with pytest.raises(ConfigError, match="not both"):
        load_config(overrides={"state.hmac_key_file": str(keys), "state.hmac_key": "k" * 32},
                    environ={})
