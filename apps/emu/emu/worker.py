"""The emu worker: three stages joined by bounded queues, so fetching from SQS and
writing to the index overlap with embedding and the model stays busy.

    receiver thread --changes--> embedder (main thread) --vectors--> writer thread

The main thread hands texts to the model in a process of its own
(emu.embedding_process), so the Python work of the other two threads never holds
the model up. A message is deleted from SQS (in batches of up to ten) only when
every change in it has been acknowledged by the index (or dead-lettered with its
reason). A message whose work failed is
made visible again after a short delay; SQS's redrive policy moves it to the DLQ
if it keeps failing. SIGTERM stops receiving, finishes the work in hand within a
grace period, and returns whatever is left to the queue.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from emu.deadletter import DeadLetters
from productsearch import jobs
from productsearch.documents import IndexRecord, UnindexableProduct, build_record
from productsearch.index import PermanentIndexError, ProductIndex
from productsearch.jobs import Change
from productsearch.lifecycle import stop_on_signals
from productsearch.settings import EmbeddingSettings, EmuSettings, QueueSettings

log = logging.getLogger(__name__)

RECEIVE_WAIT_SECONDS = 5
RETRY_VISIBILITY_SECONDS = 10
# Finished messages are deleted ten at a time (SQS's batch limit) or after this long:
# a tenth of the requests, and a finished message waits a second at most. If emu dies
# before deleting, the message comes back and is redone; versions make that harmless.
DELETE_BATCH_SIZE = 10
DELETE_BATCH_MAX_WAIT_SECONDS = 1.0


@dataclass
class InFlightMessage:
    message_id: str
    receipt: str
    received_at: float
    pending: int
    failed: bool = False
    extended_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class WorkItem:
    change: Change
    message: InFlightMessage


@dataclass
class EmbeddedBatch:
    upserts: list[tuple[WorkItem, IndexRecord]]
    vectors: np.ndarray
    deletes: list[WorkItem]
    superseded: list[WorkItem]


class Emu:
    def __init__(self, queues: QueueSettings, embedding: EmbeddingSettings, settings: EmuSettings,
                 index: ProductIndex, embedder, sqs, sns, stopping: threading.Event | None = None):
        self.queues, self.embedding, self.settings = queues, embedding, settings
        self.index, self.embedder, self.sqs = index, embedder, sqs
        self.dead_letters = DeadLetters(sqs, sns, queues.dead_letter_queue_url, queues.dead_letter_topic_arn)
        self.stopping = stopping or threading.Event()
        self._in_flight: dict[str, InFlightMessage] = {}
        self._lock = threading.Lock()
        self._work: queue.Queue[WorkItem] = queue.Queue()
        self._embedded: queue.Queue[EmbeddedBatch | None] = queue.Queue(maxsize=2)
        self._receiver_done = threading.Event()
        self._finished: list[str] = []  # receipts of messages done with, not yet deleted
        self._finished_since = 0.0
        self.stats = {"upserted": 0, "deleted": 0, "skipped_older": 0, "dead_lettered": 0, "messages_deleted": 0}

    # -- lifecycle ------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        stop_on_signals(self.stopping, log, "finishing the work in hand")

    def run(self) -> None:
        log.info("emu started", extra={"queue": self.queues.jobs_queue_url, "model": self.embedder.description})
        receiver = threading.Thread(target=self._receive_loop, name="receiver", daemon=True)
        writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        receiver.start()
        writer.start()
        self._embed_loop()
        self._embedded.put(None)
        writer.join(timeout=self.settings.shutdown_grace_seconds)
        self._delete_finished(everything=True)
        self._release_all()
        log.info("emu stopped", extra=self.stats)

    # -- stage 1: receive -------------------------------------------------------
    def _receive_loop(self) -> None:
        backoff = 0.5
        try:
            while not self.stopping.is_set():
                self._extend_visibility()
                with self._lock:
                    busy = len(self._in_flight) >= self.settings.max_messages_in_flight
                if busy:
                    time.sleep(0.05)
                    continue
                try:
                    response = self.sqs.receive_message(
                        QueueUrl=self.queues.jobs_queue_url, MaxNumberOfMessages=10,
                        WaitTimeSeconds=RECEIVE_WAIT_SECONDS, VisibilityTimeout=self.settings.visibility_timeout_seconds,
                    )
                    backoff = 0.5
                except Exception as exc:
                    log.warning("cannot receive from the queue", extra={"error": str(exc)[:300], "retry_in_s": backoff})
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                for message in response.get("Messages", []):
                    if self.stopping.is_set():
                        self._change_visibility(message["ReceiptHandle"], 0)
                        continue
                    self._accept(message)
        finally:
            self._receiver_done.set()

    def _accept(self, message: dict) -> None:
        body, receipt, message_id = message["Body"], message["ReceiptHandle"], message["MessageId"]
        try:
            changes = jobs.decode(body)
        except jobs.MalformedJob as exc:
            try:
                self.dead_letters.send(f"malformed job: {exc}", raw_body=body, message_id=message_id)
                self._delete_message(receipt)
            except Exception as send_exc:
                log.error("could not dead-letter a malformed job", extra={"error": str(send_exc)[:300]})
            return
        if not changes:
            self._delete_message(receipt)
            return
        in_flight = InFlightMessage(message_id, receipt, time.monotonic(), pending=len(changes))
        with self._lock:
            self._in_flight[message_id] = in_flight
        for change in changes:
            self._work.put(WorkItem(change, in_flight))

    def _extend_visibility(self) -> None:
        """Keeps long-running messages hidden, so a slow index does not cause a second emu to redo them."""
        now = time.monotonic()
        horizon = self.settings.visibility_timeout_seconds / 2
        with self._lock:
            due = [m for m in self._in_flight.values() if now - m.extended_at > horizon]
        for m in due:
            if self._change_visibility(m.receipt, self.settings.visibility_timeout_seconds):
                m.extended_at = now

    # -- stage 2: embed -----------------------------------------------------------
    def _take_batch(self) -> list[WorkItem]:
        size = self.embedding.batch_size
        try:
            items = [self._work.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + 0.05
        while len(items) < size:
            try:
                items.append(self._work.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return items

    def _embed_loop(self) -> None:
        grace_deadline = None
        while True:
            if self.stopping.is_set() and grace_deadline is None:
                grace_deadline = time.monotonic() + self.settings.shutdown_grace_seconds
            if grace_deadline is not None and time.monotonic() > grace_deadline:
                log.warning("grace period over; returning unfinished messages to the queue")
                return
            items = self._take_batch()
            if not items:
                if self._receiver_done.is_set() and self._work.empty():
                    return
                continue
            batch = self._embed(items)
            self._embedded.put(batch)

    def _embed(self, items: list[WorkItem]) -> EmbeddedBatch:
        # Within a batch only the newest change per product matters.
        newest: dict[int, WorkItem] = {}
        superseded: list[WorkItem] = []
        for item in items:
            current = newest.get(item.change.product_id)
            if current is None or item.change.version > current.change.version:
                if current is not None:
                    superseded.append(current)
                newest[item.change.product_id] = item
            else:
                superseded.append(item)
        upserts: list[tuple[WorkItem, IndexRecord]] = []
        deletes: list[WorkItem] = []
        for item in newest.values():
            if item.change.is_delete:
                deletes.append(item)
                continue
            try:
                product = dict(item.change.product)
                product["id"] = item.change.product_id
                upserts.append((item, build_record(product, item.change.version, self.embedding.text_template)))
            except (UnindexableProduct, KeyError, TypeError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, UnindexableProduct) else f"row is malformed: {exc!r}"
                self._dead_letter(item, reason)
        vectors = self.embedder.embed([record.text for _, record in upserts])
        return EmbeddedBatch(upserts, vectors, deletes, superseded)

    # -- stage 3: write -------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            try:
                batch = self._embedded.get(timeout=DELETE_BATCH_MAX_WAIT_SECONDS / 2)
            except queue.Empty:
                self._delete_finished()
                continue
            if batch is None:
                return
            self._write_batch(batch)
            self._delete_finished()

    def _write_batch(self, batch: EmbeddedBatch) -> None:
        for item in batch.superseded:
            self._done(item, ok=True)
        try:
            self._write(batch.upserts, batch.vectors, batch.deletes)
        except PermanentIndexError as exc:
            self._isolate_poison(batch, exc)
        except Exception as exc:
            log.error("index write failed; messages will be retried", extra={"error": str(exc)[:500]})
            for item, _ in batch.upserts:
                self._done(item, ok=False)
            for item in batch.deletes:
                self._done(item, ok=False)

    def _write(self, upserts: list[tuple[WorkItem, IndexRecord]], vectors: np.ndarray, deletes: list[WorkItem]) -> None:
        ids = [record.id for _, record in upserts] + [str(item.change.product_id) for item in deletes]
        known = self.index.newest_versions(ids) if ids else {}
        keep = [i for i, (_, record) in enumerate(upserts) if record.version > known.get(record.id, 0)]
        fresh_upserts = [upserts[i] for i in keep]
        fresh_deletes = {str(item.change.product_id): item.change.version for item in deletes
                         if item.change.version > known.get(str(item.change.product_id), 0)}
        if fresh_upserts:
            self.index.upsert([record for _, record in fresh_upserts], vectors[keep])
        if fresh_deletes:
            self.index.delete(fresh_deletes)
        if fresh_upserts:
            # A deletion processed concurrently by another emu may have raced this upsert;
            # its tombstone is written before its delete, so checking after our write
            # catches every interleaving.
            tombstones = self.index.fetch_versions([r.id for _, r in fresh_upserts], namespace=self.index.settings.tombstone_namespace)
            late = [r.id for _, r in fresh_upserts if tombstones.get(r.id, 0) > r.version]
            if late:
                self.index.delete_ids(late)
        self.stats["upserted"] += len(fresh_upserts)
        self.stats["deleted"] += len(fresh_deletes)
        self.stats["skipped_older"] += len(upserts) + len(deletes) - len(fresh_upserts) - len(fresh_deletes)
        for item, _ in upserts:
            self._done(item, ok=True)
        for item in deletes:
            self._done(item, ok=True)

    def _isolate_poison(self, batch: EmbeddedBatch, exc: PermanentIndexError) -> None:
        """The index refused the batch: write records one at a time, so only the one
        it refuses is dead-lettered and its neighbours are indexed."""
        log.warning("index refused a batch; isolating the bad record", extra={"error": str(exc)[:300]})
        for i, (item, record) in enumerate(batch.upserts):
            try:
                self._write([(item, record)], batch.vectors[i : i + 1], [])
            except PermanentIndexError as single:
                self._dead_letter(item, str(single))
            except Exception as other:
                log.error("index write failed; message will be retried", extra={"error": str(other)[:300]})
                self._done(item, ok=False)
        for item in batch.deletes:
            try:
                self._write([], batch.vectors[:0], [item])
            except Exception as other:
                log.error("index delete failed; message will be retried", extra={"error": str(other)[:300]})
                self._done(item, ok=False)

    # -- bookkeeping ----------------------------------------------------------------
    def _dead_letter(self, item: WorkItem, reason: str) -> None:
        try:
            self.dead_letters.send(reason, change=item.change, message_id=item.message.message_id)
            self.stats["dead_lettered"] += 1
            self._done(item, ok=True)
        except Exception as exc:
            log.error("could not dead-letter; message will be retried", extra={"error": str(exc)[:300]})
            self._done(item, ok=False)

    def _done(self, item: WorkItem, ok: bool) -> None:
        message = item.message
        with self._lock:
            message.pending -= 1
            message.failed |= not ok
            finished = message.pending == 0
            if finished:
                self._in_flight.pop(message.message_id, None)
        if not finished:
            return
        if message.failed:
            self._change_visibility(message.receipt, RETRY_VISIBILITY_SECONDS + random.randint(0, 5))
        else:
            with self._lock:
                if not self._finished:
                    self._finished_since = time.monotonic()
                self._finished.append(message.receipt)

    def _delete_finished(self, everything: bool = False) -> None:
        with self._lock:
            due = everything or len(self._finished) >= DELETE_BATCH_SIZE or (
                self._finished and time.monotonic() - self._finished_since >= DELETE_BATCH_MAX_WAIT_SECONDS)
            if not due:
                return
            receipts, self._finished = self._finished, []
        for start in range(0, len(receipts), DELETE_BATCH_SIZE):
            chunk = receipts[start : start + DELETE_BATCH_SIZE]
            try:
                response = self.sqs.delete_message_batch(
                    QueueUrl=self.queues.jobs_queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)])
            except Exception as exc:
                log.warning("could not delete finished messages; they will come back and be redone",
                            extra={"messages": len(chunk), "error": str(exc)[:300]})
                continue
            failed = response.get("Failed", [])
            self.stats["messages_deleted"] += len(chunk) - len(failed)
            if failed:
                log.warning("could not delete finished messages; they will come back and be redone",
                            extra={"messages": len(failed), "error": str(failed[0])[:300]})

    def _delete_message(self, receipt: str) -> None:
        try:
            self.sqs.delete_message(QueueUrl=self.queues.jobs_queue_url, ReceiptHandle=receipt)
            self.stats["messages_deleted"] += 1
        except Exception as exc:
            # The message will come back and be redone; the version check makes that harmless.
            log.warning("could not delete a finished message", extra={"error": str(exc)[:300]})

    def _change_visibility(self, receipt: str, seconds: int) -> bool:
        try:
            self.sqs.change_message_visibility(QueueUrl=self.queues.jobs_queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds)
            return True
        except Exception as exc:
            log.warning("could not change message visibility", extra={"error": str(exc)[:300]})
            return False

    def _release_all(self) -> None:
        with self._lock:
            left = list(self._in_flight.values())
            self._in_flight.clear()
        for message in left:
            self._change_visibility(message.receipt, 0)
        if left:
            log.info("returned unfinished messages to the queue", extra={"messages": len(left)})
