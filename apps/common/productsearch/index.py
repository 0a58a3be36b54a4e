"""The Pinecone index as this system uses it: versioned upserts and deletes that
never let older state overwrite newer, with retries on 429/5xx/timeouts.

Versions: each record's metadata holds the version of the row state it reflects
(products.version, a hybrid clock the database stamps: schema/current.sql).
Deletions leave a tombstone (the deletion's version) in a side namespace
that queries never read, so a late, older upsert of a deleted row is refused too.

The index speaks one of two APIs (IndexSettings.api; productsearch.index_apis):
- a legacy vector index: records carry a BM25 sparse vector beside the dense one
  (productsearch.lexical), written in the same upsert, so the two never disagree.
  Hybrid queries need the dotproduct metric (Pinecone docs: Limits, "Only indexes
  using the dotproduct distance metric support sparse-dense vectors"); the dense
  vectors are unit length, so a dense-only query scores as cosine did;
- a document index: documents carry the dense vector, the product text and the SKU,
  and Pinecone's full-text search scores the words (search_text).
The versioning is the same on both.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from email.utils import parsedate_to_datetime

from pinecone import Pinecone, RetryConfig

from productsearch.batching import within_limits
from productsearch.documents import MAX_UPSERT_REQUEST_BYTES, MAX_VECTORS_PER_UPSERT, IndexRecord, SparseVector
from productsearch.index_apis import DocumentsApi, Hit, IndexApi, Stored, VectorsApi
from productsearch.logs import brief
from productsearch.retry import with_backoff
from productsearch.settings import IndexSettings

log = logging.getLogger(__name__)

# Pinecone docs: Limits ("Max IDs per fetch request: 1000", "Max IDs per delete request: 1000").
MAX_IDS_PER_FETCH = 1000
MAX_IDS_PER_DELETE = 1000
# Requests one writer keeps in flight at once. Each carries distinct ids, so their
# order does not matter; a few hide the round trip to a remote index without
# crowding its per-namespace write rate.
DEFAULT_REQUESTS_IN_FLIGHT = 4


def status_of(exc: BaseException) -> int | None:
    for attr in ("status", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def is_transient(exc: BaseException) -> bool:
    """429, 5xx and network trouble are worth retrying; any other 4xx is not."""
    status = status_of(exc)
    if status is not None:
        return status == 429 or status >= 500
    name = type(exc).__name__.lower()
    return any(word in name for word in ("timeout", "connection", "protocol", "maxretry", "remotedisconnected")) or isinstance(
        exc, (ConnectionError, TimeoutError, OSError)
    )


# The longest Retry-After passed on to a user (seconds): a longer one is still a
# reason to come back later, not to wait in front of the page.
MAX_RETRY_AFTER_S = 600


def retry_after_s(exc: BaseException | None) -> int | None:
    """How long the index asked its caller to wait, in whole seconds (rounded up,
    1 .. MAX_RETRY_AFTER_S), from the Retry-After header of a 429 or 503 in `exc` or
    its causes; None when it gave none. Pinecone's docs (Error handling, Database
    limits) promise no Retry-After on a 429, so its absence is ordinary; the header
    is read as RFC 9110 (10.2.3) defines it, delay-seconds or an HTTP-date."""
    seen = 0
    while exc is not None and seen < 10:
        seen += 1
        headers = getattr(exc, "headers", None) or {}
        raw = next((v for k, v in dict(headers).items() if str(k).lower() == "retry-after"), None)
        if raw is not None and status_of(exc) in (429, 503):
            wait = _retry_after_seconds(str(raw))
            if wait is not None:
                return max(1, min(MAX_RETRY_AFTER_S, math.ceil(wait)))
        exc = exc.__cause__ or exc.__context__
    return None


def _retry_after_seconds(raw: str) -> float | None:
    text = raw.strip()
    # delay-seconds is an integer in RFC 9110; the SDK also reads a decimal, and so do we.
    if text.isascii() and text.replace(".", "", 1).isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class DeadlinePassed(TimeoutError):
    """The caller's deadline (ProductIndex.set_deadline) left no time for the request."""


