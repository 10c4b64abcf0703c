"""kafka.client and kafka.fetch_max_wait_ms: defaults, environment, and errors that name the fix."""

from __future__ import annotations

import pytest

from vigil.stream import config as config_module
from vigil.stream.config import load_config
from vigil.stream.errors import ConfigError


def test_defaults_keep_kafka_python_and_a_short_fetch_wait() -> None:
    kafka = load_config(environ={}).kafka
    assert (kafka.client, kafka.fetch_max_wait_ms) == ("kafka-python", 20)


def test_client_from_the_environment() -> None:
    config = load_config(environ={"VIGIL_KAFKA_CLIENT": "confluent-kafka"})
    assert config.kafka.client == "confluent-kafka"


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"kafka.client": "librdkafka"}, "kafka.client = 'librdkafka' is invalid: use one of "
                                     "kafka-python, confluent-kafka"),
    ({"kafka.fetch_max_wait_ms": -1}, "kafka.fetch_max_wait_ms = -1 is invalid"),
    ({"kafka.fetch_max_wait_ms": 40_000}, "below kafka.request_timeout_ms"),
])
def test_bad_values_name_the_key_and_the_fix(overrides: dict[str, object],
                                             fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config(environ={}, overrides=overrides)


def test_confluent_without_the_package_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "_installed", lambda module: False)
    with pytest.raises(ConfigError, match=r"kafka.client = 'confluent-kafka' is invalid: .*"
                                          r"pip install 'vigil-kafka\[confluent\]'"):
        load_config(environ={"VIGIL_KAFKA_CLIENT": "confluent-kafka"})
