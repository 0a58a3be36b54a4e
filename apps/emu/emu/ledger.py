"""The one place that acts on outcomes.

It counts, per received message, the work items still open. A dead letter is sent
as its outcome arrives (and becomes retry-later if the DLQ cannot take it). When a
message's last item settles, the message is deleted (batched, ten at a time) if
every item finished, or handed back to the queue after a delay that grows with its
receive count if any must be retried. SIGTERM releases whatever is still open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from emu import outcomes
from emu.jobqueue import JobQueue, ReceivedMessage, retry_delay_seconds
from emu.outcomes import Kind, Outcome
from emu.stages import WorkItem
from productsearch.logs import brief

log = logging.getLogger(__name__)

# Finished messages are deleted ten at a time (SQS's batch limit) or after this long:
# a tenth of the requests, and a finished message waits a second at most. If emu dies
# before deleting, the message comes back and is redone; versions make that harmless.
DELETE_BATCH_MAX_WAIT_SECONDS = 1.0


@dataclass
class _Open:
    message: ReceivedMessage
    pending: int
    retry_reasons: list[str] = field(default_factory=list)
    extended_at: float = field(default_factory=time.monotonic)


class Ledger:
    def __init__(self, queue: JobQueue, *, retry_base_seconds: float, retry_cap_seconds: float):
        self.queue = queue
        self.retry_base_seconds, self.retry_cap_seconds = retry_base_seconds, retry_cap_seconds
        self._open: dict[str, _Open] = {}
        self._finished: list[str] = []  # receipts done with, not yet deleted
        self._finished_since = 0.0
        self._lock = threading.Lock()
        # Set after each delete: on a FIFO queue a delete frees the next message of its group.
        self.deleted = threading.Event()
        # Every key from the start, so another thread may copy the counts at any time.
        self.counts: Counter[str] = Counter({key: 0 for key in [k.value for k in Kind] + [
            "messages_deleted", "vectors_kept", "texts_embedded"]})

    # -- bookkeeping --------------------------------------------------------------------
    def open(self, message: ReceivedMessage, items: int) -> None:
        """Starts counting a message's items; a message with none is finished at once."""
        with self._lock:
            if items:
                self._open[message.message_id] = _Open(message, items)
            else:
                self._finish_locked(message)

    def in_flight(self) -> int:
        """Messages held and not yet settled."""
        with self._lock:
            return len(self._open)

    def holding(self) -> bool:
        """Whether any message is still held: open, or finished and not yet deleted. A
        FIFO group stays locked until its message is deleted, so a long poll begun
        before the delete lands could not deliver that group's next message."""
        with self._lock:
            return bool(self._open or self._finished)

    def changes_in_flight(self) -> int:
        """Changes (work items) held and not yet settled: the work in hand, whether a
        message carries one change or a hundred and fifty."""
        with self._lock:
            return sum(entry.pending for entry in self._open.values())

    def settle(self, item: WorkItem, outcome: Outcome) -> None:
        if outcome.kind is Kind.DEAD_LETTER:
            outcome = self._send_dead_letter(item, outcome)
        self.counts[outcome.kind.value] += 1
        with self._lock:
            entry = self._open.get(item.message.message_id)
            if entry is None:  # released at shutdown meanwhile
                return
            entry.pending -= 1
            if outcome.kind is Kind.RETRY_LATER:
                entry.retry_reasons.append(outcome.reason)
            if entry.pending:
                return
            del self._open[item.message.message_id]
            if not entry.retry_reasons:
                self._finish_locked(entry.message)
                return
        delay = retry_delay_seconds(entry.message.receive_count, self.retry_base_seconds, self.retry_cap_seconds)
        log.warning("message will be retried", extra={"message_id": entry.message.message_id, "retry_in_s": delay,
                                                      "receive_count": entry.message.receive_count,
                                                      "reason": brief(entry.retry_reasons[0])})
        self.queue.set_visibility(entry.message.receipt, delay)

    def settle_all(self, settled) -> None:
        for item, outcome in settled:
            self.settle(item, outcome)

    def _send_dead_letter(self, item: WorkItem, outcome: Outcome) -> Outcome:
        change = item.change.to_json() if item.change else (item.refused.raw if item.refused else None)
        raw = item.message.body if item.change is None and item.refused is None else None
        try:
            self.queue.dead_letter(outcome.reason, product_id=item.product_id, change=change, raw_body=raw,
                                   source_message_id=item.message.message_id)
            return outcome
        except Exception as exc:
            log.error("could not dead-letter; the message will be retried", extra={"error": brief(exc)})
            return outcomes.retry_later(f"dead-letter queue unavailable: {exc}")

    def _finish_locked(self, message: ReceivedMessage) -> None:
        if not self._finished:
            self._finished_since = time.monotonic()
        self._finished.append(message.receipt)

    # -- SQS housekeeping (called from the threads that own the timing) -------------------
    def delete_finished(self, everything: bool = False) -> None:
        with self._lock:
            # On a FIFO queue the next job of each finished message's group waits for the
            # delete, so there it goes at once; on a standard queue batching saves requests.
            due = everything or len(self._finished) >= 10 or (self._finished and (
                self.queue.fifo or time.monotonic() - self._finished_since >= DELETE_BATCH_MAX_WAIT_SECONDS))
            if not due or not self._finished:
                return
            receipts, self._finished = self._finished, []
        self.counts["messages_deleted"] += self.queue.delete(receipts)
        self.deleted.set()

    def extend_visibility(self) -> None:
        """Keeps messages hidden while they are worked on (a slow or failing index), so a
        second emu never takes up a product this one is still writing."""
        now = time.monotonic()
        horizon = self.queue.visibility_timeout_seconds / 2
        with self._lock:
            due = [entry for entry in self._open.values() if now - entry.extended_at > horizon]
        for entry in due:
            if self.queue.set_visibility(entry.message.receipt, self.queue.visibility_timeout_seconds):
                entry.extended_at = now

    def release_all(self) -> int:
        """Hands every open message back to the queue at once (shutdown): none of them
        failed, so another emu may take them up immediately."""
        with self._lock:
            left = list(self._open.values())
            self._open.clear()
        return self.queue.release([entry.message.receipt for entry in left])
