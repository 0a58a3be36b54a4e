"""Two indexes behind one handle, for moving to a new index without downtime
(docs/index-migration.md).

While PINECONE_NEXT_HOST is configured (data/'s pineconeNextIndexName):

- emu writes every batch through an IndexSet: the same versioned write to the
  serving index (PINECONE_HOST) and to the next one, so the normal pipeline builds
  the next index and keeps both current;
- the frontend searches through a ServingIndex: whichever of its configured hosts
  the serving_index row names (schema/000_baseline.sql), re-read every few seconds,
  so `pelican migrate-index` switches it by writing that row, without a redeploy.

Index hosts come only from configuration (IndexSettings): a row naming any other host
is not followed, so no app sends its API key to a host it was not given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psycopg import errors

from productsearch.index import ProductIndex, StoredRecord, VersionedWrite
from productsearch.logs import brief
from productsearch.settings import IndexSettings

log = logging.getLogger(__name__)

# How often a frontend re-reads the serving_index row (seconds). `pelican migrate-index`
# waits at least this long (plus SWITCH_MARGIN_SECONDS) after a switch before it says
# every frontend serves from the new index.
SERVING_REFRESH_SECONDS = 5.0
SWITCH_MARGIN_SECONDS = 5.0

SERVING_HOST_SQL = "SELECT host FROM serving_index"


class IndexSet:
    """emu's writer over one or more ProductIndex handles (the serving index first).

    write_versioned writes each index in turn with its own versioned write. It returns
    only when every index has taken the batch; an error from any of them is raised as
    it is, and nothing is acknowledged, so emu holds or retries the whole batch. A
    batch that reached the first index and failed on the second is thus written to the
    first again on the retry: an equal version is the same state, and the versioned
    write rewrites it harmlessly (a newer one it skips), so repeats never move either
    index backwards. During a migration, then, an outage of either index pauses
    indexing for both; the frontend keeps serving meanwhile.
    """

    def __init__(self, indexes: Sequence[ProductIndex]):
        if not indexes:
            raise ValueError("an IndexSet needs at least one index")
        self.indexes = tuple(indexes)

    @property
    def needs_sparse(self) -> bool:
        """Whether any of the indexes scores keywords by our BM25 sparse vectors."""
        return any(index.needs_sparse for index in self.indexes)

    def set_deadline(self, when: float | None) -> None:
        """ProductIndex.set_deadline on every index: no request outlives `when`."""
        for index in self.indexes:
            index.set_deadline(when)

    def lookup(self, ids: Sequence[str]) -> dict[str, StoredRecord]:
        """ProductIndex.lookup on the serving (first) index: what emu reuses a stored
        vector from, and the live versions it passes back to write_versioned."""
        return self.indexes[0].lookup(ids)

    def write_versioned(self, upserts: Sequence[tuple[Any, Any]], deletions: Mapping[str, int], *,
                        live_versions: Mapping[str, int] | None = None) -> VersionedWrite:
        """ProductIndex.write_versioned on each index in turn (same arguments;
        live_versions, read from the first index by `lookup`, spares only the first
        index's fetch). An id is `written` when any index took it and `superseded`
        only when every index already held a newer version: emu's outcome for it then
        says the change was applied wherever it was still news."""
        written: set[str] = set()
        seen: set[str] = set()
        for n, index in enumerate(self.indexes):
            result = index.write_versioned(upserts, deletions, live_versions=live_versions if n == 0 else None)
            written |= result.written
            seen |= result.written | result.superseded
        return VersionedWrite(written=written, superseded=seen - written)


def writer_for(settings: IndexSettings, make: Callable[[IndexSettings], ProductIndex]) -> ProductIndex | IndexSet:
    """emu's index handle: a ProductIndex for PINECONE_HOST, or, with PINECONE_NEXT_HOST
    set, an IndexSet writing PINECONE_HOST then PINECONE_NEXT_HOST. `make` builds one
    ProductIndex from settings aimed at one host (attempts, timeouts, stop signal)."""
    if settings.next_host is None:
        return make(settings)
    return IndexSet([make(settings.for_host(host)) for host in settings.hosts])


def read_serving_host(conn) -> str | None:
    """The host the serving_index row names (normalised), or None when there is no row."""
    row = conn.execute(SERVING_HOST_SQL).fetchone()
    if row is None:
        return None
    host = row["host"] if isinstance(row, Mapping) else row[0]
    return IndexSettings.normal_host(host)


def write_serving_host(conn, host: str) -> None:
    """Makes `host` the one the frontends serve from (the administrator's connection;
    commits). The frontends follow within SERVING_REFRESH_SECONDS."""
    with conn.transaction():
        conn.execute(
            """INSERT INTO serving_index (one_row, host) VALUES (true, %s)
               ON CONFLICT (one_row) DO UPDATE SET host = EXCLUDED.host, switched_at = now()""",
            (IndexSettings.normal_host(host),))


class ServingIndex:
    """The frontend's index handle: the ProductIndex of whichever configured host the
    serving_index row names, PINECONE_HOST when there is no row.

    A background thread re-reads the row every `refresh_seconds`; searches never wait
    on the database for it. Until the first reading, and while the row cannot be
    read (the database is away), the last choice stands: a database outage never
    flips the frontend between indexes. A row naming a host this frontend is not
    configured with is not followed: PINECONE_HOST serves, an error is logged once
    and `state` says so (it shows on /healthz).

    Attribute access is passed on to the serving ProductIndex (query, fetch, count,
    ...), so search, the status panel and the edit-sync check all read the index that
    serves."""

    def __init__(self, settings: IndexSettings, pool, make: Callable[[IndexSettings], ProductIndex],
                 refresh_seconds: float = SERVING_REFRESH_SECONDS, read_timeout_s: float = 3.0):
        self._settings = settings
        self._indexes = {host: make(settings.for_host(host)) for host in settings.hosts}
        self._pool = pool
        self._refresh_seconds = refresh_seconds
        self._read_timeout_s = read_timeout_s
        self._serving = settings.host
        self._problem: str | None = None
        self._logged: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Lock()

    # -- which index serves -------------------------------------------------------
    def current(self) -> ProductIndex:
        """The ProductIndex that serves now."""
        return self._indexes[self._serving]

    @property
    def state(self) -> str:
        """Which configured index serves, for /healthz: "primary" (PINECONE_HOST) or
        "next" (PINECONE_NEXT_HOST), with the reason when the row could not be followed.
        Names no host: /healthz is public."""
        label = "primary" if self._serving == self._settings.host else "next"
        return f"{label} ({self._problem})" if self._problem else label

    def refresh(self) -> None:
        """Reads the row once and follows it; keeps the last choice when it cannot be read."""
        try:
            with self._pool.connection(timeout=self._read_timeout_s) as conn:
                named = read_serving_host(conn)
        except (errors.UndefinedTable, errors.InsufficientPrivilege) as exc:
            # The schema or the grants predate index migrations: PINECONE_HOST serves
            # until `pelican migrate` and `pelican grant-roles` have run.
            self._follow(None, f"cannot read serving_index ({type(exc).__name__}); "
                               "run `pelican migrate` and `pelican grant-roles`")
            return
        except Exception as exc:
            log.debug("serving_index unreadable; keeping the current index", extra={"error": brief(exc, 200)})
            return
        if named is None:
            self._follow(self._settings.host, None)
        elif named in self._indexes:
            self._follow(named, None)
        else:
            self._follow(self._settings.host, "the serving_index row names a host this frontend is not configured "
                                              "with; serving PINECONE_HOST")

    def _follow(self, host: str | None, problem: str | None) -> None:
        host = host or self._settings.host
        if host != self._serving:
            log.info("switching the index searches are served from",
                     extra={"serving": "primary" if host == self._settings.host else "next"})
        self._serving, self._problem = host, problem
        if problem and problem not in self._logged:
            self._logged.add(problem)
            log.error(problem)

    # -- the background reader ------------------------------------------------------
    def start(self) -> None:
        """Starts the thread that re-reads the row; later calls do nothing."""
        with self._started:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="serving-index", daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._refresh_seconds)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class does not define: the ProductIndex API.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.current(), name)
