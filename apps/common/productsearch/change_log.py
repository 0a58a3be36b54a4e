"""Figures of the change log (the outbox, table product_changes) whose cost does not
grow with its length: pelican's metrics and the frontend's status panel read them,
and a backfill can leave millions of rows there. A figure that scanned the whole
table (count(*), min(captured_at): captured_at has no index) would take longer the
longer the backlog, pass the statement timeout, and fail exactly when it matters.

Both reads go through the primary key's index:

- The oldest change is the row with the least id. ids come from the table's identity
  sequence (schema/000_baseline.sql, GENERATED ALWAYS AS IDENTITY, no CACHE: one value at a time
  in nextval order), so they follow the order in which rows were inserted; pelican
  claims in the same order (pelican/outbox.py), so this row is also the next one to
  ship. captured_at is now(), the capturing transaction's start, so a transaction
  that began earlier but inserted later holds a greater id and an earlier
  captured_at: the age read here can fall short of the least captured_at's by at
  most how long such a transaction had run before its insert (one backfill batch or
  one app write). It never falls short by more, and it grows one second a second
  while nothing ships, which is what an alarm on it watches.
- The number of changes waiting is counted exactly up to COUNT_CAP (an index scan of
  at most COUNT_CAP + 1 entries); beyond it the statistics' live-row estimate
  (pg_stat_user_tables.n_live_tup, kept current by every committing transaction) is
  reported, flagged as not exact, and never below COUNT_CAP + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# Counting 10,000 index entries takes milliseconds; beyond that an operator or a
# scaling policy needs the order of magnitude, not the last digit.
COUNT_CAP = 10_000

OLDEST_AGE_SQL = """
SELECT EXTRACT(EPOCH FROM now() - captured_at)::float8 AS age_s
FROM product_changes ORDER BY id LIMIT 1
"""

# ORDER BY id: the primary key's index, whose entries for rows pelican deleted are
# marked dead by the first scan that meets them, so later scans skip them cheaply.
BOUNDED_COUNT_SQL = """
SELECT count(*) AS n FROM (SELECT 1 FROM product_changes ORDER BY id LIMIT %s) AS head
"""

ESTIMATE_SQL = """
SELECT coalesce(max(n_live_tup), 0) AS n FROM pg_stat_user_tables WHERE relid = 'product_changes'::regclass
"""


@dataclass(frozen=True)
class ChangeCount:
    """Rows in the change log: exact when `exact`, else an estimate above COUNT_CAP."""

    n: int
    exact: bool


def count_changes(conn: psycopg.Connection, cap: int = COUNT_CAP) -> ChangeCount:
    """The number of rows in product_changes: exact up to `cap`, else the statistics'
    estimate (at least cap + 1). Two indexed statements at most, whatever the table's
    length. Raises psycopg.Error as the statements do (a missing table included)."""
    n = conn.execute(BOUNDED_COUNT_SQL, (cap + 1,)).fetchone()["n"]
    if n <= cap:
        return ChangeCount(n, True)
    estimate = conn.execute(ESTIMATE_SQL).fetchone()["n"]
    return ChangeCount(max(int(estimate), cap + 1), False)


def oldest_change_age(conn: psycopg.Connection) -> float | None:
    """Seconds since the oldest waiting change was captured (see the module's note on
    its precision), at least 0; None when the change log is empty. Raises
    psycopg.Error as the statement does."""
    row = conn.execute(OLDEST_AGE_SQL).fetchone()
    return None if row is None else max(0.0, row["age_s"])


# vacuum_horizon() (schema/current.sql): a SECURITY DEFINER function, so the app roles read
# two numbers about other sessions without pg_monitor.
VACUUM_HORIZON_SQL = "SELECT oldest_transaction_age_s, outbox_dead_tuples FROM vacuum_horizon()"


@dataclass(frozen=True)
class VacuumHorizon:
    """What holds vacuum back from the change log: `oldest_transaction_age_s`, seconds
    since the oldest open transaction in this database that holds a snapshot or a
    transaction id began (0 when none; the reader's own excepted), and
    `outbox_dead_tuples`, the statistics' count of dead row versions in
    product_changes. A transaction open for long keeps every row deleted since it
    began, so the two rise together; see docs/operations.md, Held transactions."""

    oldest_transaction_age_s: float
    outbox_dead_tuples: int


def vacuum_horizon(conn: psycopg.Connection) -> VacuumHorizon:
    """Reads both figures in one statement (a dict_row connection). Raises
    psycopg.Error as the statement does: UndefinedFunction before `pelican migrate`
    created vacuum_horizon(), InsufficientPrivilege for a role not granted EXECUTE."""
    row = conn.execute(VACUUM_HORIZON_SQL).fetchone()
    return VacuumHorizon(max(0.0, float(row["oldest_transaction_age_s"])), int(row["outbox_dead_tuples"]))
