"""How far the index is behind the table: rows, vectors, changes not yet shipped,
messages in the queue and the dead-letter queue, age of the oldest unsynced change;
and what holds vacuum back: the oldest open transaction's age and the change log's
dead row versions (productsearch.change_log.vacuum_horizon).

Each figure is read on its own, so one unreachable part shows as unavailable without
hiding the others. Readings are cached for a couple of seconds: many open browsers
refreshing the panel cost the database and the queue one read per interval. A
reading is taken by one background thread at a time and callers never wait for it
(only the very first waits, briefly): a stalled index or queue cannot pile status
requests up on the server's thread pool, whatever the number of open pages.

The change-log figures cost the same whatever its length (productsearch.change_log):
changes_pending is exact up to change_log.COUNT_CAP and the statistics' estimate
beyond (changes_pending_exact says which), and the oldest change is the one with the
least id.

Every reading says how old it is (age_s). One older than stale_after_s (a quiet spell,
or refreshes that fail or hang) is not served as current: the caller waits briefly
for the refresh it started, and gets the old reading marked stale if that is not
done. "In sync" compares counts: it is claimed only for a fresh reading in which
every figure was read, nothing waits anywhere (change log, jobs queue, in flight)
and the index holds as many vectors as the table rows. Figures are read upstream
first (the change log, then the queue), so a change moving along the pipeline while
they are read is counted where it was, never missed between two stages."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from productsearch import change_log, products
from productsearch.aws import queue_depth
from productsearch.logs import brief

log = logging.getLogger("frontend.status")


@dataclass(frozen=True)
class SyncStatus:
    read_at: str
    rows: int | None = None
    vectors: int | None = None
    changes_pending: int | None = None
    changes_pending_exact: bool | None = None
    oldest_unsynced_age_s: float | None = None
    queue: dict[str, int] | None = None
    dead_letters: dict[str, int] | None = None
    oldest_transaction_age_s: float | None = None
    outbox_dead_tuples: int | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # Seconds since the reading finished, when it was served (StatusReader.read).
    age_s: float | None = None
    stale: bool = False

    @property
    def queued(self) -> int | None:
        """Jobs queue messages waiting plus in flight; None when unread."""
        return None if self.queue is None else self.queue["visible"] + self.queue["in_flight"]

    @property
    def in_sync(self) -> bool:
        """True only for a reading that is not stale, in which every figure the claim
        rests on was read and nothing waits anywhere: no change in the change log, no
        job waiting or in flight in the queue, and as many vectors as rows. It
        compares counts, not contents (`pelican reconcile` compares contents)."""
        return (not self.stale and self.rows is not None and self.rows == self.vectors and self.changes_pending == 0
                and self.queued == 0)

    def to_json(self) -> dict[str, Any]:
        """The GET /api/status body (docs/frontend.md)."""
        return {
            "read_at": self.read_at,
            "age_s": self.age_s,
            "stale": self.stale,
            "in_sync": self.in_sync,
            "rows": self.rows,
            "vectors": self.vectors,
            "changes_pending": self.changes_pending,
            "changes_pending_exact": self.changes_pending_exact,
            "oldest_unsynced_age_s": self.oldest_unsynced_age_s,
            "queue": self.queue,
            "dead_letters": self.dead_letters,
            "oldest_transaction_age_s": self.oldest_transaction_age_s,
            "outbox_dead_tuples": self.outbox_dead_tuples,
            "errors": self.errors,
        }


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {brief(str(exc).splitlines()[0], 200) if str(exc) else ''}".rstrip(": ")


# The page refreshes the panel every 10 s; a reading five times the cache's life old
# means refreshes have not been asked for (a quiet spell) or are failing or hung.
STALE_AFTER_S = 10.0


class StatusReader:
    def __init__(self, pool, index, sqs, queue_url: str, dlq_url: str | None, ttl_s: float = 2.0,
                 first_wait_s: float = 1.0, stale_after_s: float = STALE_AFTER_S):
        self.pool, self.index, self.sqs = pool, index, sqs
        self.queue_url, self.dlq_url, self.ttl_s, self.first_wait_s = queue_url, dlq_url, ttl_s, first_wait_s
        self.stale_after_s = max(stale_after_s, ttl_s)
        self._lock = threading.Lock()
        self._cached: tuple[float, SyncStatus] | None = None
        self._reading = False
        self._done = threading.Event()

    def read(self) -> SyncStatus:
        """The latest reading with its age_s, refreshed in the background once it is
        ttl_s old. A caller waits (at most first_wait_s) only when there is no reading
        yet or the one there is stale_after_s old; if the new one is not done by then,
        it gets the old one with stale=True (never in sync), or, before any reading,
        one that names the part still in progress."""
        with self._lock:
            cached = self._cached
            if (cached is None or time.monotonic() - cached[0] >= self.ttl_s) and not self._reading:
                self._reading = True
                self._done.clear()
                threading.Thread(target=self._refresh, name="status-reader", daemon=True).start()
        if cached is not None and time.monotonic() - cached[0] < self.stale_after_s:
            return self._aged(cached)
        self._done.wait(self.first_wait_s)
        with self._lock:
            cached = self._cached
        if cached is not None:
            return self._aged(cached)
        return SyncStatus(read_at=_now(), errors={"status": "the first reading is still in progress"})

    def _aged(self, cached: tuple[float, SyncStatus]) -> SyncStatus:
        age_s = time.monotonic() - cached[0]
        return replace(cached[1], age_s=round(age_s, 1), stale=age_s >= self.stale_after_s)

    def _refresh(self) -> None:
        try:
            status = self._read()
            with self._lock:
                self._cached = (time.monotonic(), status)
        finally:
            with self._lock:
                self._reading = False
            self._done.set()

    def _read(self) -> SyncStatus:
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        try:
            with self.pool.connection(timeout=3.0) as conn:
                values["rows"] = conn.execute(products.COUNT).fetchone()["n"]
                pending = change_log.count_changes(conn)
                age_s = change_log.oldest_change_age(conn)
            values["changes_pending"], values["changes_pending_exact"] = pending.n, pending.exact
            values["oldest_unsynced_age_s"] = round(age_s or 0.0, 1)
        except Exception as exc:
            errors["database"] = _short(exc)
        try:
            # Apart: a role not yet granted EXECUTE (grant-roles not rerun) hides nothing else.
            with self.pool.connection(timeout=3.0) as conn:
                horizon = change_log.vacuum_horizon(conn)
            values["oldest_transaction_age_s"] = round(horizon.oldest_transaction_age_s, 1)
            values["outbox_dead_tuples"] = horizon.outbox_dead_tuples
        except Exception as exc:
            errors["vacuum_horizon"] = _short(exc)
        try:
            values["vectors"] = self.index.count(attempts=1)  # the next reading is the retry
        except Exception as exc:
            errors["index"] = _short(exc)
        try:
            values["queue"] = queue_depth(self.sqs, self.queue_url)
        except Exception as exc:
            errors["queue"] = _short(exc)
        if self.dlq_url:
            try:
                values["dead_letters"] = queue_depth(self.sqs, self.dlq_url)
            except Exception as exc:
                errors["dead_letters"] = _short(exc)
        else:
            errors["dead_letters"] = "SQS_DLQ_URL is not configured"
        if errors:
            log.warning("status partly unavailable", extra={"errors": errors})
        return SyncStatus(read_at=_now(), errors=errors, **values)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def age_text(seconds: float | None) -> str:
    """A duration for the panel: "unknown" for None, else seconds, minutes or hours."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def oldest_change_text(status: SyncStatus) -> str:
    """The panel's age of the oldest unsynced change. "nothing waiting" only when
    neither the change log nor the jobs queue holds anything; a change log that is
    empty while the queue is not says so."""
    if status.changes_pending is None:
        return "unavailable"
    if status.changes_pending > 0:
        # Read just after the count: the log may have drained in between.
        return age_text(status.oldest_unsynced_age_s) if status.oldest_unsynced_age_s else "under 1 s"
    if status.queued is None:
        return "none in the change log; the jobs queue is unavailable"
    if status.queued > 0:
        return f"none in the change log; {status.queued:,} in the jobs queue (waiting or in flight)"
    return "nothing waiting"


