"""How far the index is behind the table: rows, vectors, changes not yet shipped,
messages in the queue and the dead-letter queue, age of the oldest unsynced change.

Each figure is read on its own, so one unreachable part shows as unavailable without
hiding the others. Readings are cached for a couple of seconds: many open browsers
refreshing the panel cost the database and the queue one read per interval. A
reading is taken by one background thread at a time and callers never wait for it
(only the very first waits, briefly): a stalled index or queue cannot pile status
requests up on the server's thread pool, whatever the number of open pages.

The change-log figures cost the same whatever its length (productsearch.change_log):
changes_pending is exact up to change_log.COUNT_CAP and the statistics' estimate
beyond (changes_pending_exact says which), and the oldest change is the one with the
least id."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
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
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def in_sync(self) -> bool:
        """True when every figure was read and says the index equals the table: as many
        vectors as rows, no change waiting in the change log, no job in the queue."""
        return (self.rows is not None and self.rows == self.vectors and self.changes_pending == 0
                and self.queue is not None and self.queue["visible"] + self.queue["in_flight"] == 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "read_at": self.read_at,
            "in_sync": self.in_sync,
            "rows": self.rows,
            "vectors": self.vectors,
            "changes_pending": self.changes_pending,
            "changes_pending_exact": self.changes_pending_exact,
            "oldest_unsynced_age_s": self.oldest_unsynced_age_s,
            "queue": self.queue,
            "dead_letters": self.dead_letters,
            "errors": self.errors,
        }


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {brief(str(exc).splitlines()[0], 200) if str(exc) else ''}".rstrip(": ")


class StatusReader:
    def __init__(self, pool, index, sqs, queue_url: str, dlq_url: str | None, ttl_s: float = 2.0,
                 first_wait_s: float = 1.0):
        self.pool, self.index, self.sqs = pool, index, sqs
        self.queue_url, self.dlq_url, self.ttl_s, self.first_wait_s = queue_url, dlq_url, ttl_s, first_wait_s
        self._lock = threading.Lock()
        self._cached: tuple[float, SyncStatus] | None = None
        self._reading = False
        self._first = threading.Event()

    def read(self) -> SyncStatus:
        """The latest reading, refreshed in the background once it is ttl_s old. Waits
        (at most first_wait_s) only for the very first reading."""
        with self._lock:
            cached = self._cached
            if (cached is None or time.monotonic() - cached[0] >= self.ttl_s) and not self._reading:
                self._reading = True
                threading.Thread(target=self._refresh, name="status-reader", daemon=True).start()
        if cached is not None:
            return cached[1]
        self._first.wait(self.first_wait_s)
        with self._lock:
            if self._cached is not None:
                return self._cached[1]
        return SyncStatus(read_at=_now(), errors={"status": "the first reading is still in progress"})

    def _refresh(self) -> None:
        try:
            status = self._read()
            with self._lock:
                self._cached = (time.monotonic(), status)
        finally:
            with self._lock:
                self._reading = False
            self._first.set()

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
    if seconds is None:
        return "unknown"
    if seconds == 0:
        return "nothing waiting"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def status_markdown(status: SyncStatus) -> str:
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

    lines = [
        "| | |",
        "|---|---|",
        f"| Rows in the table | {n(status.rows)} |",
        f"| Vectors in the index | {n(status.vectors)} |",
        f"| Changes waiting in the change log | {pending()} |",
        f"| Messages in the jobs queue | {q(status.queue)} |",
        f"| Messages in the dead-letter queue | {q(status.dead_letters)} |",
        f"| Age of the oldest unsynced change | {age_text(status.oldest_unsynced_age_s) if status.changes_pending is not None else 'unavailable'} |",
        "",
        f"{'In sync.' if status.in_sync else 'Catching up (or see the figures above).'} Read at {status.read_at}.",
    ]
    for part, error in status.errors.items():
        lines.append(f"\n**{part}**: {error}")
    return "\n".join(lines)
