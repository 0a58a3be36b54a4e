"""Postgres connections and the schema migration."""

from __future__ import annotations

import logging
import time
from importlib import resources

import psycopg
from psycopg.rows import dict_row

log = logging.getLogger(__name__)

# Arbitrary but fixed: every process that migrates takes the same advisory lock.
MIGRATION_LOCK_KEY = 7_305_117_001


def connect(url: str, *, autocommit: bool = False, attempts: int = 1, application_name: str = "productsearch") -> psycopg.Connection:
    """Connects, retrying with backoff when attempts > 1 (e.g. while the database restarts)."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            return psycopg.connect(
                url, autocommit=autocommit, row_factory=dict_row, connect_timeout=10, application_name=application_name
            )
        except psycopg.OperationalError:
            if attempt == attempts:
                raise
            log.warning("database unreachable, retrying", extra={"attempt": attempt, "retry_in_s": round(delay, 2)})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def migration_files() -> list[tuple[str, str]]:
    sql_dir = resources.files("productsearch") / "sql"
    names = sorted(p.name for p in sql_dir.iterdir() if p.name.endswith(".sql"))
    return [(name, (sql_dir / name).read_text()) for name in names]


def migrate(url: str) -> list[str]:
    """Applies the schema files not yet applied, in order. Safe to run twice and from
    several processes at once: a transaction-scoped advisory lock serialises them and
    every file is itself idempotent. Returns the names applied by this call."""
    applied_now = []
    with connect(url, application_name="migrate") as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["name"] for row in conn.execute("SELECT name FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied_now.append(name)
    log.info("schema up to date", extra={"applied": applied_now})
    return applied_now
