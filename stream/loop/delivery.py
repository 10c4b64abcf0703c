"""Delivery: getting the loop's output and snapshots acknowledged, retrying, within the grace.

Output (alerts, dead letters, model updates) is handed to the producer without waiting;
:meth:`Delivery.settle` then waits for every acknowledgement and re-sends failures, and the
checkpointer calls it before any snapshot or offset covers that output. A message the broker
refuses for what it is (:class:`~stream.errors.MessageRefused`) is never sent again: it goes to
the dead-letter topic instead (``output_refused``). Retries back off from ``retry_backoff_s``
to 8 s; once the loop is stopping, they give up when the shutdown grace period runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence

from vigil.stream.engine.processor import OutgoingMessage, refused_output
from vigil.stream.errors import BrokerError, MessageRefused
from vigil.stream.loop.ports import DeliveryFuture, Producer, StateStore
from vigil.stream.metrics import Liveness, VigilMetrics
from vigil.stream.state import StateMessage

log = logging.getLogger(__name__)

MAX_UNSETTLED = 10_000
"""Messages handed to the producer before the loop waits for their acknowledgements."""

MAX_BACKOFF_S = 8.0
"""Longest wait between two attempts to get something acknowledged."""


class Delivery:
    """Sends output, settles its acknowledgements, and writes snapshots, retrying each until
    the broker takes it or the shutdown grace period is over."""

    def __init__(self, producer: Producer, metrics: VigilMetrics, liveness: Liveness, *,
                 dead_letter_topic: str, grace_s: float, retry_backoff_s: float = 0.5) -> None:
        self.producer = producer
        self.metrics = metrics
        self.liveness = liveness
        self.dead_letter_topic = dead_letter_topic
        self.grace_s = grace_s
        self.retry_backoff_s = retry_backoff_s
        """First wait before re-sending unacknowledged output; doubles up to 8 s."""
        self.stop = threading.Event()
        """Set when the loop is stopping: from then on, retries end with the grace period."""
        self.stop_deadline: float | None = None
        self._unsettled: list[tuple[OutgoingMessage, DeliveryFuture]] = []
        """Messages produced whose acknowledgement has not been checked yet."""

    # --- output -------------------------------------------------------------------------

    def deliver(self, messages: Sequence[OutgoingMessage]) -> None:
        """Hand the messages to the producer without waiting: their acknowledgements are
        awaited (and failures re-sent) by :meth:`settle`, before any state or offset that
        covers them is written. Waiting per batch cost an acknowledgement round trip each."""
        self._unsettled.extend((m, self._send(m)) for m in messages)
        if len(self._unsettled) >= MAX_UNSETTLED:
            self.settle()

    def settle(self, *, attempts: int | None = None) -> bool:
        """Wait for every message handed to the producer, re-sending failures until all are
        acknowledged (``attempts``: give up after that many rounds); True when all are.

        A message refused for what it is is not sent again: its dead letter is sent instead.
        """
        pending = self._unsettled
        self._unsettled = []
        waits = self._backoffs()
        rounds = 0
        while pending:
            self.producer.flush()
            failed = [(m, f.exception) for m, f in pending if f.failed()]
            if not failed:
                return True
            retried = [m for m, error in failed if not isinstance(error, MessageRefused)]
            resent = [letter for m, error in failed if isinstance(error, MessageRefused)
                      if (letter := self._refused(m, error)) is not None]
            if retried:
                error = next(e for _, e in failed if not isinstance(e, MessageRefused))
                self.metrics.produce_errors.inc()
                rounds += 1
                if attempts is not None and rounds >= attempts:
                    log.warning("%d of %d messages were not acknowledged (%s)", len(retried),
                                len(pending), error)
                    self._unsettled = [(m, f) for m, f in pending if f.failed()
                                       and not isinstance(f.exception, MessageRefused)]
                    self._unsettled += [(m, self._send(m)) for m in resent]
                    return False
                wait = next(waits)
                log.warning("%d of %d messages were not acknowledged (%s); retrying in %.1f s",
                            len(retried), len(pending), error, wait)
                self.wait_or_give_up(wait, f"{len(retried)} messages")
            pending = [(m, self._send(m)) for m in resent + retried]
        return True

    def _send(self, message: OutgoingMessage) -> DeliveryFuture:
        """Hand one message to the producer; its future says whether the broker took it."""
        return self.producer.send(message.topic, key=message.key, value=message.value,
                                  headers=list(message.headers))

    def _refused(self, message: OutgoingMessage, error: Exception) -> OutgoingMessage | None:
        """What to send instead of a message the broker refused for what it is: its dead
        letter; None when even that was refused bare (then it is logged and dropped)."""
        where = "" if message.source is None else "from {}/{}/{} ".format(*message.source)
        dead_letters = self.dead_letter_topic
        if message.topic == dead_letters and message.value is None and message.key is None:
            log.error("a dead letter %swas refused even without its key and value (%s); "
                      "dropped", where, error)
            return None
        log.error("a message %sfor %s was refused (%s); it goes to %s", where, message.topic,
                  error, dead_letters)
        self.metrics.events_invalid.labels(reason="output_refused").inc()
        return refused_output(dead_letters, message, error)

    # --- snapshots ----------------------------------------------------------------------

    def write_state(self, store: StateStore, messages: Sequence[StateMessage]) -> None:
        """Write snapshot messages to the state store, retrying until acknowledged."""
        waits = self._backoffs()
        while True:
            try:
                store.write(messages)
                return
            except BrokerError as exc:
                wait = next(waits)
                self.metrics.produce_errors.inc()
                log.warning("state snapshot not acknowledged (%s); retrying in %.1f s",
                            exc, wait)
            self.wait_or_give_up(wait, "state snapshots")

    # --- waiting and the shutdown grace ---------------------------------------------------

    def _backoffs(self) -> Iterator[float]:
        """The waits between attempts: ``retry_backoff_s``, doubling up to 8 s."""
        wait = self.retry_backoff_s
        while True:
            yield wait
            wait = min(max(wait, 0.01) * 2, MAX_BACKOFF_S)

    def begin_grace(self) -> None:
        """The loop has stopped consuming: what is left must be done within the grace period."""
        self.stop_deadline = time.monotonic() + self.grace_s

    def remaining_grace(self) -> float:
        """Seconds left of the grace period (all of it before it began)."""
        if self.stop_deadline is None:
            return self.grace_s
        return self.stop_deadline - time.monotonic()

    def wait_or_give_up(self, seconds: float, what: str) -> None:
        """Wait before a retry; once stopping and past the grace period, give up."""
        self.liveness.beat()
        if self.stop.is_set():
            if self.stop_deadline is None:
                self.begin_grace()
            if self.remaining_grace() <= 0:
                raise BrokerError(
                    f"stopping with {what} undelivered after the shutdown grace period; their "
                    "offsets are not committed and will be processed again on restart"
                )
        time.sleep(min(seconds, max(self.remaining_grace(), 0.0)) if self.stop.is_set()
                   else seconds)
