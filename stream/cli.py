"""The ``vigil`` command: run, demo, replay, generate, check-config, alerts, export-model.

Exit codes: 0 success, 1 runtime failure (e.g. the broker cannot be reached), 2 bad usage or
configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from vigil.detectors import detector_names
from vigil.stream.config import ENVIRONMENT, SECRETS, VigilConfig, load_config
from vigil.stream.errors import ConfigError, VigilError
from vigil.stream.text import printable

log = logging.getLogger("vigil")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vigil`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        print(f"vigil: configuration error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except VigilError as exc:
        print(f"vigil: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    """The ``vigil`` command and its subcommands, each added by its own function."""
    from vigil.stream.kafka.subscribe import add_alerts_command

    parser = argparse.ArgumentParser(
        prog="vigil",
        description="Kafka-native streaming anomaly detector and model monitor.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (_add_run, _add_demo, _add_replay, _add_generate, _add_check_config,
                        _add_export_model, add_alerts_command):
        add_command(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vigil run``."""
    run = commands.add_parser(
        "run", help="consume the prediction and telemetry topics and publish alerts",
        description="Consume prediction and telemetry events in a consumer group, keep control "
        "limits per series, publish alerts and serve Prometheus metrics. Settings come from "
        "the defaults, then CONFIG, then VIGIL_* environment variables, then these flags.",
        epilog=_environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_flags(run)
    run.set_defaults(handler=_run)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vigil demo``."""
    demo = commands.add_parser(
        "demo", help="embedded broker + synthetic producer + detector, with live alerts",
        description="Start an embedded broker, produce synthetic events with injected "
        "anomalies, run the detector on them, serve metrics and print alerts as they arrive.",
    )
    demo.add_argument("-c", "--config", type=Path, help="TOML configuration file")
    demo.add_argument("--seconds", type=float, default=None,
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--rate", type=float, default=100.0,
                      help="synthetic events per second (default: 100)")
    demo.add_argument("--metrics-port", type=int, default=9108,
                      help="port for /metrics (default: 9108; 0 picks a free one)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the generator")
    demo.add_argument("--workdir", type=Path, default=Path("var/demo"),
                      help="where the broker log goes (default: var/demo)")
    demo.set_defaults(handler=_demo)


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vigil replay``."""
    replay = commands.add_parser(
        "replay", help="run the detectors offline over a CSV or JSONL file",
        description="Replay INPUT (CSV with header timestamp,value[,key], or JSONL events) "
        "through the detectors, no Kafka. Writes one row per point and series: "
        "timestamp,key,metric,value,score,anomaly,centre,lower,upper, as CSV or, for an "
        "output named *.parquet, as Parquet.",
    )
    replay.add_argument("input", type=Path, help="CSV or JSONL file")
    replay.add_argument("-c", "--config", type=Path, help="TOML configuration file")
    replay.add_argument("-o", "--output", type=Path,
                        help="output CSV (default: stdout), or Parquet when it ends in "
                        ".parquet or .pq")
    replay.add_argument("--detector", choices=detector_names(),
                        help="detector for every series (overrides the config)")
    replay.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="detector parameter, repeatable (e.g. --param k=3.5)")
    replay.add_argument("--plot", type=Path, metavar="OUT.png",
                        help="also draw one series' control chart to this PNG "
                        "(needs the 'plot' extra: pip install 'vigil-kafka[plot]')")
    replay.add_argument("--series", metavar="KEY/METRIC",
                        help="the series to draw with --plot (default: the one with the most "
                        "alarms)")
    replay.set_defaults(handler=_replay)


