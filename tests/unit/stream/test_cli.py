"""The `vigil` command line: every subcommand has --help; check-config explains bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vigil.stream.cli import main
from vigil.stream.engine.events import decode_event


@pytest.mark.parametrize("command", ["run", "demo", "replay", "generate", "check-config"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: vigil" in capsys.readouterr().out


def test_check_config_prints_effective_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_GROUP_ID", "from-env")
    path = tmp_path / "vigil.toml"
    path.write_text("[metrics]\nport = 9200\n")
    assert main(["check-config", "-c", str(path), "--bootstrap-servers", "k1:9092,k2:9092"]) == 0
    out = capsys.readouterr().out
    assert 'bootstrap_servers = "k1:9092,k2:9092"' in out
    assert 'group_id = "from-env"' in out
    assert "port = 9200" in out


def test_check_config_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text("[kafka]\nsession_timeout_ms = 1000\nheartbeat_interval_ms = 3000\n")
    assert main(["check-config", "-c", str(path)]) == 2
    assert "kafka.heartbeat_interval_ms" in capsys.readouterr().err


def test_generate_writes_valid_labelled_events(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    assert main(["generate", "-o", str(out), "-n", "2000", "--anomaly-rate", "0.01"]) == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) == 2000
    events = [decode_event(line) for line in lines]
    assert {type(e).__name__ for e in events} == {"PredictionEvent", "TelemetryEvent"}
    labels = [json.loads(line).get("injected") for line in lines]
    kinds = {label["type"] for label in labels if label}
    assert kinds == {"spike", "level_shift"}


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from vigil.stream.cli import configure_logging

    configure_logging("INFO", "json")
    try:
        logging.getLogger("vigil.stream.engine.processor").info(
            "rebalance: %d partitions assigned", 3)
    finally:
        configure_logging("WARNING", "text")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["message"] == "rebalance: 3 partitions assigned"
    assert entry["level"] == "INFO" and entry["logger"] == "vigil.stream.engine.processor"
    assert entry["time"].endswith("Z")


def test_secrets_are_redacted_from_every_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from vigil.stream.cli import configure_logging

    configure_logging("DEBUG", "text", ["s3cr3t-pass"])
    try:
        logging.getLogger("kafka.admin.client").debug("config: %s", {"ssl_password": "s3cr3t-pass"})
    finally:
        configure_logging("WARNING", "text")
    err = capsys.readouterr().err
    assert "s3cr3t-pass" not in err and "<redacted>" in err


@pytest.mark.parametrize(("toml", "key"), [
    ("[models]\nenabled = true\nlabel_ttl_s = inf\n", "models.label_ttl_s"),
    ("[models]\nenabled = true\nchart_params = { h = -1 }\n", "models"),
    ("[models]\nenabled = true\nchart_params = { h = nan }\n", "models.chart_params.h"),
    ("[models]\nenabled = true\nlearner = \"river\"\nmax_step = 0.5\n"
     "params = { model = \"linear_model.LinearRegression\" }\n", "models"),
    ("[state]\ncheckpoint_interval_s = inf\n", "state.checkpoint_interval_s"),
    ("[detector]\nname = \"ewma\"\nparams = { lambda_ = 1e-6, arl0 = 1000 }\n", "detector"),
    ("[detector]\nparams = { k = -inf }\n", "detector.params.k"),
])
def test_check_config_refuses_what_run_would_fail_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str) -> None:
    """Each of these passed check-config, then crashed `vigil run` (or hung both)."""
    path = tmp_path / "vigil.toml"
    path.write_text(toml)
    assert main(["check-config", "-c", str(path)]) == 2
    assert f"configuration error: {key}" in capsys.readouterr().err


@pytest.mark.parametrize("toml", ["[kafka]\nsasl_password = 123456789\n",
                                  "[state]\nhmac_key = 123456789123456789\n",
                                  "[kafka]\nssl_password = [123456789]\n"])
def test_a_secret_of_the_wrong_type_is_not_echoed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text(toml)
    assert main(["check-config", "-c", str(path)]) == 2
    assert "123456789" not in capsys.readouterr().err


def test_check_config_redacts_the_state_key(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[state]\nhmac_key = "a-state-key-of-32-characters-xyz"\n')
    assert main(["check-config", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert 'hmac_key = "<redacted>"' in out and "32-characters" not in out


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_control_characters_in_a_logged_name_are_escaped(
        capsys: pytest.CaptureFixture[str], log_format: str) -> None:
    """A key with a newline forged log lines; an escape sequence drove the terminal."""
    import logging

    from vigil.stream.cli import configure_logging

    configure_logging("INFO", log_format)
    try:
        logging.getLogger("vigil.stream.engine.processor").info(
            "alert anomaly %s/%s", "web-1\n2026-01-01 ERROR forged\x1b[2J\u202e", "cpu")
    finally:
        configure_logging("WARNING", "text")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "\x1b" not in line and "\u202e" not in line
    assert "forged" in line and "\\x1b[2J" in line
