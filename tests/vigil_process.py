"""`vigil run` as a child process, for the integration tests and the benchmarks alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class VigilProcess:
    """`vigil run -c CONFIG` as a child process, its output in a log file."""

    def __init__(self, config_path: Path, log_path: Path, metrics_port: int) -> None:
        self.metrics_port = metrics_port
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vigil.stream.cli", "run", "-c", str(config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def metrics(self) -> dict[str, float]:
        """Samples from /metrics as {'name{label="v",...}': value}."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            text = response.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def processed(self) -> int:
        """Sum of vigil_events_processed_total + vigil_events_invalid_total (-1: not up yet)."""
        try:
            samples = self.metrics()
        except OSError:
            return -1
        return int(sum(v for k, v in samples.items()
                       if k.startswith(("vigil_events_processed_total{",
                                        "vigil_events_invalid_total{"))))

    def status(self, path: str) -> int:
        """The HTTP status of ``path`` on the metrics port (e.g. ``/readyz``)."""
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def kill(self) -> None:
        """SIGKILL: no chance to flush, snapshot or commit."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._log.close()

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (vigil snapshots and commits), then the exit code; killed, and
        TimeoutExpired raised, when it does not exit within ``timeout_s``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()
        return code