def _add_generate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vigil generate``."""
    generate = commands.add_parser(
        "generate", help="synthetic events with injected, labelled anomalies",
        description="Write synthetic prediction and telemetry events, with injected spikes and "
        "level shifts labelled in an extra 'injected' field, to a JSONL file or to Kafka.",
    )
    target = generate.add_mutually_exclusive_group(required=True)
    target.add_argument("-o", "--output", type=Path, help="JSONL file to write ('-': stdout)")
    target.add_argument("--bootstrap-servers", help="produce to this Kafka cluster instead")
    generate.add_argument("-c", "--config", type=Path,
                          help="TOML config naming the topics (with --bootstrap-servers)")
    generate.add_argument("-n", "--events", type=int, default=10_000, help="number of events")
    generate.add_argument("--models", type=int, default=2, help="number of models")
    generate.add_argument("--sources", type=int, default=4, help="number of telemetry sources")
    generate.add_argument("--anomaly-rate", type=float, default=0.002,
                          help="probability that an event starts an anomaly")
    generate.add_argument("--rate", type=float, default=0.0,
                          help="events per second when producing (0: as fast as possible)")
    generate.add_argument("--seed", type=int, default=0, help="random seed")
    generate.add_argument("--labels", action="store_true",
                          help="also each prediction's label, a few events later (labels topic)")
    generate.set_defaults(handler=_generate)


def _add_check_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vigil check-config``."""
    check = commands.add_parser(
        "check-config", help="validate a configuration and print the effective settings",
        description="Load the configuration as 'vigil run' would (file, environment, flags) "
        "and print the effective settings, or the error naming the key and the fix.",
    )
    _add_config_flags(check)
    check.set_defaults(handler=_check_config)


