"""The emu worker: stages joined by bounded queues, so fetching from SQS, reading and
writing the index overlap with embedding and the model stays busy.

    receiver thread --items--> lookup thread --batches--> embedder (main) --batches--> writer thread
      read_message              prepare + look_up          the model                    merge + write
              \\_______________________________ outcomes _______________________________/
                                                 |
                                       emu.ledger (ack, DLQ, release)

The lookup thread gathers up to a thousand changes (Pinecone's fetch limit), for
as long as they keep coming (batch_window_seconds at most), and reads what the
index holds for them in one fetch: changes the index already holds newer are settled
without the model, and a record whose text the index already embeds keeps its dense
vector. The
writer merges the batches waiting for it into one versioned write, filled up to
Pinecone's per-request limits, its requests several at a time. Writes happen in
arrival order, one at a time, so a product's changes reach the index in order; a
batch looked up before an earlier write landed is checked against what that write
wrote (RecentWrites).

The stages (emu.stages) return outcomes; the ledger alone acts on them, and
emu.jobqueue alone talks to SQS. The model runs in a process of its own
(emu.embedding_process), so the Python work of the other threads never holds it up.

While the index fails transiently, the writer holds its batch and retries it with
backoff, and the receiver stops taking new messages but keeps the held ones hidden:
an outage uses up none of a message's receives, so it ends with every change
indexed and nothing dead-lettered.

SIGTERM starts a countdown to the SIGKILL that follows it (EMU_STOP_TIMEOUT_SECONDS,
the container's stopTimeout). Receiving stops at once; the work in hand is embedded
and written while time is left, with every index request cut to the time left;
what is unfinished then is handed back to the queue, visible at once, ten messages
per request, before the deadline. Nothing is left hidden for a visibility timeout,
and no kill uses up a receive.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

import numpy as np

from emu import outcomes, stages
from emu.jobqueue import JobQueue
from emu.ledger import Ledger
from emu.stages import EmbeddedBatch, IndexUnavailable, WorkItem
from productsearch.index import ProductIndex
from productsearch.index_set import IndexSet
from productsearch.lifecycle import stop_on_signals
from productsearch.logs import brief
from productsearch.retry import Backoff
from emu.config import EmuSettings
from productsearch.settings import EmbeddingSettings, QueueSettings

log = logging.getLogger(__name__)

RECEIVE_WAIT_SECONDS = 5
# While this emu holds messages it does not long-poll: a FIFO group it releases would be
# taken up again only when a long poll that began while the group was locked ends. It
# looks again as soon as it has deleted messages (which frees their groups' next
# ones), else after BUSY_POLL_SECONDS: each look is a billed request, and while the
# model is busy with the work in hand more work would only wait.
BUSY_POLL_SECONDS = 0.2
# A pause this long in the changes coming in ends a lookup's gathering; longer than
# BUSY_POLL_SECONDS, so a steady trickle never looks like one.
BATCH_QUIET_SECONDS = 0.3
# Of the stop timeout, kept back for handing messages back and exiting: a
# ChangeMessageVisibilityBatch per ten messages, and the model process's exit.
HANDBACK_RESERVE_SECONDS = 5.0
# Pinecone docs: Limits ("Max IDs per fetch request: 1000"): one lookup per batch.
LOOKUP_BATCH_CHANGES = 1000
# A write is filled with waiting batches up to about this many records: Pinecone's
# per-upsert record limit; the byte limit splits it into requests (ProductIndex).
WRITE_FILL_RECORDS = 1000
# How many recent writes a batch looked up before them is checked against; an older
# lookup is discarded and the write fetches the versions itself.
RECENT_WRITES_KEPT = 64


class RecentWrites:
    """The versions the writer wrote, write by write, so a batch looked up before some
    of them is checked against them too. Only the writer thread calls note; any
    thread may read `epoch`."""

    def __init__(self, kept: int = RECENT_WRITES_KEPT):
        self.epoch = 0  # writes finished
        self._writes: deque[tuple[int, dict[str, int]]] = deque(maxlen=kept)

    def note(self, versions: dict[str, int]) -> None:
        self.epoch += 1
        self._writes.append((self.epoch, versions))

    def since(self, epoch: int, live_versions: dict[str, int] | None) -> dict[str, int] | None:
        """live_versions (read after `epoch` writes had finished) with the versions
        written since; None when they are unknown (none given, or writes since then
        are no longer kept)."""
        if live_versions is None or (epoch < self.epoch and (not self._writes or self._writes[0][0] > epoch + 1)):
            return None
        out = dict(live_versions)
        for number, versions in self._writes:
            if number > epoch:
                for vid, version in versions.items():
                    out[vid] = max(out.get(vid, 0), version)
        return out


class Emu:
    def __init__(self, queues: QueueSettings, embedding: EmbeddingSettings, settings: EmuSettings,
                 index: ProductIndex | IndexSet, embedder, sqs, sns, stopping: threading.Event | None = None):
        self.embedding, self.settings = embedding, settings
        self.index, self.embedder = index, embedder
        self.jobs = JobQueue(sqs, sns, queues, settings.visibility_timeout_seconds)
        self.ledger = Ledger(self.jobs, retry_base_seconds=settings.retry_base_seconds,
                             retry_cap_seconds=settings.retry_max_seconds)
        self.stopping = stopping or threading.Event()
        self.index_down = threading.Event()
        self._work: queue.Queue[WorkItem] = queue.Queue()
        self._looked_up: queue.Queue[stages.Prepared | None] = queue.Queue(maxsize=2)
        self._embedded: queue.Queue[EmbeddedBatch | None] = queue.Queue(maxsize=2)
        self.recent = RecentWrites()
        self._receiver_done = threading.Event()
        self._work_deadline: float | None = None  # monotonic; set when a stop is requested
        self._deadline_lock = threading.Lock()
        self._stop_requested_at: float | None = None

    # -- lifecycle ------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        stop_on_signals(self.stopping, log, "finishing the work in hand", on_stop=self._note_stop)

    def run(self) -> None:
        log.info("emu started", extra={"queue": self.jobs.url, "model": self.embedder.description})
        receiver = threading.Thread(target=self._receive_loop, name="receiver", daemon=True)
        lookup = threading.Thread(target=self._lookup_loop, name="lookup", daemon=True)
        writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        receiver.start()
        lookup.start()
        writer.start()
        self._embed_loop()
        self._embedded.put(None)
        writer.join(timeout=max(0.0, self._deadline() - time.monotonic()))
        self.ledger.delete_finished(everything=True)
        released = self.ledger.release_all()
        if released:
            log.info("returned unfinished messages to the queue", extra={"messages": released})
        log.info("emu stopped", extra=dict(self.ledger.counts))

    def _deadline(self) -> float:
        """When the work in hand must be done (monotonic): the stop timeout after the
        stop request, less the hand-back reserve. Index requests never outlive it."""
        with self._deadline_lock:
            if self._work_deadline is None:
                budget = self.settings.stop_timeout_seconds
                reserve = min(HANDBACK_RESERVE_SECONDS, budget / 4)
                self._work_deadline = (self._stop_requested_at or time.monotonic()) + budget - reserve
                self.index.set_deadline(self._work_deadline)
                log.info("stopping: finishing the work in hand", extra={"deadline_s": round(budget - reserve, 1)})
            return self._work_deadline

    def _note_stop(self) -> None:
        # Taken in the signal handler: the countdown to SIGKILL starts then, not when a
        # thread next looks.
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()

    def _time_left(self) -> float:
        return self._deadline() - time.monotonic() if self.stopping.is_set() else float("inf")

    # -- stage 1: receive and read ----------------------------------------------
    def _receive_loop(self) -> None:
        # Forever while running: a queue outage waits 0.5 s doubling to 10 s between
        # tries, and the stop event cuts any wait short.
        backoff = Backoff(0.5, 10.0)
        try:
            while not self.stopping.is_set():
                self.ledger.extend_visibility()
                # The writer deletes too, but not while it is stuck in a slow write.
                self.ledger.delete_finished()
                if self.index_down.is_set() or self.ledger.changes_in_flight() >= self.settings.max_changes_in_flight:
                    self.stopping.wait(0.05 if not self.index_down.is_set() else 0.5)
                    continue
                try:
                    busy = self.ledger.holding()
                    messages = self.jobs.receive(10, 0 if busy else RECEIVE_WAIT_SECONDS)
                    backoff.reset()
                except Exception as exc:
                    delay = backoff.next_delay()
                    log.warning("cannot receive from the queue", extra={"error": brief(exc), "retry_in_s": delay})
                    backoff.wait(delay, self.stopping)
                    continue
                if busy and not messages:
                    self._wait_for_deletes(BUSY_POLL_SECONDS)
                for message in messages:
                    if self.stopping.is_set():
                        self.jobs.set_visibility(message.receipt, 0)
                        continue
                    items, settled = stages.read_message(message)
                    self.ledger.open(message, len(items) + len(settled))
                    self.ledger.settle_all(settled)
                    for item in items:
                        self._work.put(item)
        finally:
            self._receiver_done.set()

    def _wait_for_deletes(self, timeout_s: float) -> None:
        """Waits until this emu deletes messages, it is asked to stop, or timeout_s passes."""
        deadline = time.monotonic() + timeout_s
        while not self.stopping.is_set() and not self.ledger.deleted.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.ledger.deleted.wait(min(left, 0.05))
        self.ledger.deleted.clear()

    # -- stage 2: prepare and look up (no SQS calls) -------------------------------
    def _take_batch(self) -> list[WorkItem]:
        """Up to LOOKUP_BATCH_CHANGES items: the first to come, then more while they keep
        coming, for batch_window_seconds at most. A pause of BATCH_QUIET_SECONDS ends
        it, so a lone change waits that long only, while a steady stream is gathered
        into batches that fill a request."""
        try:
            items = [self._work.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.settings.batch_window_seconds
        while len(items) < LOOKUP_BATCH_CHANGES:
            try:
                items.append(self._work.get(timeout=max(0.0, min(BATCH_QUIET_SECONDS, deadline - time.monotonic()))))
            except queue.Empty:
                break
        return items

    def _stop_near(self) -> bool:
        # A batch taken now must still be embedded and written before the deadline.
        return self._time_left() < 2 * self.settings.index_timeout_seconds

    def _lookup_loop(self) -> None:
        try:
            while not self._stop_near():
                items = self._take_batch()
                if not items:
                    if self._receiver_done.is_set() and self._work.empty():
                        return
                    continue
                epoch = self.recent.epoch
                try:
                    prepared = stages.prepare(items, self.embedding.text_template, with_sparse=self.index.needs_sparse)
                    prepared = stages.look_up(self.index, prepared, self.embedding.dimension)
                except Exception as exc:  # a bug must cost a retry, not the worker
                    log.exception("preparing a batch failed; its messages will be retried")
                    prepared = stages.Prepared(settled=[(item, outcomes.retry_later(f"preparing failed: {brief(exc)}"))
                                                        for item in items])
                prepared.epoch = epoch
                self._looked_up.put(prepared)
            log.warning("stop deadline near; returning unfinished messages to the queue")
        finally:
            self._looked_up.put(None)

    # -- stage 3: embed (the main thread; no SQS calls) ------------------------------
    def _embed_loop(self) -> None:
        while True:
            prepared = self._looked_up.get()
            if prepared is None:
                return
            self._embedded.put(self._embed(prepared))

    def _embed(self, prepared: stages.Prepared) -> EmbeddedBatch:
        vectors = np.zeros((len(prepared.upserts), self.embedding.dimension), dtype=np.float32)
        for n, vector in prepared.reused.items():
            vectors[n] = vector
        positions = prepared.to_embed
        self.ledger.counts["vectors_kept"] += len(prepared.reused)
        self.ledger.counts["texts_embedded"] += len(positions)
        if not positions:
            return EmbeddedBatch(prepared, vectors)
        try:
            vectors[positions] = self.embedder.embed(prepared.texts)
        except Exception as exc:
            log.error("embedding failed; the batch's messages will be retried", extra={"error": brief(exc)})
            failed = set(positions)
            prepared.settled += [(item, outcomes.retry_later(f"embedding failed: {exc}"))
                                 for n, (item, _) in enumerate(prepared.upserts) if n in failed]
            keep = [n for n in range(len(prepared.upserts)) if n not in failed]
            prepared.upserts = [prepared.upserts[n] for n in keep]
            prepared.reused = {k: prepared.reused[n] for k, n in enumerate(keep)}
            vectors = vectors[keep]
            if not getattr(self.embedder, "alive", True):
                self._restart_model()
        return EmbeddedBatch(prepared, vectors)

    def _restart_model(self) -> None:
        """Starts a new model process in place of one that died, trying again after a
        backoff (1 s doubling to a minute) while it cannot load the model, until it
        runs or emu is asked to stop. Meanwhile the other stages fill their bounded
        queues and wait; the messages held stay hidden."""
        backoff = Backoff(1.0, 60.0)
        while not self.stopping.is_set():
            log.error("the embedding process is gone; starting a new one")
            try:
                self.embedder.restart()
            except Exception as exc:
                delay = backoff.next_delay()
                log.error("could not start the embedding process; trying again",
                          extra={"error": brief(exc), "retry_in_s": delay})
                backoff.wait(delay, self.stopping)
                continue
            log.info("embedding process started again", extra={"model": self.embedder.description})
            return

    # -- stage 3: write, then settle ------------------------------------------------
    def _write_loop(self) -> None:
        ended = False
        while not ended:
            try:
                batches = [self._embedded.get(timeout=0.5)]
            except queue.Empty:
                self.ledger.delete_finished()
                continue
            # Whatever else is already waiting joins this write, up to a full request's worth.
            while batches[-1] is not None and sum(len(b.prepared.upserts) for b in batches) < WRITE_FILL_RECORDS:
                try:
                    batches.append(self._embedded.get_nowait())
                except queue.Empty:
                    break
            if batches[-1] is None:
                ended = True
                batches.pop()
            if not batches or self._time_left() <= 0:
                continue  # its messages stay open and are handed back
            batch = stages.merge(batches)
            self.ledger.settle_all(batch.prepared.settled)
            self.ledger.settle_all(self._write_patiently(batch))
            self.ledger.delete_finished()
            # Totals since start, one line per write: what throughput dashboards and
            # benchmarks read (texts the model embedded, vectors kept, outcomes).
            log.info("batch written", extra={"records": len(batch.prepared.upserts),
                                             "deletions": len(batch.prepared.deletes), **dict(self.ledger.counts)})

    def _write_patiently(self, batch: EmbeddedBatch) -> list[stages.Settled]:
        """Writes the batch, holding it through an index outage: retries with capped
        exponential backoff while the receiver pauses, until the index answers or emu
        is asked to stop (then the batch's messages go back to the queue)."""
        delay = 1.0
        retrying = False
        while True:
            try:
                # After an outage the lookup is old news: the write reads the versions afresh.
                live = None if retrying else self.recent.since(batch.prepared.epoch, batch.prepared.live_versions)
                settled = stages.write(self.index, batch, live)
            except IndexUnavailable as exc:
                held = [item for item, _ in batch.prepared.upserts] + batch.prepared.deletes
                if self.stopping.is_set():
                    # Left open: the messages are handed back visible at once, so another
                    # emu takes them up without waiting out a retry delay.
                    log.warning("index unavailable at shutdown; handing the batch back", extra={"changes": len(held)})
                    return []
                if not self.index_down.is_set():
                    log.warning("index unavailable; pausing receiving and holding the batch",
                                extra={"changes": len(held), "error": brief(exc)})
                    self.index_down.set()
                self.stopping.wait(delay)
                delay = min(delay * 2, self.settings.outage_retry_max_seconds)
                retrying = True
                continue
            if self.index_down.is_set():
                log.info("index available again; receiving resumes")
                self.index_down.clear()
            self.recent.note({str(item.change.product_id): item.change.version for item, outcome in settled
                              if outcome in (outcomes.INDEXED, outcomes.DELETED)})
            return settled
