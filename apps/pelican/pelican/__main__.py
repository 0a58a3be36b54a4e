"""pelican's command line: the service and the database-side operator commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pelican.backfill import backfill
from pelican.config import PelicanSettings
from pelican.migrate_index import MigrationError, migrate_index
from pelican.reconcile import reconcile
from pelican.redrive import redrive
from pelican.service import Pelican
from productsearch import db, lexical, logs, migrations
from productsearch.catalog import CatalogError, load_catalog
from productsearch.roles import RoleError, grant_roles
from productsearch.settings import (AppRoleSettings, ConfigError, DatabaseSettings, DatabaseTimeouts, IndexSettings, QueueSettings,
                                    text_template_from_env)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1, in ASCII digits."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:  # noqa: C901 (one branch per subcommand)
    parser = argparse.ArgumentParser(prog="pelican", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="ship captured changes to the jobs queue until SIGTERM")
    tuning = PelicanSettings.add_options(run)
    sub.add_parser("migrate", help="apply the schema (idempotent, safe to run concurrently)")
    sub.add_parser("grant-roles", help="as the administrator, after migrate: create the apps' database roles from "
                                       "PELICAN_DATABASE_SECRET_ARN and FRONTEND_DATABASE_SECRET_ARN and grant "
                                       "each only what it needs (idempotent)")
    load = sub.add_parser("load-catalog", help="import a product CSV, reporting bad rows; SKUs already loaded are kept")
    load.add_argument("path", type=Path)
    load.add_argument("--update-existing", action="store_true",
                      help="overwrite products whose SKU is already in the table (default: keep them, and any edits)")
    back = sub.add_parser("backfill", help="capture every existing product so it is (re)indexed; resumes after a crash")
    back.add_argument("--restart", action="store_true", help="start over instead of resuming an unfinished backfill")
    back.add_argument("--chunk-size", type=positive_int, default=1000)
    rec = sub.add_parser("reconcile", help="compare the table with the index; --repair re-captures the drift")
    rec.add_argument("--repair", action="store_true")
    rec.add_argument("--page-size", type=positive_int, default=500)
    sub.add_parser("redrive", help="re-capture the products named in the dead-letter queue, then remove those messages")
    mig = sub.add_parser("migrate-index", help="build the next index (PINECONE_NEXT_HOST) through the pipeline, then "
                                               "switch the frontends to it without downtime (docs/index-migration.md)")
    mig.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    mig.add_argument("--timeout", type=positive_seconds, default=6 * 3600,
                     help="seconds to wait for the next index to equal the table (default 21600); nothing is switched "
                          "if it does not")
    mig.add_argument("--skip-backfill", action="store_true",
                     help="do not capture every row again (an earlier run's backfill finished); only wait and switch")
    mig.add_argument("--frontend-url", action="append", default=[],
                     help="a frontend whose /healthz to poll after the switch until it serves from the next index "
                          "(repeatable); without one, wait the frontends' refresh interval")
    mig.add_argument("--poll-seconds", type=positive_seconds, default=10.0, help="pause between two comparisons (default 10)")
    refit = sub.add_parser("refit-lexical", help="as the administrator: refit the keyword-search statistics (document "
                                                 "count, average length, each term's document frequency) from the "
                                                 "products table, with INDEXED_TEXT_TEMPLATE; searches use them at once")
    refit.add_argument("--k1", type=float, default=None, help="BM25 k1 (default 1.5)")
    refit.add_argument("--b", type=float, default=None, help="BM25 b, length normalisation 0..1 (default 0.75)")
    args = parser.parse_args(argv)

    try:
        logs.configure("pelican")
        settings = PelicanSettings.from_env(options=tuning, args=args) if args.command == "run" else None
        database = DatabaseSettings.from_env(timeouts=settings.database if settings else DatabaseTimeouts())
        if settings is not None:
            service = Pelican(database, QueueSettings.from_env(), settings)
            service.install_signal_handlers()
            service.run()
        elif args.command == "migrate":
            try:
                applied = migrations.migrate(database)
            except migrations.MigrationRefused as exc:
                print(f"pelican: migrate: {exc}; nothing was applied", file=sys.stderr)
                return 1
            print(f"schema migrated (applied now: {', '.join(applied)})" if applied
                  else "schema up to date (nothing to apply)")
        elif args.command == "grant-roles":
            try:
                granted = grant_roles(database, AppRoleSettings.from_env())
            except (RoleError, db.SecretUnavailable) as exc:
                print(f"pelican: grant-roles: {exc}", file=sys.stderr)
                return 1
            print(f"database roles granted: {', '.join(granted)}")
        elif args.command == "load-catalog":
            if not args.path.is_file():
                print(f"pelican: catalog file {args.path} not found", file=sys.stderr)
                return 2
            try:
                with db.connect(database) as conn:
                    report = load_catalog(conn, args.path, update_existing=args.update_existing)
            except CatalogError as exc:
                print(f"pelican: load-catalog: {args.path}: {exc}", file=sys.stderr)
                return 2
            for line, reason in report.skipped:
                print(f"{args.path}:{line}: skipped: {reason}", file=sys.stderr)
            print(report.summary())
        elif args.command == "backfill":
            with db.connect(database) as conn:
                n = backfill(conn, chunk_size=args.chunk_size, restart=args.restart, progress=sys.stderr.isatty() or True)
            print(f"backfill captured {n} products; the pelican service ships them")
        elif args.command == "reconcile":
            report = reconcile(database, IndexSettings.from_env(), repair=args.repair, page_size=args.page_size)
            print("\n".join(report.report_lines()))
            return 0 if report.clean or args.repair else 1
        elif args.command == "migrate-index":
            try:
                migrate_index(database, IndexSettings.from_env(), QueueSettings.from_env(need_dlq=True),
                              assume_yes=args.yes, timeout_s=args.timeout, skip_backfill=args.skip_backfill,
                              frontend_urls=args.frontend_url, poll_seconds=args.poll_seconds,
                              progress=sys.stderr.isatty())
            except MigrationError as exc:
                print(f"pelican: migrate-index: {exc}", file=sys.stderr)
                return 1
        elif args.command == "redrive":
            n = redrive(database, QueueSettings.from_env(need_dlq=True))
            print(f"redrive re-captured {n} products from the dead-letter queue")
        elif args.command == "refit-lexical":
            # The template alone: EmbeddingSettings would want the model on disk.
            template = text_template_from_env()
            k1 = lexical.DEFAULT_K1 if args.k1 is None else args.k1
            b = lexical.DEFAULT_B if args.b is None else args.b
            if not (0 < k1 < float("inf") and 0 <= b <= 1):
                print(f"pelican: refit-lexical: k1 must be a finite number above 0 and b within 0..1 (got k1={k1}, b={b})", file=sys.stderr)
                return 2
            with db.connect(database, application_name="refit-lexical", statement_timeout=False) as conn:
                fit = lexical.refit(conn, template, k1=k1, b=b)
            print(f"lexical statistics refitted: {fit.documents} products, {fit.terms} terms, "
                  f"average length {fit.average_length:.1f} terms")
    except ConfigError as exc:
        print(f"pelican: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