def _add_export_model(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vigil export-model``."""
    export = commands.add_parser(
        "export-model", help="write a maintained model from the model-updates topic as joblib",
        description="Read the model-updates topic from the beginning, take the latest update "
        "of MODEL and write it as a fitted scikit-learn estimator (joblib) to OUTPUT.",
    )
    _add_config_flags(export)
    export.add_argument("--model", required=True, help="the model's name")
    export.add_argument("-o", "--output", type=Path, required=True, help="joblib file to write")
    export.add_argument("--classes", help="a classifier's two labels, comma-separated "
                        "(default 0,1)")
    export.set_defaults(handler=_export_model)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="TOML configuration file")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (host:port,...)")
    parser.add_argument("--group-id", help="consumer group id")
    parser.add_argument("--metrics-port", type=int, help="port of the metrics endpoint")


def _environment_help() -> str:
    rows = "\n".join(f"  {name:<26} {dotted}" for name, dotted in ENVIRONMENT.items())
    return f"environment variables (override the config file):\n{rows}"


def _load(args: argparse.Namespace) -> VigilConfig:
    return load_config(
        args.config,
        overrides={
            "kafka.bootstrap_servers": getattr(args, "bootstrap_servers", None),
            "kafka.group_id": getattr(args, "group_id", None),
            "metrics.port": getattr(args, "metrics_port", None),
        },
    )


def configure_logging(level: str, log_format: str = "text",
                      secrets: Sequence[str] = ()) -> None:
    """Log lines on stderr, human-readable or one JSON object each; the Kafka client only
    speaks up from ERROR unless debugging. ``secrets`` never reach the log, whoever logs them
    (kafka-python logs its whole configuration at DEBUG)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets(secrets))
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(PrintableFormatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    debugging = level.upper() == "DEBUG"
    logging.getLogger("kafka").setLevel(logging.NOTSET if debugging else logging.ERROR)


class RedactSecrets(logging.Filter):
    """Replaces every occurrence of a secret in a log record's message by ``<redacted>``."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                for secret in self.secrets:
                    message = message.replace(secret, "<redacted>")
                record.msg, record.args = message, None
        return True


class PrintableFormatter(logging.Formatter):
    """Log lines whose message has its control characters escaped: a name from an event
    cannot forge a log line or drive the terminal (tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = printable(record.message)
        return super().formatMessage(record)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": printable(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and Ctrl-C set ``stop``: the loop finishes its batch, commits and exits 0."""

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _run(args: argparse.Namespace) -> int:
    from vigil.stream.service import run_service

    stop = threading.Event()
    stop_on_signals(stop)  # first: a SIGTERM while the configuration loads still exits 0
    config = _load(args)
    secrets = [config.kafka.secret(name) or "" for name in ("ssl_password", "sasl_password")]
    secrets += [key.decode("utf-8", "replace") for key in config.state.hmac_keys()]
    configure_logging(config.runtime.log_level, config.runtime.log_format, secrets)
    run_service(config, stop)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vigil.stream.demo import run_demo

    base = load_config(args.config)
    configure_logging("WARNING")
    stop = threading.Event()
    stop_on_signals(stop)
    summary = run_demo(base, stop, seconds=args.seconds, rate=args.rate,
                       metrics_port=args.metrics_port, seed=args.seed, workdir=args.workdir)
    print(summary.line())
    return 0


def _replay(args: argparse.Namespace) -> int:
    from vigil.stream.replay import PARQUET_SUFFIXES, ParquetOutput, SeriesCapture, replay

    if args.series is not None and args.plot is None:
        raise ConfigError("--series picks the series to draw: give --plot OUT.png with it")
    config = load_config(args.config, environ={})
    detector = args.detector or config.detector.name
    params: dict[str, Any] = {} if args.detector and args.detector != config.detector.name \
        else dict(config.detector.params)
    params.update(parse_params(args.param))
    config = dataclasses.replace(config, detector=dataclasses.replace(
        config.detector, name=detector, params=params))
    capture = None if args.plot is None else SeriesCapture(args.series)
    if args.input.is_dir():
        raise VigilError(f"input {str(args.input)!r} is a directory; give a CSV or JSONL file")
    if not args.input.exists():
        raise VigilError(f"input file {str(args.input)!r} does not exist")
    output: TextIO | ParquetOutput
    if args.output is not None and args.output.suffix.lower() in PARQUET_SUFFIXES:
        output = ParquetOutput(args.output)
    else:
        try:
            output = sys.stdout if args.output is None else args.output.open("w",
                                                                             encoding="utf-8")
        except OSError as exc:
            raise VigilError(f"cannot write {str(args.output)!r}: {exc.strerror}") from None
    try:
        summary = replay(args.input, output, config, capture=capture)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        if output is not sys.stdout and not isinstance(output, ParquetOutput):
            output.close()
    print(summary.line(), file=sys.stderr)
    if summary.valid == 0:
        raise VigilError(f"nothing valid was read from {str(args.input)!r}")
    if capture is not None:
        png = capture.render(detector)
        try:
            args.plot.write_bytes(png)
        except OSError as exc:
            raise VigilError(f"cannot write the chart to {str(args.plot)!r}: "
                             f"{exc.strerror}") from exc
        alarms = sum(point.result.anomaly for point in capture.points)
        print(f"drew {printable(capture.series or '')} ({len(capture.points)} points, {alarms} "
              f"alarm{'' if alarms == 1 else 's'}) to {args.plot}", file=sys.stderr)
    return 0


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``["k=3.5", "rules=['we1']"]`` → ``{"k": 3.5, "rules": ["we1"]}`` (TOML values, else text).

    >>> parse_params(["k=3.5", "warmup=50", "outliers=clip"])
    {'k': 3.5, 'warmup': 50, 'outliers': 'clip'}
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param {pair!r} is not K=V; write e.g. --param k=3.5")
        try:
            params[name.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            params[name.strip()] = text
    return params


def _generate(args: argparse.Namespace) -> int:
    from vigil.stream.generate import generate_events

    events = generate_events(args.events, models=args.models, sources=args.sources,
                             seed=args.seed, anomaly_rate=args.anomaly_rate,
                             start=round(time.time(), 3), labels=args.labels)
    if args.output is not None:
        handle = sys.stdout if str(args.output) == "-" else args.output.open("w", encoding="utf-8")
        try:
            for event in events:
                handle.write(json.dumps(event.body, separators=(",", ":")) + "\n")
        finally:
            if handle is not sys.stdout:
                handle.close()
        return 0
    from vigil.stream.generate import produce_events
    from vigil.stream.kafka.kafka_python import make_producer

    config = load_config(args.config, overrides={"kafka.bootstrap_servers": args.bootstrap_servers})
    producer = make_producer(config)
    sent = produce_events(producer, config, events, rate=args.rate)
    producer.close()
    labels = f" and {config.topics.labels}" if args.labels else ""
    print(f"produced {sent} events to {config.topics.predictions}, {config.topics.telemetry}"
          f"{labels}", file=sys.stderr)
    return 0


def _export_model(args: argparse.Namespace) -> int:
    import joblib

    from vigil.stream.kafka.subscribe import AlertRecord, read_model_updates, topic_reader

    config = _load(args)
    topic = config.topics.model_updates
    classes = None
    if args.classes:
        classes = [_label(part.strip()) for part in args.classes.split(",")]
        if len(classes) != 2:
            raise ConfigError(f"--classes {args.classes!r}: give exactly two labels, e.g. 0,1")
    model = args.model
    latest: dict[str, Any] = {}
    refused: list[str] = []

    def keep(message: dict[str, Any], record: AlertRecord) -> None:
        """The newest usable update of the model: Vigil keys updates by model, so they all
        share a partition, read in offset order; others, and unusable ones, are skipped."""
        if record.key != model.encode() or message.get("model") != model:
            return
        try:
            estimator = _update_estimator(message, classes)
        except (KeyError, TypeError, ValueError) as exc:
            refused.append(f"{record.partition}/{record.offset}: {exc}")
            return
        latest.update(message=message, estimator=estimator)

    def warn(message: str) -> None:
        print(f"vigil export-model: {printable(message)}", file=sys.stderr)

    consumer = topic_reader(config)
    try:
        read_model_updates(consumer, topic, keep, warn=warn)
    finally:
        consumer.close()
    for reason in refused[-3:]:
        warn(f"skipped an unusable update at {reason}")
    if not latest:
        warn(f"no usable update of model {model!r} on {topic!r}"
             + (f" ({len(refused)} unusable)" if refused else ""))
        return 1
    message, estimator = latest["message"], latest["estimator"]
    joblib.dump(estimator, args.output)
    print(printable(f"wrote {type(estimator).__name__} of {model!r} (version "
                    f"{message['version']}, {message.get('n_updates')} updates, loss "
                    f"{message.get('loss')}) to {args.output}"))
    return 0


def _update_estimator(message: dict[str, Any], classes: list[Any] | None) -> Any:
    """The fitted scikit-learn estimator of a model-update message; ValueError (or KeyError,
    TypeError) naming what makes it unusable: the message is data anyone could have written."""
    from vigil.updaters.base import LinearParams
    from vigil.updaters.sklearn_io import to_sklearn

    version = message.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be an integer >= 1, got {version!r}"[:200])
    params = LinearParams.from_dict(message, classes)
    numbers = (*params.coef, params.intercept)
    if not all(math.isfinite(number) for number in numbers):
        raise ValueError("its coefficients or intercept are not all finite")
    return to_sklearn(params, message.get("estimator"))


def _label(text: str) -> int | float | str:
    """A class label from the command line: a number when it reads as one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _check_config(args: argparse.Namespace) -> int:
    from vigil.stream.engine.processor import build_engine

    config = _load(args)
    build_engine(config)  # builds every detector, buffer and model as `vigil run` would
    print(render_toml(config), end="")
    print("# configuration is valid", file=sys.stderr)
    return 0


def render_toml(config: VigilConfig) -> str:
    """The effective configuration as TOML that ``load_config`` reads back to the same value."""
    import dataclasses

    lines: list[str] = []
    for section in dataclasses.fields(config):
        lines.append(f"[{section.name}]")
        for item in dataclasses.fields(getattr(config, section.name)):
            value = getattr(getattr(config, section.name), item.name)
            if f"{section.name}.{item.name}" in SECRETS and value:
                lines.append(f'{item.name} = "<redacted>"')
                continue
            lines.append(f"{item.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


if __name__ == "__main__":
    sys.exit(main())
