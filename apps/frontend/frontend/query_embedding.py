"""Query embedding under concurrency: concurrent searches' queries are embedded
together in one forward pass (micro-batching), and recent query vectors are kept in
a bounded LRU cache.

Why: the model's cost per text falls steeply with the batch size (on a CPU each of 16
queries in one batch costs about a third of one query alone: docs/benchmarks.md),
while the Embedder serves one call at a time behind its lock. Serving each
request's single query on its own therefore caps a frontend process's throughput at
one forward pass per query, however many clients wait.

How: `BatchingEmbedder.embed` puts each distinct text that is not cached in a queue
and waits for its row. One daemon thread takes what is queued and embeds it with the
wrapped Embedder in one call. It waits for companions only when the previous batch
held more than one text (callers are running concurrently) and then at most
`window_s` after the oldest text arrived, or until as many texts as last time, or
`max_batch`, are queued; a lone query on an idle process is embedded at once, so one
client pays nothing for the window. Texts that arrive while a forward pass runs wait
for the next one: that is where most batches come from under load. `submit` queues
texts without waiting, so a caller can do other work while the model runs (a hybrid
search reads its keyword statistics meanwhile, productsearch.search).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("frontend.query_embedding")


class QueryEmbeddingTimeout(TimeoutError):
    """A query's vector did not arrive within the wait bound (the model is overloaded
    or stuck); the request should be answered as temporarily unavailable."""


class QueryEmbedderClosed(RuntimeError):
    """embed() was called on, or was waiting in, a BatchingEmbedder that has been closed."""


class QueryVectorCache:
    """A thread-safe LRU map from a query's exact text to its vector.

    max_entries: how many vectors it holds (0: nothing is stored). Each entry costs
    the vector (dimension x 4 bytes: 1.5 KiB for all-MiniLM-L6-v2's 384) plus the text
    (at most search.MAX_QUERY_CHARS characters). Stored vectors are made read-only,
    since every hit hands out the same array."""

    def __init__(self, max_entries: int):
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._entries.get(text)
            if vector is None:
                self.misses += 1
                return None
            self._entries.move_to_end(text)
            self.hits += 1
            return vector

    def put(self, text: str, vector: np.ndarray) -> None:
        if self.max_entries == 0:
            return
        vector = np.array(vector, dtype=np.float32, copy=True)
        vector.flags.writeable = False
        with self._lock:
            self._entries[text] = vector
            self._entries.move_to_end(text)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, text: str) -> bool:
        with self._lock:
            return text in self._entries


@dataclass
class _Slot:
    """One distinct text waiting for the model, and the future its callers share."""

    text: str
    arrived: float
    future: Future = field(default_factory=Future)


class PendingVectors:
    """The vectors of one BatchingEmbedder.submit() call, on their way.

    result() waits for them (at most the embedder's timeout_s per call) and
    returns a float32 array (len(texts), dimension); discard() gives them up. Either
    may be called more than once; the texts stay queued for the pass they joined
    (other callers may share them), only this caller stops waiting."""

    def __init__(self, owner: BatchingEmbedder, rows: list[np.ndarray | None], waiting: list[tuple[int, Future]]):
        self._owner, self._rows, self._waiting = owner, rows, waiting
        self._counted = bool(waiting)

    def result(self) -> np.ndarray:
        """Raises QueryEmbeddingTimeout, QueryEmbedderClosed or the forward pass's own
        exception, as BatchingEmbedder.embed does."""
        try:
            deadline = time.monotonic() + self._owner.timeout_s
            for i, future in self._waiting:
                try:
                    self._rows[i] = future.result(timeout=max(0.0, deadline - time.monotonic()))
                except FutureTimeout:
                    raise QueryEmbeddingTimeout(
                        f"the query embedding did not finish within {self._owner.timeout_s:g} s") from None
        finally:
            self.discard()
        if not self._rows:
            return np.zeros((0, self._owner.settings.dimension), dtype=np.float32)
        return np.stack(self._rows).astype(np.float32, copy=False)

    def discard(self) -> None:
        if self._counted:
            self._counted = False
            self._owner._caller_done()


class BatchingEmbedder:
    """Wraps an Embedder (anything with embed(texts) -> float32 array (n, dimension)
    and settings.dimension) with the same embed interface, for many threads at once.

    embedder: the model; only this object's worker thread calls its embed.
    window_s: the longest a text waits for companions, in seconds, counted from the
        oldest queued text's arrival (0: batches form only from the texts that queue up
        while a forward pass runs).
    max_batch: the most distinct texts in one forward pass (1: one text at a time).
    cache: a QueryVectorCache, or None for no cache.
    timeout_s: the longest embed() waits for its rows before raising
        QueryEmbeddingTimeout.

    Identical texts in flight at the same time share one slot in the batch. A failure
    of the forward pass is raised in every caller waiting on that batch. close()
    stops the worker; callers still waiting get QueryEmbedderClosed."""

    def __init__(self, embedder, *, window_s: float, max_batch: int, cache: QueryVectorCache | None = None,
                 timeout_s: float = 10.0):
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.embedder = embedder
        self.window_s = window_s
        self.max_batch = max_batch
        self.cache = cache
        self.timeout_s = timeout_s
        self.settings = embedder.settings
        self._cond = threading.Condition()
        self._queue: deque[_Slot] = deque()
        self._in_flight: dict[str, Future] = {}  # queued or being embedded, by text
        self._closed = False
        self._last_batch = 1
        self._callers = 0  # embed() calls waiting for rows
        self.batches = 0  # forward passes run and texts they embedded: counters for tests and debugging
        self.texts_embedded = 0
        self._worker = threading.Thread(target=self._run, name="query-embedder", daemon=True)
        self._worker.start()

    @property
    def description(self) -> str:
        cache = f"cache {self.cache.max_entries}" if self.cache and self.cache.max_entries else "no cache"
        return (f"{self.embedder.description}; queries batched (window {self.window_s * 1000:g} ms, "
                f"at most {self.max_batch}), {cache}")

    @property
    def queued(self) -> int:
        """Distinct texts waiting for a forward pass (not counting the one running)."""
        with self._cond:
            return len(self._queue)

    @property
    def waiting_callers(self) -> int:
        """embed() calls waiting for their rows (queued or in the running forward pass)."""
        with self._cond:
            return self._callers

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Returns a float32 array of shape (len(texts), dimension), row i the vector of
        texts[i], as the wrapped Embedder would (rows embedded in a batch with other
        texts can differ from a lone embedding in the last bits, from padding).
        Raises QueryEmbeddingTimeout after timeout_s, QueryEmbedderClosed after close(),
        or the wrapped embedder's own exception when its forward pass fails."""
        return self.submit(texts).result()

    def submit(self, texts: Sequence[str]) -> PendingVectors:
        """Queues `texts` for the next forward pass and returns at once, so the caller
        can do other work (a search's keyword statistics) while the model runs; the
        PendingVectors' result() then waits for embed()'s array. A caller that no
        longer needs the vectors calls discard(). Raises QueryEmbedderClosed after close()."""
        if not texts:
            return PendingVectors(self, [], [])
        rows: list[np.ndarray | None] = [None] * len(texts)
        waiting: list[tuple[int, Future]] = []
        with self._cond:
            if self._closed:
                raise QueryEmbedderClosed("the query embedder is closed")
            added = False
            for i, text in enumerate(texts):
                cached = self.cache.get(text) if self.cache is not None else None
                if cached is not None:
                    rows[i] = cached
                    continue
                future = self._in_flight.get(text)
                if future is None:
                    slot = _Slot(text, time.monotonic())
                    future = self._in_flight[text] = slot.future
                    self._queue.append(slot)
                    added = True
                waiting.append((i, future))
            if added:
                self._cond.notify()
            if waiting:
                self._callers += 1
        return PendingVectors(self, rows, waiting)

    def _caller_done(self) -> None:
        with self._cond:
            self._callers -= 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops the worker once its current forward pass ends; texts still queued
        fail with QueryEmbedderClosed. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout_s)

    # -- the worker -------------------------------------------------------------------
    def _take_batch(self) -> list[_Slot] | None:
        """Waits for texts and returns the next batch, or None once closed."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            # Wait for companions only when callers have been concurrent (the last batch
            # had several texts): a lone client must not pay the window on every query.
            if self.window_s > 0 and self._last_batch > 1:
                enough = min(self.max_batch, self._last_batch)
                deadline = self._queue[0].arrived + self.window_s
                while len(self._queue) < enough and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed:
                    return None
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self._last_batch = len(batch)
            return batch

    def _run(self) -> None:
        try:
            while True:
                batch = self._take_batch()
                if batch is None:
                    return
                self._embed_batch(batch)
        finally:
            self._fail_queued(QueryEmbedderClosed("the query embedder was closed before this query was embedded"))

    def _embed_batch(self, batch: list[_Slot]) -> None:
        try:
            vectors = self.embedder.embed([slot.text for slot in batch])
            if len(vectors) != len(batch):
                raise RuntimeError(f"the embedder returned {len(vectors)} vectors for {len(batch)} texts")
        except BaseException as exc:
            with self._cond:
                for slot in batch:
                    self._in_flight.pop(slot.text, None)
            for slot in batch:
                slot.future.set_exception(exc)
            if not isinstance(exc, Exception):  # SystemExit and the like: stop serving, callers learn at once
                with self._cond:
                    self._closed = True
                raise
            log.warning("query embedding failed", extra={"texts": len(batch), "error_type": type(exc).__name__})
            return
        with self._cond:
            # Cached before leaving the in-flight map, so a caller arriving now finds it in one or the other.
            for slot, vector in zip(batch, vectors):
                if self.cache is not None:
                    self.cache.put(slot.text, vector)
                self._in_flight.pop(slot.text, None)
            self.batches += 1
            self.texts_embedded += len(batch)
        for slot, vector in zip(batch, vectors):
            slot.future.set_result(vector)

    def _fail_queued(self, exc: BaseException) -> None:
        with self._cond:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            for slot in queued:
                self._in_flight.pop(slot.text, None)
        for slot in queued:
            if not slot.future.done():
                slot.future.set_exception(exc)


def for_queries(embedder, settings):
    """The embedder the frontend searches with: `embedder` wrapped in a
    BatchingEmbedder per settings (frontend.config.QueryEmbeddingSettings), or
    `embedder` itself when batching and the cache are both off (max_batch 1, cache
    size 0), so that configuration embeds in the request's thread exactly as before."""
    if settings.max_batch == 1 and settings.cache_size == 0:
        return embedder
    cache = QueryVectorCache(settings.cache_size) if settings.cache_size else None
    return BatchingEmbedder(embedder, window_s=settings.batch_window_ms / 1000, max_batch=settings.max_batch,
                            cache=cache, timeout_s=settings.timeout_seconds)