class PermanentIndexError(RuntimeError):
    """The index refused a request for a reason retrying cannot fix (4xx other than 429)."""


@dataclass(frozen=True)
class VersionedWrite:
    """What a versioned write did, by vector id."""

    written: set[str]  # upserted or deleted
    superseded: set[str]  # the index already held a newer version


@dataclass(frozen=True)
class StoredRecord:
    """What the index holds for one id in the main namespace, as `lookup` reads it."""

    version: int
    text_hash: str | None  # documents.text_hash of the text its dense vector embeds; None: not recorded
    values: np.ndarray | None  # the dense vector, float32 (dimension,); None: not returned


Match = Hit  # a search's match: id, score, metadata


class ProductIndex:
    def __init__(self, settings: IndexSettings, *, attempts: int = 8, timeout_s: float = 10.0,
                 should_stop: Callable[[], bool] = lambda: False, headers: Mapping[str, str] | None = None,
                 requests_in_flight: int = DEFAULT_REQUESTS_IN_FLIGHT, sdk_retries: int | None = None):
        """should_stop: when it returns True a failed call is not retried. headers: sent
        with every request (e.g. for a proxy in between). requests_in_flight: how many
        requests of one write (its upsert chunks, its fetches) run at once.
        sdk_retries: how many times the SDK itself retries a 408/429/5xx inside one
        attempt, waiting out Retry-After each time; None keeps the SDK's policy (3,
        what the pipeline's writes rely on). A client that answers users (the
        frontend) passes 0, so `attempts` alone bounds its requests and a throttled
        search fails in well under a second with the index's Retry-After."""
        self.settings = settings
        self._requests_in_flight = max(1, requests_in_flight)
        self._pool: ThreadPoolExecutor | None = None
        self._attempts = attempts
        self._timeout = timeout_s
        self._should_stop = should_stop
        self._deadline: float | None = None
        # Retries are meant to be ours alone (with_backoff, which honours should_stop and
        # the deadline). RetryConfig(max_retries=0) turns the SDK's own off only for the
        # control plane: pinecone 10.2's data-plane REST client takes no retry setting and
        # still retries 408/429/5xx up to 3 times inside each call (within its per-host
        # retry budget). So a deadline bounds each HTTP attempt, not a whole call; a call
        # cut off by the container's stop loses nothing (its messages are redelivered).
        client = Pinecone(api_key=settings.api_key.get_secret_value(), additional_headers=dict(headers or {}),
                          retry_config=RetryConfig(max_retries=0))
        self._index = client.Index(host=settings.host)
        if sdk_retries is not None:
            _set_data_plane_retries(self._index, sdk_retries)
        self._api: IndexApi = DocumentsApi(self._index) if settings.api == "documents" else VectorsApi(self._index)

    @property
    def needs_sparse(self) -> bool:
        """Whether records need our BM25 sparse vectors: a legacy index scores keywords
        by them; a document index scores its own full-text fields."""
        return self.settings.api != "documents"

    # -- plumbing -------------------------------------------------------------
    def set_deadline(self, when: float | None) -> None:
        """From now on no request outlives `when` (a time.monotonic() value): each one's
        timeout is cut to the time left, and none starts once it has passed (raising
        DeadlinePassed, a TimeoutError). emu sets it on SIGTERM, from the container's
        stop timeout; None lifts it."""
        self._deadline = when

    def _timeout_now(self) -> float:
        if self._deadline is None:
            return self._timeout
        left = self._deadline - time.monotonic()
        if left <= 0.05:
            raise DeadlinePassed("the deadline for index requests has passed")
        return min(self._timeout, left)

    def _call(self, what: str, fn: Callable[[], Any], attempts: int | None = None) -> Any:
        try:
            return with_backoff(fn, retryable=is_transient, attempts=attempts or self._attempts, what=what,
                                should_stop=self._should_stop)
        except Exception as exc:
            if not is_transient(exc) and status_of(exc) is not None:
                raise PermanentIndexError(f"{what} refused by the index ({status_of(exc)}): {_message(exc)}") from exc
            raise

    # -- reads ----------------------------------------------------------------
    def _in_parallel(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Runs the calls, up to requests_in_flight at once, and returns their results in
        order. Every call runs to its end; then the first error is raised."""
        if len(calls) <= 1 or self._requests_in_flight == 1:
            return [call() for call in calls]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._requests_in_flight, thread_name_prefix="index")
        futures = [self._pool.submit(call) for call in calls]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]

    def _fetch_chunks(self, ids: Sequence[str], namespace: str) -> dict[str, Stored]:
        chunks = [list(ids[start : start + MAX_IDS_PER_FETCH]) for start in range(0, len(ids), MAX_IDS_PER_FETCH)]
        found: dict[str, Stored] = {}
        calls = [lambda chunk=chunk: self._call("fetch", lambda: self._api.fetch(chunk, namespace, self._timeout_now()))
                 for chunk in chunks]
        for response in self._in_parallel(calls):
            found.update(response)
        return found

    def fetch_versions(self, ids: Sequence[str], namespace: str | None = None) -> dict[str, int]:
        """The version each id's record holds in `namespace` (default the main one); ids
        the index lacks are left out. One fetch per 1,000 ids."""
        ns = self.settings.namespace if namespace is None else namespace
        return {vid: int(stored.metadata.get("version", 0)) for vid, stored in self._fetch_chunks(ids, ns).items()}

    def lookup(self, ids: Sequence[str]) -> dict[str, StoredRecord]:
        """What the main namespace holds for each id (absent ids are left out): its
        version, its text fingerprint and its dense vector. One fetch per 1,000 ids
        (Pinecone docs: Understanding cost, a fetch costs 1 read unit per 10 records
        whatever they hold, so the vectors come at no extra charge)."""
        out = {}
        for vid, stored in self._fetch_chunks(ids, self.settings.namespace).items():
            meta = stored.metadata
            values = np.asarray(stored.values, dtype=np.float32) if stored.values else None
            text_hash = meta.get("text_hash")
            out[vid] = StoredRecord(version=int(meta.get("version", 0)),
                                    text_hash=text_hash if isinstance(text_hash, str) else None, values=values)
        return out

    def fetch(self, ids: Sequence[str]) -> dict[str, Stored]:
        """What the main namespace holds for each id (absent ids are left out): metadata,
        dense values and sparse values (a legacy index's). One fetch per 1,000 ids."""
        return self._fetch_chunks(list(ids), self.settings.namespace)

    def query(self, vector: np.ndarray, top_k: int, filter: dict[str, Any] | None = None, *,
              attempts: int | None = None, sparse_vector: SparseVector | None = None) -> list[Match]:
        """Top-k matches with metadata; each attempt gets this client's timeout (s), and
        there are this client's attempts unless given. With a non-empty sparse_vector
        the index scores dense . dense + sparse . sparse (a hybrid query: the caller has
        weighted both parts; a keyword-only query sends an all-zero dense part, as
        Pinecone requires a dense vector in every query of a dense index). A legacy
        index only: raises TypeError on a document index, which search_dense and
        search_text serve."""
        if not isinstance(self._api, VectorsApi):
            raise TypeError("query needs a legacy index (PINECONE_INDEX_API=vectors); "
                            "use search_dense or search_text on a document index")
        api = self._api
        return self._call("query", lambda: api.query(vector.tolist(), sparse_vector, top_k, filter,
                                                     self.settings.namespace, self._timeout_now()), attempts=attempts)

    def search_dense(self, vector: np.ndarray, top_k: int, filter: dict[str, Any] | None = None, *,
                     attempts: int | None = None) -> list[Match]:
        """Top-k matches by the dense vector alone (shape (dimension,)), on either API."""
        return self._call("search", lambda: self._api.search_dense(vector.tolist(), top_k, filter,
                                                                   self.settings.namespace, self._timeout_now()),
                          attempts=attempts)

    def search_text(self, text: str, top_k: int, filter: dict[str, Any] | None = None, *,
                    attempts: int | None = None) -> list[Match]:
        """Top-k matches by Pinecone's full-text (BM25) score of `text`'s words in the
        product text and SKU: a document index only (a legacy index is searched by
        keyword through query's sparse vector). Raises TypeError on a legacy index."""
        if not isinstance(self._api, DocumentsApi):
            raise TypeError("search_text needs a document index (PINECONE_INDEX_API=documents)")
        api = self._api
        return self._call("search", lambda: api.search_text(text, top_k, filter, self.settings.namespace,
                                                            self._timeout_now()), attempts=attempts)

    def count(self, *, attempts: int | None = None) -> int:
        """Vectors in the main namespace; each attempt gets this client's timeout (s)."""
        return self._call("describe_index_stats", lambda: self._api.count(self.settings.namespace, self._timeout_now()),
                          attempts=attempts)

    def list_ids(self, page_size: int = 100):
        """Yields pages of ids in the main namespace (serverless `list`)."""
        token = None
        while True:
            ids, token = self._call("list", lambda: self._api.list_page(self.settings.namespace, page_size, token,
                                                                        self._timeout_now()))
            if ids:
                yield ids
            if not token:
                return

    # -- versioned writes -------------------------------------------------------
    def newest_versions(self, ids: Sequence[str]) -> dict[str, int]:
        """The newest version the index knows for each id, live or deleted."""
        live = self.fetch_versions(ids)
        dead = self.fetch_versions(ids, namespace=self.settings.tombstone_namespace)
        return {i: max(live.get(i, 0), dead.get(i, 0)) for i in set(live) | set(dead)}

    def upsert(self, records: Sequence[IndexRecord], vectors: np.ndarray) -> None:
        """Writes records in requests within Pinecone's count and size limits, each
        record's sparse vector (legacy index) or text and SKU (document index) in the
        same item as its dense vector."""
        items = [self._api.item(r.id, v.tolist(), r.metadata, r) for r, v in zip(records, vectors, strict=True)]
        self._upsert_items(items, self.settings.namespace)

    def _upsert_items(self, items: list[dict[str, Any]], namespace: str) -> None:
        # The chunks hold distinct ids (callers write each id once), so they may land in any order.
        chunks = chunks_within_limits(items, self._api.item_bytes)
        self._in_parallel([lambda chunk=chunk: self._call("upsert", lambda: self._api.upsert(
            chunk, namespace, self._timeout_now())) for chunk in chunks])

    def write_versioned(self, upserts: Sequence[tuple[IndexRecord, np.ndarray]], deletions: Mapping[str, int], *,
                        live_versions: Mapping[str, int] | None = None) -> VersionedWrite:
        """Writes each record, or deletes each id, unless the index already holds a newer
        version of it (live or as a tombstone): the only way the pipeline writes.

        upserts: (record, vector of shape (dimension,)) pairs, each id once; deletions:
        id -> the deletion's version. live_versions: the versions the main namespace
        held for these ids when the caller looked (`lookup`, absent ids: none held),
        which spares the fetch; the caller must have added any version it wrote since.
        An equal version is the same state and is written again (harmless, and it lets
        a forced backfill rewrite vectors). Returns which ids were written and which
        were superseded. Raises PermanentIndexError when the index refuses a request,
        and the transient error (RetriesExhausted, a timeout) when it keeps failing;
        nothing is partially acknowledged in either case.

        Requests: a fetch of the live versions (unless given), a fetch of the
        deletions' tombstones (only with deletions), the upserts and deletes, then,
        for records the main namespace did not hold, one fetch of their tombstones: a
        record whose deletion is newer is deleted again and reported superseded. A
        record the index held live has no newer tombstone, since a deletion writes
        its tombstone and then removes the record, unless another writer deleted it
        since the versions were read. The check and the write are separate requests,
        so two writers of the same id must never overlap: the jobs queue gives each
        product partition to one emu at a time."""
        ids = [record.id for record, _ in upserts] + list(deletions)
        if live_versions is None:
            live_versions = self.fetch_versions(ids) if ids else {}
        # A tombstone must never be overwritten by an older deletion's, so deletions look first.
        dead = self.fetch_versions(list(deletions), namespace=self.settings.tombstone_namespace) if deletions else {}
        fresh = [(r, v) for r, v in upserts if r.version >= live_versions.get(r.id, 0)]
        versions_of = {r.id: r.version for r, _ in fresh}
        fresh_deletions = {i: v for i, v in deletions.items()
                           if v >= max(live_versions.get(i, 0), dead.get(i, 0))}
        if fresh:
            self.upsert([r for r, _ in fresh], np.stack([v for _, v in fresh]))
        if fresh_deletions:
            self.delete(fresh_deletions)
        late: set[str] = set()
        unseen = [r.id for r, _ in fresh if r.id not in live_versions]
        if unseen:
            tombstones = self.fetch_versions(unseen, namespace=self.settings.tombstone_namespace)
            late = {i for i in unseen if tombstones.get(i, 0) > versions_of[i]}
            if late:
                self.delete_ids(sorted(late))
        written = ({r.id for r, _ in fresh} - late) | set(fresh_deletions)
        return VersionedWrite(written=written, superseded=set(ids) - written)

    def delete(self, deletions: dict[str, int]) -> None:
        """Deletes ids, first recording a tombstone with each deletion's version."""
        if not deletions:
            return
        unit = np.zeros(self.settings.dimension, dtype=np.float32)
        unit[0] = 1.0  # Pinecone rejects all-zero vectors for cosine; tombstones are never queried.
        tombstones = [self._api.item(i, unit.tolist(), {"version": v}) for i, v in deletions.items()]
        self._upsert_items(tombstones, self.settings.tombstone_namespace)
        self.delete_ids(list(deletions))

    def delete_ids(self, ids: Sequence[str]) -> None:
        """Deletes vectors outright (reconcile's orphans: rows that do not exist)."""
        for start in range(0, len(ids), MAX_IDS_PER_DELETE):
            chunk = list(ids[start : start + MAX_IDS_PER_DELETE])
            self._call("delete", lambda: self._api.delete(chunk, self.settings.namespace, self._timeout_now()))


def _set_data_plane_retries(index: Any, retries: int) -> None:
    """Rebuilds the data-plane HTTP client of a pinecone Index with `retries` SDK
    retries. pinecone 10.2's Index takes no retry setting (only the control plane's
    client does), so this reaches into its HTTP client: checked here, so an SDK that
    changes that shape fails at start with this message rather than silently keeping
    its retries (requirements/dev.txt pins the version; the frontend test of a
    throttled search counts the requests it makes)."""
    try:
        from pinecone._internal.http_client import HTTPClient
        from pinecone.index import DATA_PLANE_API_VERSION  # pyright: ignore[reportPrivateImportUsage] (see above)

        config = dataclasses.replace(index._config, retry_config=RetryConfig(max_retries=retries))
        index._http = HTTPClient(config, DATA_PLANE_API_VERSION)
    except (ImportError, AttributeError, TypeError) as exc:
        raise RuntimeError(f"cannot set the pinecone SDK's data-plane retries ({exc}); "
                           "this SDK version builds its Index differently") from exc


def chunks_within_limits(items: list[dict[str, Any]], size_of: Callable[[dict[str, Any]], int]) -> Iterator[list[dict[str, Any]]]:
    """Splits upsert items into requests of at most MAX_VECTORS_PER_UPSERT items and
    MAX_UPSERT_REQUEST_BYTES less 64 KiB of headroom for the request envelope
    (Pinecone's upsert limits, see productsearch.documents), sizes bounded by
    `size_of` (an IndexApi's item_bytes). An item over the budget alone goes in a
    request by itself, for the index to refuse and emu to isolate."""
    return within_limits(items, max_items=MAX_VECTORS_PER_UPSERT, max_bytes=MAX_UPSERT_REQUEST_BYTES - 64 * 1024,
                         size_of=size_of)


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if body:
        return brief(body, 500)
    return brief(exc, 500)
