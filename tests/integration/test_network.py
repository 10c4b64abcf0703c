"""A faulty network between `vigil run` and the broker: resets, latency spikes, a black hole.

A small TCP proxy on loopback sits in front of a broker of this test's own, which advertises
the proxy's address, so every connection Vigil makes goes through it. The proxy tells Vigil's
connections from the test's own (the producer, the readers) by the client id of their first
request, and only Vigil's suffer: events keep flowing into the broker whatever the network
does to Vigil, as they would from producers elsewhere.

During the black hole every connection of Vigil's, old or new, is silently dropped: its bytes
go nowhere and it is never closed, as behind a firewall that lost its state. Once the network
heals, new connections work, but the old ones stay dead: Vigil has to notice them by itself.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.support import (
    BackgroundProducer,
    Topics,
    committed_offsets,
    create_topics,
    json_values,
    read_partitions,
    read_topic,
    reference_alerts,
    wait_for,
    write_config,
)
from tests.vigil_process import VigilProcess
from vigil.stream.generate import generate_events
from vigil.stream.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

BLACK_HOLE_S = 30.0
JOIN_GROUP = 11
CATCH_UP_S = 60.0


class FaultyProxy:
    """Forwards loopback TCP connections to ``upstream_port``, and misbehaves on command for the
    connections whose first Kafka request carries a client id starting with ``victim``."""

    def __init__(self, port: int, upstream_port: int, victim: bytes = b"vigil") -> None:
        self.upstream_port = upstream_port
        self.victim = victim
        self.port = port
        self.latency_s = 0.0
        """Each chunk a victim's connection forwards waits this long, with probability 1/3."""
        self.black_hole = False
        self.black_hole_on: int | None = None
        """A Kafka API key: the black hole opens when a victim sends a request of it (which
        it swallows), so the fault lands in the middle of that exchange."""
        self.opened = threading.Event()
        self._dead: set[socket.socket] = set()
        """Victims' client sockets whose traffic is dropped for good (they stay open)."""
        self._victims: set[socket.socket] = set()
        self._reset: set[socket.socket] = set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._chance = random.Random(14)  # noqa: S311 - fault timing, not secrets
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def reset_all(self) -> int:
        """Abort every live victim's connection with a TCP reset; return how many."""
        with self._lock:
            victims = list(self._victims - self._dead - self._reset)
            self._reset.update(victims)
        for sock in victims:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)  # wakes its pump, which closes it: a reset
        return len(victims)

    def start_black_hole(self) -> None:
        """From now on drop every byte of the victims' connections, old and new."""
        with self._lock:
            self.black_hole = True
            self._dead |= self._victims
        self.opened.set()

    def heal(self) -> None:
        """New connections work again; those the black hole swallowed stay dead."""
        with self._lock:
            self.black_hole = False

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        """Read the first request's header, pick the connection's fate, then pump."""
        head = b""
        try:
            while len(head) < 14 or len(head) < 14 + int.from_bytes(head[12:14], "big"):
                chunk = client.recv(65536)
                if not chunk:
                    self._close(client)
                    return
                head += chunk
        except OSError:
            self._close(client)
            return
        victim = head[14:14 + int.from_bytes(head[12:14], "big")].startswith(self.victim)
        with self._lock:
            if victim:
                self._victims.add(client)
                if self.black_hole:
                    self._dead.add(client)
        if client in self._dead:
            self._swallow(client)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            self._close(client)
            return
        with self._lock:
            self._sockets.add(upstream)
        threading.Thread(target=self._pump, args=(upstream, client, client, False),
                         daemon=True).start()
        self._pump(client, upstream, client, victim, head)

    def _pump(self, source: socket.socket, target: socket.socket, client: socket.socket,
              requests: bool, first: bytes = b"") -> None:
        """Copy ``source`` to ``target``; ``requests``: this is a victim's request stream."""
        framing = _Framing()
        try:
            chunk = first
            while True:
                if not chunk:
                    chunk = source.recv(65536)
                    if not chunk:
                        break
                if requests and self.black_hole_on in framing.api_keys(chunk):
                    self.black_hole_on = None
                    self.start_black_hole()
                if client in self._dead:
                    if source is client:
                        self._swallow(client)  # never forwarded, never answered, never closed
                    break
                if client in self._victims and self.latency_s \
                        and self._chance.random() < 1 / 3:
                    time.sleep(self.latency_s)
                target.sendall(chunk)
                chunk = b""
        except OSError:
            pass
        finally:
            upstream = target if source is client else source
            if client in self._dead:
                self._close(upstream)  # the broker's side of a dead connection goes quietly
            elif client in self._reset:
                self._close(client, abort=True)
                self._close(upstream)
            else:
                self._close(source)
                self._close(target)  # wakes the other direction's pump

    def _swallow(self, client: socket.socket) -> None:
        """Read and drop what a dead connection sends until its client gives up on it."""
        try:
            while client.recv(65536):
                pass
        except OSError:
            pass
        self._close(client)

    def _close(self, sock: socket.socket, *, abort: bool = False) -> None:
        """Close ``sock``: gracefully, or with a reset (``abort``, its linger set to 0)."""
        with self._lock:
            self._sockets.discard(sock)
        if not abort:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        sock.close()