def status_markdown(status: SyncStatus) -> str:
    """The status panel: one table row per figure, then whether the index is in sync
    and how old the reading is (marked stale when it is), then each part that could
    not be read."""
    def n(value: Any) -> str:
        return "unavailable" if value is None else f"{value:,}"

    def pending() -> str:
        if status.changes_pending is None or status.changes_pending_exact is not False:
            return n(status.changes_pending)
        return f"about {status.changes_pending:,} (estimate)"

    def q(depth: dict[str, int] | None) -> str:
        if depth is None:
            return "unavailable"
        return f"{depth['visible']:,} waiting, {depth['in_flight']:,} in flight"

    def held() -> str:
        age = status.oldest_transaction_age_s
        return "unavailable" if age is None else ("none" if age == 0 else age_text(age))

    if status.stale:
        verdict = (f"**Stale reading**: taken {age_text(status.age_s)} ago and no newer one is done yet; "
                   "these figures may no longer hold.")
    elif status.in_sync:
        verdict = "In sync: nothing waits and the index holds as many vectors as the table has rows."
    else:
        verdict = "Catching up (or see the figures above)."
    age = "" if status.age_s is None else f" ({age_text(status.age_s)} ago)"
    lines = [
        "| | |",
        "|---|---|",
        f"| Rows in the table | {n(status.rows)} |",
        f"| Vectors in the index | {n(status.vectors)} |",
        f"| Changes waiting in the change log | {pending()} |",
        f"| Messages in the jobs queue | {q(status.queue)} |",
        f"| Messages in the dead-letter queue | {q(status.dead_letters)} |",
        f"| Age of the oldest unsynced change | {oldest_change_text(status)} |",
        f"| Oldest open transaction | {held()} |",
        f"| Dead row versions in the change log | {n(status.outbox_dead_tuples)} |",
        "",
        f"{verdict} Read at {status.read_at}{age}.",
    ]
    for part, error in status.errors.items():
        lines.append(f"\n**{part}**: {error}")
    return "\n".join(lines)
