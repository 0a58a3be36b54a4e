"""`pelican migrate-index`: move search to a new index without downtime
(docs/index-migration.md).

The next index (PINECONE_NEXT_HOST, data/'s pineconeNextIndexName) is built by the
normal pipeline while the frontends keep serving from the old one. It may speak
another API than the old one (PINECONE_NEXT_INDEX_API): moving a legacy vector index
to a document index takes the same steps:

1. check: both indexes answer, the next one's dimension is EMBEDDING_DIMENSION and,
   for a legacy vector index, its metric is dotproduct (a document index scores
   keywords by full-text search, so any metric serves), the dead-letter queue is empty;
2. backfill: every row is captured (pelican.backfill, resumable), so pelican ships it
   and emu, which writes every batch to both indexes, embeds it into the next one;
3. wait, with a progress bar, until the next index equals the table (pelican.reconcile's
   comparison: no row missing or stale, no orphaned vector), stopping before any switch
   if a change is dead-lettered, the pipeline goes idle with the index still behind,
   or the timeout passes;
4. switch: the serving_index row names the next host (productsearch.index_set);
5. wait until the frontends serve from it: each --frontend-url's /healthz says
   "index": "next", or, without one, the frontends' refresh interval and a margin;
6. print how to retire the old index.

Runs as the administrator (the operator task): it writes backfill_progress and
serving_index, which no app role may.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pinecone import Pinecone
from tqdm import tqdm

from pelican.backfill import backfill
from pelican.reconcile import ReconcileReport, reconcile
from productsearch import aws, db
from productsearch.index import ProductIndex
from productsearch.logs import brief
from productsearch.index_set import SERVING_REFRESH_SECONDS, SWITCH_MARGIN_SECONDS, read_serving_host, write_serving_host
from productsearch.settings import DatabaseSettings, IndexSettings, QueueSettings

log = logging.getLogger(__name__)

HYBRID_METRIC = "dotproduct"
# Readings in a row with nothing left to ship or embed and the next index still not
# equal to the table before the command gives up: Pinecone's reads are eventually
# consistent, so one such reading right after a write proves nothing.
IDLE_READINGS = 3


class MigrationError(RuntimeError):
    """The migration cannot go on as things stand; the message says why and what to do.
    Nothing has been switched when it is raised."""


@dataclass(frozen=True)
class Agreement:
    """One comparison of the next index with the table."""

    report: ReconcileReport
    changes_pending: int
    queue: dict[str, int]
    dead_letters: dict[str, int]

    @property
    def agreeing_rows(self) -> int:
        return self.report.rows - len(self.report.missing) - len(self.report.stale)

    @property
    def idle(self) -> bool:
        """Nothing captured, queued or being embedded: no write to the index is on its way."""
        return self.changes_pending == 0 and self.queue["visible"] + self.queue["in_flight"] == 0

    def figures(self) -> str:
        r = self.report
        return (f"{self.agreeing_rows}/{r.rows} rows agree (missing={len(r.missing)} stale={len(r.stale)} "
                f"orphaned={len(r.orphaned)}); {self.changes_pending} changes not yet shipped, "
                f"{self.queue['visible'] + self.queue['in_flight']} messages in the jobs queue")


def _depth(depth: dict[str, int]) -> int:
    return depth["visible"] + depth["in_flight"]


def migrate_index(database: DatabaseSettings, index: IndexSettings, queues: QueueSettings, *,
                  assume_yes: bool = False, timeout_s: float = 6 * 3600, skip_backfill: bool = False,
                  frontend_urls: Sequence[str] = (), poll_seconds: float = 10.0, chunk_size: int = 1000,
                  progress: bool = True, say: Callable[[str], None] = print,
                  confirm: Callable[[str], str] = input) -> None:
    """Runs the phases in the module docstring. `timeout_s` bounds phase 3 (building);
    `poll_seconds` is the pause between two comparisons. Raises MigrationError (before
    the switch, so nothing has changed for the frontends) when a check fails, the
    operator declines, a change is dead-lettered, the pipeline stalls or the time runs
    out; re-running resumes (an unfinished backfill continues; --skip-backfill goes
    straight to waiting)."""
    if index.next_host is None:
        raise MigrationError("PINECONE_NEXT_HOST is not set: set data's pineconeNextIndexName, run `pulumi up` in "
                             "data/ and then compute/ (docs/index-migration.md), and run this again")
    primary, nxt = index.for_host(index.host), index.for_host(index.next_host)
    sqs = aws.sqs_client(queues)
    if queues.dead_letter_queue_url is None:
        raise MigrationError("SQS_DLQ_URL is not set: the migration must watch the dead-letter queue")

    # -- 1. check ------------------------------------------------------------------------
    with db.connect(database, application_name="migrate-index") as conn:
        serving = read_serving_host(conn)
        conn.commit()
    if serving == nxt.host:
        say("The frontends already serve from the next index (the serving_index row names it).")
        _wait_for_frontends(frontend_urls, timeout_s, say)
        say(retirement_steps(index.name, nxt.api if nxt.api != primary.api else None))
        return
    if serving is not None and serving != primary.host:
        raise MigrationError("the serving_index row names a host that is neither PINECONE_HOST nor PINECONE_NEXT_HOST "
                             f"({serving}); the frontends serve PINECONE_HOST meanwhile. Check the apps' configuration "
                             "against data's exports before migrating")
    _check_reachable("serving (PINECONE_HOST)", primary)
    metric, dimension = _describe(nxt)
    if nxt.api == "documents":
        pass  # full-text search needs no sparse vectors, so any metric serves
    elif metric is None:
        say(f"The next index does not report its metric; data/ creates it as {HYBRID_METRIC} (pineconeNextIndexName).")
    elif metric != HYBRID_METRIC:
        raise MigrationError(f"the next index's metric is {metric}, not {HYBRID_METRIC} (hybrid search needs "
                             f"{HYBRID_METRIC}): PINECONE_NEXT_HOST must be the index data/ exports as "
                             "pineconeNextIndexHost")
    if dimension is not None and dimension != nxt.dimension:
        raise MigrationError(f"the next index's dimension is {dimension}, but the model's (EMBEDDING_DIMENSION) is "
                             f"{nxt.dimension}")
    dead = aws.queue_depth(sqs, queues.dead_letter_queue_url)
    if _depth(dead):
        raise MigrationError(f"{_depth(dead)} messages are in the dead-letter queue: those changes reach neither index. "
                             "Fix their cause and run `pelican redrive` first")
    say(f"Serving index: {primary.host} ({primary.api} API)\n"
        f"Next index:    {nxt.host} ({nxt.api} API, metric {metric or 'not reported'})\n"
        "Plan: backfill every row through the pipeline (emu writes both indexes), wait until the next index equals "
        "the table, switch the frontends to it.")
    if not assume_yes:
        try:
            answer = confirm("Proceed? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise MigrationError("not confirmed (pass --yes to run without asking)")

    # -- 2. backfill -----------------------------------------------------------------------
    if skip_backfill:
        say("Skipping the backfill (--skip-backfill): waiting for the next index as it stands.")
    else:
        with db.connect(database, application_name="migrate-index") as conn:
            captured = backfill(conn, chunk_size=chunk_size, progress=progress)
        say(f"Backfill captured {captured} products; pelican ships them and emu writes both indexes.")

    # -- 3. wait until the next index equals the table -------------------------------------
    _wait_until_equal(database, nxt, queues, sqs, timeout_s=timeout_s, poll_seconds=poll_seconds,
                      progress=progress, say=say)

    # -- 4. switch --------------------------------------------------------------------------
    with db.connect(database, application_name="migrate-index") as conn:
        write_serving_host(conn, nxt.host)
    log.info("serving index switched", extra={"host": nxt.host})
    say(f"Switched: the serving_index row names {nxt.host}.")

    # -- 5. wait for the frontends; 6. retirement ------------------------------------------
    _wait_for_frontends(frontend_urls, timeout_s, say)
    say(retirement_steps(index.name, nxt.api if nxt.api != primary.api else None))


def _check_reachable(what: str, settings: IndexSettings) -> None:
    try:
        ProductIndex(settings, attempts=3).count()
    except Exception as exc:
        raise MigrationError(f"cannot reach the {what} index at {settings.host}: {type(exc).__name__}: "
                             f"{brief(exc)}") from exc


def _describe(settings: IndexSettings) -> tuple[str | None, int | None]:
    """The index's (metric, dimension) from describe_index_stats (Pinecone reports both;
    so does the local index server), None where it reports nothing."""
    try:
        stats = Pinecone(api_key=settings.api_key.get_secret_value()).Index(host=settings.host).describe_index_stats()
    except Exception as exc:
        raise MigrationError(f"cannot reach the next (PINECONE_NEXT_HOST) index at {settings.host}: "
                             f"{type(exc).__name__}: {brief(exc)}") from exc
    return getattr(stats, "metric", None), getattr(stats, "dimension", None)


def compare(database: DatabaseSettings, nxt: IndexSettings, queues: QueueSettings, sqs) -> Agreement:
    """One full comparison of the next index with the table (pelican.reconcile), and
    what the pipeline still holds."""
    report = reconcile(database, nxt, progress=False)
    with db.connect(database, application_name="migrate-index") as conn:
        pending = conn.execute("SELECT count(*) AS n FROM product_changes").fetchone()["n"]
    return Agreement(report, pending, aws.queue_depth(sqs, queues.jobs_queue_url),
                     aws.queue_depth(sqs, queues.dead_letter_queue_url))


def _wait_until_equal(database: DatabaseSettings, nxt: IndexSettings, queues: QueueSettings, sqs, *,
                      timeout_s: float, poll_seconds: float, progress: bool, say: Callable[[str], None]) -> Agreement:
    deadline = time.monotonic() + timeout_s
    bar = tqdm(total=0, unit="rows", desc="next index agrees", disable=not progress, file=sys.stderr)
    idle_readings = 0
    last = ""
    try:
        while True:
            try:
                now = compare(database, nxt, queues, sqs)
            except Exception as exc:
                raise MigrationError(f"cannot compare the next index with the table: {type(exc).__name__}: "
                                     f"{brief(exc)}. Nothing was switched; run again with --skip-backfill") from exc
            if progress:
                bar.total, bar.n = now.report.rows, now.agreeing_rows
                bar.set_postfix(orphaned=len(now.report.orphaned), unshipped=now.changes_pending,
                                queued=_depth(now.queue), refresh=False)
                bar.refresh()
            elif now.figures() != last:
                # No terminal (the operator task's log): a line per change instead of a bar.
                say(f"next index: {now.figures()}")
            last = now.figures()
            if now.report.clean:
                bar.close()
                say(f"The next index equals the table: {now.figures()}.")
                return now
            if _depth(now.dead_letters):
                raise MigrationError(
                    f"{_depth(now.dead_letters)} messages reached the dead-letter queue while building: the next "
                    f"index cannot equal the table. Stopped before switching; {now.figures()}. Fix the cause (emu's "
                    "log says why), run `pelican redrive`, then run this again with --skip-backfill")
            idle_readings = idle_readings + 1 if now.idle else 0
            if idle_readings >= IDLE_READINGS:
                raise MigrationError(
                    f"the pipeline is idle but the next index still differs from the table ({now.figures()}). "
                    "Is emu deployed with PINECONE_NEXT_HOST (`pulumi up` in compute/ after data/)? Stopped before "
                    "switching; once emu writes both indexes, run this again (a new backfill)")
            if time.monotonic() >= deadline:
                raise MigrationError(
                    f"timed out after {timeout_s:.0f} s: {now.figures()}. Stopped before switching; is pelican "
                    "running? Run this again with --skip-backfill to keep waiting")
            time.sleep(poll_seconds)
    finally:
        bar.close()


def _wait_for_frontends(urls: Sequence[str], timeout_s: float, say: Callable[[str], None]) -> None:
    if not urls:
        wait = SERVING_REFRESH_SECONDS + SWITCH_MARGIN_SECONDS
        say(f"Waiting {wait:.0f} s: each frontend re-reads the serving_index row every {SERVING_REFRESH_SECONDS:.0f} s "
            "(its /healthz shows \"index\": \"next\" once it serves from the next index).")
        time.sleep(wait)
        return
    deadline = time.monotonic() + max(timeout_s, SERVING_REFRESH_SECONDS + SWITCH_MARGIN_SECONDS)
    waiting = list(urls)
    while waiting:
        waiting = [url for url in waiting if _serving_label(url) != "next"]
        if not waiting:
            break
        if time.monotonic() >= deadline:
            raise MigrationError(f"switched, but these frontends do not say they serve from the next index: "
                                 f"{', '.join(waiting)} (their /healthz \"index\" part says why)")
        time.sleep(1.0)
    say(f"Every frontend given serves from the next index: {', '.join(urls)}.")


def _serving_label(url: str) -> str | None:
    """The "index" part of a frontend's /healthz, or None when it cannot be read."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=5) as response:
            return json.load(response).get("index")
    except urllib.error.HTTPError as exc:  # 503 while loading still carries the parts
        try:
            return json.load(exc).get("index")
        except (ValueError, OSError):
            return None
    except (OSError, ValueError):
        return None


def retirement_steps(old_name: str, new_api: str | None = None) -> str:
    """What the operator does next (docs/index-migration.md, "Retire the old index");
    old_name is the old index's (PINECONE_INDEX, data's pineconeIndexName export);
    new_api: the next index's API when it differs from the old one's (data's
    pineconeIndexApi then changes with the name)."""
    api_steps = (f"\n  pulumi config set pineconeIndexApi {new_api}\n  pulumi config rm pineconeNextIndexApi"
                 if new_api else "")
    return f"""
The frontends serve from the next index; emu keeps writing both, so either can serve
until you retire the old one (docs/index-migration.md, "Retire the old index"):

  cd data
  pulumi config set pineconeRetiringIndexName {old_name}
  pulumi config set pineconeIndexName "$(pulumi config get pineconeNextIndexName)"
  pulumi config rm pineconeNextIndexName{api_steps}
  pulumi up                 # nothing is created or replaced; PINECONE_HOST becomes the new index
  cd ../compute && pulumi up    # the apps stop using the old index
  cd ../data
  pulumi config rm pineconeRetiringIndexName
  pulumi up                 # deletes the old index

The serving_index row keeps naming the new host, which is then PINECONE_HOST: nothing
else to change."""
