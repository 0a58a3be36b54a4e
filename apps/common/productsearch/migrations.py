"""The schema migration: the one-time migrations in productsearch/schema/ not yet
applied, then schema/current.sql (every function and trigger), in one transaction
(schema/README.md)."""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg

from productsearch.db import connect
from productsearch.settings import DatabaseSettings

log = logging.getLogger(__name__)

# Arbitrary but fixed: every process that migrates takes the same advisory lock.
MIGRATION_LOCK_KEY = 7_305_117_001


class MigrationRefused(RuntimeError):
    """A migration file refused to run on the data as it stands (its RAISE EXCEPTION,
    SQLSTATE P0001): the message names the file, the rows and what to do. Nothing of
    that run was applied."""


# The numbered, one-time migrations: NNN_name.sql, each applied once, in name order.
ONE_TIME_MIGRATION = re.compile(r"^\d{3}_\w+\.sql$")
# The first one-time migration creates the tables as they now stand, in place of the
# files that built them up step by step. A database that applied all of those records
# it as applied without running it (schema/README.md).
BASELINE = "000_baseline.sql"
BASELINE_REPLACES = (
    "001_products.sql", "002_finite_prices.sql", "003_row_versions.sql", "004_capture_as_owner.sql",
    "005_capture_without_notify.sql", "006_lexical_statistics.sql", "007_serving_index.sql",
    "008_drop_unused_outbox_index.sql", "009_capture_updates_before_row.sql", "010_sku_normal_form.sql",
    "011_outbox_autovacuum.sql", "012_vacuum_horizon.sql", "013_serving_host_path.sql",
)
# The last commit whose schema/ still holds the files BASELINE replaces: a database that
# applied only some of them finishes them with that version's `pelican migrate` first.
BASELINE_PREDECESSOR = "29ae2ce380a24365f2b4854939f13ca72fd39d5b"
# The current definition of every function and trigger, re-applied by every migrate.
CURRENT_DEFINITIONS = "current.sql"


def _schema_dir():
    return resources.files("productsearch") / "schema"


def migration_files() -> list[tuple[str, str]]:
    """[(file name, SQL text)] of every one-time migration in productsearch/schema/
    (NNN_name.sql), in name (= application) order; schema/README.md says how they and
    current.sql are applied. The names are what schema_migrations records as applied, so a file
    is never renamed, and once released its statements never change
    (tests/system/golden/migrations.sha256 holds their SHA-256)."""
    schema_dir = _schema_dir()
    names = sorted(p.name for p in schema_dir.iterdir() if ONE_TIME_MIGRATION.match(p.name))
    return [(name, (schema_dir / name).read_text()) for name in names]


def current_definitions() -> str:
    """The SQL text of schema/current.sql: every function and trigger as it is now,
    each CREATE OR REPLACE, so it may run any number of times."""
    return (_schema_dir() / CURRENT_DEFINITIONS).read_text()


def _baseline_already_built(done: set[str]) -> bool:
    """Whether a database whose schema_migrations lists `done` holds what BASELINE
    creates because it applied every file BASELINE replaces. Raises MigrationRefused
    when it applied only some of them: BASELINE cannot run over their tables, and the
    files that would finish them are no longer here."""
    if BASELINE in done or not done & set(BASELINE_REPLACES):
        return False
    missing = [name for name in BASELINE_REPLACES if name not in done]
    if missing:
        raise MigrationRefused(
            f"{BASELINE}: this database applied only some of the migrations {BASELINE} replaces "
            f"(not {', '.join(missing)}); run `pelican migrate` of commit {BASELINE_PREDECESSOR} "
            "first, which applies them, then this version's")
    return True


def migrate(database: DatabaseSettings | str) -> list[str]:
    """Applies the one-time migrations not yet applied, in order, then re-applies
    schema/current.sql (the current functions and triggers), all in one transaction:
    current.sql always runs on the newest tables, and no writer sees a state between
    two files. Safe to run twice and from several processes at once: a
    transaction-scoped advisory lock serialises them. Returns the names of the one-time
    migrations applied by this call (current.sql, applied every time, is not listed).
    Runs without statement_timeout: building an index or waiting for another
    migration's lock may take minutes. Raises MigrationRefused when a file refuses the
    data it finds, or when the database applied only some of the files BASELINE
    replaces (then nothing of this call is applied)."""
    applied_now = []
    with connect(database, application_name="migrate", statement_timeout=False) as conn:
        # A migration reports what it did to existing rows with RAISE WARNING (e.g. rows
        # it repaired): the operator running it must see that, not only the server log.
        conn.add_notice_handler(lambda notice: notice.severity_nonlocalized == "WARNING" and log.warning(
            "migration notice", extra={"severity": notice.severity_nonlocalized, "notice": notice.message_primary}))
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["name"] for row in conn.execute("SELECT name FROM schema_migrations")}
            if _baseline_already_built(done):
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (BASELINE,))
                done.add(BASELINE)
                log.info("baseline recorded: this database applied every file it replaces", extra={"baseline": BASELINE})
            pending = [(name, sql) for name, sql in migration_files() if name not in done]
            for name, sql in [*pending, (CURRENT_DEFINITIONS, current_definitions())]:
                try:
                    conn.execute(sql)
                except psycopg.errors.RaiseException as exc:
                    hint = exc.diag.message_hint
                    raise MigrationRefused(f"{name}: {exc.diag.message_primary}" + (f" ({hint})" if hint else "")) from None
                if name != CURRENT_DEFINITIONS:
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                    applied_now.append(name)
    log.info("schema up to date", extra={"applied": applied_now})
    return applied_now