class _Framing:
    """Follows the size-prefixed Kafka requests of one connection across chunks."""

    def __init__(self) -> None:
        self.left = 0
        """Bytes of the current request still to come."""
        self.header = b""

    def api_keys(self, chunk: bytes) -> list[int]:
        """The API keys of the requests that start in ``chunk``."""
        keys = []
        position = 0
        while position < len(chunk):
            if self.left:
                step = min(self.left, len(chunk) - position)
                self.left -= step
                position += step
                continue
            need = 6 - len(self.header)
            self.header += chunk[position:position + need]
            position += need
            if len(self.header) == 6:
                keys.append(int.from_bytes(self.header[4:6], "big"))
                self.left = int.from_bytes(self.header[:4], "big") - 2
                self.header = b""
        return keys


class _HealthLog:
    """Samples /healthz and /readyz twice a second, in a thread."""

    def __init__(self, vigil: VigilProcess) -> None:
        self.vigil = vigil
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def liveness(self) -> set[int]:
        return {live for _, live, _ in self.samples}

    def readiness_at(self, start: float, end: float) -> set[int]:
        return {ready for at, _, ready in self.samples if start <= at <= end}

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append((time.monotonic(), self.vigil.status("/healthz"),
                                 self.vigil.status("/readyz")))


def _messages(topics: Topics, count: int) -> list[tuple[str, bytes, bytes]]:
    kinds = {"prediction": topics.predictions, "telemetry": topics.telemetry}
    return [(kinds[e.kind], e.key.encode(), json.dumps(e.body).encode())
            for e in generate_events(count, seed=31, models=4, sources=6, anomaly_rate=0.01)]


def _newcomer(broker: EmbeddedBroker, topics: Topics) -> subprocess.Popen[bytes]:
    """Another member of Vigil's group, in a process of its own: its arrival makes Vigil rejoin."""
    code = (f"from kafka import KafkaConsumer\n"
            f"c = KafkaConsumer({topics.predictions!r}, {topics.telemetry!r}, "
            f"bootstrap_servers={broker.bootstrap_servers!r}, group_id={topics.group!r}, "
            f"enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000)\n"
            f"while True:\n    c.poll(timeout_ms=500)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_resets_latency_and_a_black_hole_lose_nothing_and_heal_within_a_minute(
    tmp_path: Path, client: str
) -> None:
    proxy_port = free_port()
    broker = EmbeddedBroker(tmp_path / "broker.log", advertised_port=proxy_port)
    proxy = FaultyProxy(proxy_port, broker.port)
    try:
        with broker:
            _run_through(proxy, broker, tmp_path, client)
    finally:
        proxy.close()


def _run_through(proxy: FaultyProxy, broker: EmbeddedBroker, tmp_path: Path,
                 client: str) -> None:
    topics = Topics("net")
    create_topics(broker, [topics.predictions, topics.telemetry], partitions=3)
    port = free_port()
    config = write_config(tmp_path / "vigil.toml", broker, topics, metrics_port=port,
                          extra="[state]\ncheckpoint_interval_s = 1.0\n")
    config.write_text(config.read_text().replace("[kafka]\n", f'[kafka]\nclient = "{client}"\n'))
    vigil = VigilProcess(config, tmp_path / "vigil.log", port)
    health = _HealthLog(vigil)
    try:
        wait_for(lambda: vigil.status("/readyz") == 200, 60, "vigil to join")
        health.start()
        producer = BackgroundProducer(broker, _messages(topics, 24_000), rate=300).start()
        time.sleep(5)
        resets = 0
        for _ in range(5):  # a flapping link: every connection reset every 2 s
            resets += proxy.reset_all()
            time.sleep(2)
        proxy.latency_s = 0.3  # latency spikes
        time.sleep(10)
        proxy.latency_s = 0.0
        # The black hole opens as Vigil sends its next JoinGroup: a new member makes it rejoin
        proxy.black_hole_on = JOIN_GROUP
        newcomer = _newcomer(broker, topics)
        try:
            assert proxy.opened.wait(30), "Vigil never rejoined the group"
            started = time.monotonic()
        finally:
            newcomer.kill()  # gone without a LeaveGroup, which tansu mishandles mid-join
            newcomer.wait()
        wait_for(lambda: vigil.status("/readyz") == 503, BLACK_HOLE_S,
                 "/readyz to say the broker is gone")
        time.sleep(max(0.0, BLACK_HOLE_S - (time.monotonic() - started)))
        assert health.readiness_at(started + 10, started + BLACK_HOLE_S) == {503}
        assert vigil.process.poll() is None, vigil.log_text()[-3000:]
        proxy.heal()
        healed = time.monotonic()
        ends = producer.join(timeout_s=120)
        wait_for(lambda: committed_offsets(broker, topics.group, ends) == ends,
                 CATCH_UP_S + 60, f"catching up; log:\n{vigil.log_text()[-4000:]}")
        caught_up = time.monotonic() - healed
        wait_for(lambda: vigil.status("/readyz") == 200, 30, "/readyz after healing")
        print(f"network faults: {resets} resets, caught up {caught_up:.1f} s after healing")
        assert caught_up < CATCH_UP_S, vigil.log_text()[-4000:]
    finally:
        health.stop()
        code = vigil.stop()
    assert health.liveness == {200}, "the consume loop stalled for a minute"
    assert code == 0, vigil.log_text()[-3000:]
    records = read_partitions(broker, (topics.predictions, topics.telemetry), ends)
    expected = reference_alerts(config, records)
    found = {a["alert_id"] for a in json_values(read_topic(broker, topics.alerts,
                                                           expect_at_least=len(expected)))}
    assert found == set(expected)
    assert len(expected) > 10
