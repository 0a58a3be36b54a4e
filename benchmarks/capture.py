#!/usr/bin/env python3
"""What change capture costs writers, and how fast pelican still ships.

On a private PostgreSQL server (and moto's SQS for the freshness part), one database
per capture variant, each with the same 10,000 products:

  old        001-004: row triggers, pg_notify in every capturing transaction
  after      001-008: 005's AFTER row triggers without any NOTIFY (pelican polls),
             008's outbox without its unused product_id index
  new        all migrations (009: an UPDATE is captured by the BEFORE row trigger that
             stamps its version)
  statement  the alternative measured against new: all migrations, then
             STATEMENT_LEVEL_SQL below replaces the row capture triggers with statement
             triggers reading transition tables (one INSERT ... SELECT per statement),
             no NOTIFY either; updates are stamped as in `none`
  none       all migrations with the capture triggers disabled, and STAMP_UPDATES_SQL
             stamping an update's version as 009's capture trigger does, without the
             change row (the version stamp and updated_at triggers run as in new)

and measures, in interleaved rounds (the variant order rotates every round):
  writers: pgbench, `clients` clients each updating one random product's price per
      transaction for `duration_s` seconds; tps and its share of the same round's
      `none`; a drainer claims and deletes change rows as pelican does (without SQS),
      polling every 50 ms when it finds none, so the outbox empties as it does under a
      pelican that keeps up; notifications sent per second;
  bulk: one `UPDATE products SET price = price + 1` of all rows, committed, in ms,
      the change rows it captured and the rows whose version it raised;
  freshness: the real pelican (`python -m pelican run`) against `new` (polling only,
      the default idle poll of 0.5 s) and, as the reference, `old` (a NOTIFY per
      transaction wakes pelican; idle poll 5 s, the default before 005); one product
      updated about every `freshness_spacing` seconds; the time from the UPDATE's
      commit until pelican has shipped it (its change row is gone: pelican deletes it
      in the transaction that follows SQS accepting the message); p50/p95/p99; and an
      idle pelican's claims per second (counted in the server's statement log).

`run()` returns the figures as a dict; `main()` prints them with the machine's
description. Timings are reported, never asserted.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from benchmarks import cli, machine
from benchmarks.cli import pct, say
from devstack.postgres import pg_bindir
from devstack.stack import DevStack, free_port
from devstack.waiting import wait_until
from productsearch import db

VARIANTS = ("old", "after", "new", "statement", "none")
# What the freshness part runs pelican against, and the idle poll it runs with: new
# relies on polling alone, so its idle poll (the default, 0.5 s) bounds an isolated
# change's wait; old's NOTIFY per transaction wakes pelican, which polled every 5 s.
FRESHNESS_DESIGNS = {"new": 0.5, "old": 5.0}
# What a schema without capture keeps of 009's products_capture_update: an update that
# changes an indexed column still gets a new version.
STAMP_UPDATES_SQL = """
CREATE OR REPLACE FUNCTION products_stamp_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := greatest(NEW.version, product_next_version(OLD.version));
    RETURN NEW;
END;
$$;
CREATE TRIGGER products_stamp_update BEFORE UPDATE ON products FOR EACH ROW
    WHEN ((OLD.id, OLD.name, OLD.sku, OLD.description, OLD.price, OLD.category)
          IS DISTINCT FROM (NEW.id, NEW.name, NEW.sku, NEW.description, NEW.price, NEW.category))
    EXECUTE FUNCTION products_stamp_update();
"""
# The statement-level design measured against 005's row triggers (an earlier, unreleased
# 005, without its NOTIFY): one trigger per event reading the statement's transition
# tables, rows paired by id; the same guarantees as the row triggers.
STATEMENT_LEVEL_SQL = """
DROP TRIGGER IF EXISTS products_capture_insert_delete ON products;
DROP TRIGGER IF EXISTS products_capture_update ON products;
CREATE OR REPLACE FUNCTION products_capture_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO product_changes (product_id, operation, version)
        SELECT id, 'insert', version FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO product_changes (product_id, operation, version)
        SELECT id, 'delete', product_next_version(version) FROM old_rows;
    ELSE
        INSERT INTO product_changes (product_id, operation, version)
        SELECT coalesce(n.id, o.id),
               CASE WHEN n.id IS NULL THEN 'delete' WHEN o.id IS NULL THEN 'insert' ELSE 'update' END,
               CASE WHEN n.id IS NULL THEN product_next_version(o.version) ELSE n.version END
        FROM old_rows o FULL JOIN new_rows n ON n.id = o.id
        WHERE o.id IS NULL OR n.id IS NULL
           OR (o.name, o.sku, o.description, o.price, o.category)
              IS DISTINCT FROM (n.name, n.sku, n.description, n.price, n.category);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER products_capture_insert AFTER INSERT ON products
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION products_capture_rows();
CREATE TRIGGER products_capture_update AFTER UPDATE ON products
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION products_capture_rows();
CREATE TRIGGER products_capture_delete AFTER DELETE ON products
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION products_capture_rows();
"""
DRAIN_IDLE_S = 0.05  # the drainer's wait on an empty outbox, pelican's default busy poll
PGBENCH_SCRIPT = """\\set id random(1, {products})
\\set cents random(100, 99999)
UPDATE products SET price = :cents / 100.0 WHERE id = :id;
"""


# -- variants ------------------------------------------------------------------------------
def variant_sql(name: str) -> list[str]:
    """The SQL that builds a variant's schema, in order."""
    files = db.migration_files()
    every = [sql for _, sql in files]
    if name == "old":
        return [sql for fname, sql in files if fname < "005"]
    if name == "after":
        return [sql for fname, sql in files if fname < "009"]
    if name == "new":
        return every
    if name == "statement":
        return every + [STAMP_UPDATES_SQL, STATEMENT_LEVEL_SQL]
    if name == "none":
        return every + [STAMP_UPDATES_SQL, """DO $$ DECLARE t text; BEGIN
            FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = 'products'::regclass
                     AND NOT tgisinternal AND tgname LIKE 'products_capture%' LOOP
                EXECUTE format('ALTER TABLE products DISABLE TRIGGER %I', t);
            END LOOP; END $$"""]
    raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")


class Server:
    """A private PostgreSQL server (devstack's DevStack) with moto for SQS."""

    def __init__(self, log=say):
        self.root = Path(tempfile.mkdtemp(prefix="productsearch-capture-"))
        if os.geteuid() == 0:
            os.chmod(self.root, 0o755)  # PostgreSQL runs as the postgres user when we are root
        self.stack = DevStack(root=self.root, pg_port=free_port(), aws_port=free_port(), index_port=free_port(),
                                frontend_port=free_port())
        log(f"starting PostgreSQL and moto under {self.root} ...")
        try:
            self.stack.root.mkdir(parents=True, exist_ok=True)
            self.stack.start_postgres()
            self.stack.start_aws()
        except BaseException:
            self.close()
            raise

    def url(self, database: str) -> str:
        return self.stack.database_url.replace("/products?", f"/{database}?")

    def close(self) -> None:
        self.stack.stop_all()
        shutil.rmtree(self.root, ignore_errors=True)


def create_variant(server: Server, name: str, products: int) -> str:
    """Creates database cap_<name> with the variant's schema and `products` rows (ids
    1..products); returns its URL."""
    database = f"cap_{name}"
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.execute(f"CREATE DATABASE {database}")
    url = server.url(database)
    with psycopg.connect(url) as conn:
        for sql in variant_sql(name):
            conn.execute(sql)
        conn.execute("""INSERT INTO products (name, sku, description, price, category)
                        SELECT 'product ' || g, 'SKU-' || g, 'description of product ' || g, 10 + g %% 900, 'gadget'
                        FROM generate_series(1, %s) g""", (products,))
        conn.execute("TRUNCATE product_changes")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE products")
        conn.execute("VACUUM ANALYZE product_changes")
    return url


def reset_outbox(url: str) -> None:
    """Empties the outbox (product_changes) of the database at `url`."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE product_changes")
        conn.execute("VACUUM ANALYZE products")
        conn.execute("CHECKPOINT")


# -- writers: pgbench ---------------------------------------------------------------------
class Drainer(threading.Thread):
    """Claims and deletes change rows as pelican does (FOR UPDATE SKIP LOCKED, in id
    order, up to 1000 a transaction), without SQS; waits DRAIN_IDLE_S on an empty
    outbox. Also counts the notifications on product_changes."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.drained = 0
        self.notifications = 0
        self._listener = threading.Thread(target=self._listen, daemon=True)

    def _listen(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("LISTEN product_changes")
            while not self.stop.is_set():
                self.notifications += sum(1 for _ in conn.notifies(timeout=0.2))

    def run(self) -> None:
        self._listener.start()
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                with conn.transaction():
                    n = conn.execute("""DELETE FROM product_changes WHERE id IN (
                        SELECT id FROM product_changes ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)""").rowcount
                self.drained += n
                if n == 0:
                    self.stop.wait(DRAIN_IDLE_S)
        self._listener.join()


def pgbench(server: Server, url: str, script: Path, clients: int, duration_s: float) -> float:
    """Runs pgbench against a variant's database; returns tps (without connection time)."""
    database = url.split("/")[-1].split("?")[0]
    env = {**os.environ, "PGPASSWORD": "products-local"}
    cmd = [str(pg_bindir() / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(server.stack.pg_port), "-U", "products",
           "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)), "-T", str(int(duration_s)),
           "-f", str(script), database]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s + 120)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{done.stderr[-2000:]}")
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    if not match:
        raise RuntimeError(f"no tps in pgbench's output:\n{done.stdout[-2000:]}")
    return float(match.group(1))


def writers(server: Server, urls: dict[str, str], clients: int, products: int, duration_s: float, rounds: int,
            log=say) -> dict:
    """The pgbench part (see the module docstring): tps per variant over interleaved rounds,
    with a drainer emptying the outbox; raises RuntimeError when pgbench fails."""
    script = server.root / "update_price.sql"
    script.write_text(PGBENCH_SCRIPT.format(products=products))
    names = list(urls)
    per_round: list[dict[str, dict]] = []
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        this: dict[str, dict] = {}
        for name in order:
            reset_outbox(urls[name])
            drainer = Drainer(urls[name])
            drainer.start()
            tps = pgbench(server, urls[name], script, clients, duration_s)
            drainer.stop.set()
            drainer.join()
            this[name] = {"tps": tps, "notifications_per_s": round(drainer.notifications / duration_s, 1),
                          "changes_drained": drainer.drained}
            log(f"    round {r + 1}/{rounds} {name:10} {tps:9.0f} tps, {this[name]['notifications_per_s']} notifications/s")
        per_round.append(this)
    out = {}
    for name in names:
        tps = [rnd[name]["tps"] for rnd in per_round]
        share = [rnd[name]["tps"] / rnd["none"]["tps"] for rnd in per_round] if "none" in names else []
        out[name] = {"tps_median": round(statistics.median(tps), 1), "tps": [round(t, 1) for t in tps],
                     "share_of_none_median": round(statistics.median(share), 3) if share else None,
                     "share_of_none_range": [round(min(share), 3), round(max(share), 3)] if share else None,
                     "notifications_per_s_median": statistics.median(rnd[name]["notifications_per_s"] for rnd in per_round)}
    return {"clients": clients, "products": products, "duration_s": duration_s, "rounds": rounds,
            "transaction": "UPDATE products SET price = <random> WHERE id = <random id>", "variants": out}


# -- bulk ---------------------------------------------------------------------------------
def bulk(urls: dict[str, str], rounds: int, log=say) -> dict:
    """One UPDATE of every row, committed, per variant and round (interleaved). Also
    counts, per variant, the rows whose version the UPDATE raised: every row in each
    variant, `none` included, or it is not a fair baseline."""
    names = list(urls)
    times: dict[str, list[float]] = {n: [] for n in names}
    captured: dict[str, int] = {}
    stamped: dict[str, int] = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            reset_outbox(urls[name])
            with psycopg.connect(urls[name]) as conn:
                newest = conn.execute("SELECT max(version) FROM products").fetchone()[0]
                conn.commit()
                t0 = time.perf_counter()
                rows = conn.execute("UPDATE products SET price = price + 1").rowcount
                conn.commit()
                times[name].append((time.perf_counter() - t0) * 1000)
                captured[name] = conn.execute("SELECT count(*) FROM product_changes").fetchone()[0]
                stamped[name] = conn.execute("SELECT count(*) FROM products WHERE version > %s", (newest,)).fetchone()[0]
                conn.commit()
            log(f"    round {r + 1}/{rounds} {name:10} {times[name][-1]:8.1f} ms for {rows:,} rows, "
                f"{captured[name]:,} changes captured")
    base = statistics.median(times["none"]) if "none" in times else None
    return {"rows": rows, "statement": "UPDATE products SET price = price + 1", "rounds": rounds,
            "variants": {n: {"ms_median": round(statistics.median(t), 1), "ms": [round(x, 1) for x in t],
                             "over_none": round(statistics.median(t) / base, 2) if base else None,
                             "changes_captured": captured[n], "versions_raised": stamped[n]} for n, t in times.items()}}


# -- freshness ----------------------------------------------------------------------------
def freshness(server: Server, url: str, name: str, idle_poll_s: float, samples: int, spacing_s: float,
              idle_window_s: float, products: int, seed: int = 7, log=say) -> dict:
    """Starts pelican against one variant's database and times commit -> shipped for
    `samples` single-row updates about spacing_s apart; then pelican's claims per
    second over idle_window_s with nothing to do."""
    reset_outbox(url)
    database = url.split("/")[-1].split("?")[0]
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {database} SET log_statement = 'all'")  # for new sessions
    instance = f"pelican-{name}"
    log_path = server.stack.log_path(instance)
    log_path.unlink(missing_ok=True)
    server.stack.start_app("pelican", {"DATABASE_URL": url}, options={"poll_interval_seconds": idle_poll_s},
                           instance=instance)
    rnd = random.Random(seed)
    latencies = []
    try:
        wait_until(lambda: log_path.exists() and "pelican started" in log_path.read_text(), 60, what="pelican started")
        time.sleep(1.0)
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(samples):
                pid = rnd.randint(1, products)
                t0 = time.monotonic()
                conn.execute("UPDATE products SET description = %s WHERE id = %s", (f"revision {i} {rnd.random()}", pid))
                while conn.execute("SELECT 1 FROM product_changes WHERE product_id = %s", (pid,)).fetchone():
                    if time.monotonic() - t0 > 60:
                        raise TimeoutError(f"pelican did not ship product {pid}'s change within 60s:\n"
                                           f"{log_path.read_text()[-2000:]}")
                    time.sleep(0.002)
                latencies.append(time.monotonic() - t0)
                time.sleep(rnd.uniform(0.5 * spacing_s, 1.5 * spacing_s))
            # Let the backoff reach the idle poll, then count pelican's claims between two
            # markers in the server's statement log (log_statement = 'all' for this database;
            # pg_stat_database's counters are flushed too lazily for a short window).
            time.sleep(min(4 * idle_poll_s, 15.0) + 1.0)
            conn.execute("SELECT 'capture-bench idle window starts'")
            time.sleep(idle_window_s)
            conn.execute("SELECT 'capture-bench idle window ends'")
            time.sleep(0.5)
            text = server.stack.log_path("postgres").read_text(errors="replace")
            window = text[text.rindex("capture-bench idle window starts"):text.rindex("capture-bench idle window ends")]
            idle_rate = window.count("FOR UPDATE SKIP LOCKED") / idle_window_s
    finally:
        server.stack.stop(instance)
    log(f"    {name}: p50 {pct(latencies, 50):.3f}s p95 {pct(latencies, 95):.3f}s p99 {pct(latencies, 99):.3f}s "
        f"max {max(latencies):.3f}s; idle: {idle_rate:.2f} claims/s")
    return {"samples": len(latencies), "idle_poll_s": idle_poll_s,
            "p50_s": round(pct(latencies, 50), 3), "p95_s": round(pct(latencies, 95), 3),
            "p99_s": round(pct(latencies, 99), 3), "max_s": round(max(latencies), 3),
            "idle_claims_per_s": round(idle_rate, 2), "idle_window_s": idle_window_s}


# -- the whole run --------------------------------------------------------------------------
def run(duration_s: float = 10.0, rounds: int = 5, clients: int = 32, products: int = 10_000, bulk_rounds: int = 3,
        freshness_samples: int = 30, freshness_spacing_s: float = 1.0, idle_window_s: float = 20.0,
        variants: tuple[str, ...] = VARIANTS, log=say) -> dict:
    """Measures every variant (see the module docstring) and returns
    {"machine", "writers", "bulk", "freshness", "duration_s"}. Raises RuntimeError when
    PostgreSQL or pgbench fails. Takes about len(variants) * rounds * (duration_s + 5) s
    plus the freshness runs (samples * spacing_s + idle_window_s + ~20 s per design)."""
    started = time.monotonic()
    result: dict = {"machine": machine.describe(), "measured_at": cli.now_utc()}
    server = Server(log)
    try:
        log(f"creating {len(variants)} databases of {products:,} products ...")
        urls = {name: create_variant(server, name, products) for name in variants}
        log(f"writers: {clients} clients, {duration_s:.0f}s per pgbench round, {rounds} interleaved rounds ...")
        result["writers"] = writers(server, urls, clients, products, duration_s, rounds, log)
        log(f"bulk: one UPDATE of {products:,} rows, {bulk_rounds} interleaved rounds ...")
        result["bulk"] = bulk(urls, bulk_rounds, log)
        result["freshness"] = {}
        for name, idle_poll_s in FRESHNESS_DESIGNS.items():
            if name in urls and freshness_samples > 0:
                log(f"freshness with {name}: {freshness_samples} updates about {freshness_spacing_s}s apart, "
                    f"idle poll {idle_poll_s}s ...")
                result["freshness"][name] = freshness(server, urls[name], name, idle_poll_s, freshness_samples,
                                                      freshness_spacing_s, idle_window_s, products, log=log)
    finally:
        server.close()
    result["duration_s"] = round(time.monotonic() - started, 1)
    return result


def report(r: dict, log=say) -> None:
    """Prints run()'s figures with `log`."""
    log()
    log(f"machine: {machine.one_line(r['machine'])}")
    w = r["writers"]
    log(f"writers: pgbench, {w['clients']} clients, single-row price updates on {w['products']:,} products, "
        f"{w['rounds']} x {w['duration_s']:.0f}s interleaved rounds, drainer running")
    log(f"  {'variant':10} {'tps':>9} {'of none':>8} {'rounds':>11} {'notify/s':>9}")
    for name, v in w["variants"].items():
        share = f"{v['share_of_none_median']:.2f}" if v["share_of_none_median"] is not None else "-"
        spread = v.get("share_of_none_range")
        spread = f"{spread[0]:.2f}-{spread[1]:.2f}" if spread else "-"
        log(f"  {name:10} {v['tps_median']:9.0f} {share:>8} {spread:>11} {v['notifications_per_s_median']:9.1f}")
    b = r["bulk"]
    log(f"bulk: {b['statement']} ({b['rows']:,} rows), median of {b['rounds']}")
    for name, v in b["variants"].items():
        over = f"x{v['over_none']:.2f}" if v["over_none"] is not None else "-"
        log(f"  {name:10} {v['ms_median']:9.1f} ms {over:>7}  {v['changes_captured']:,} changes")
    for name, f in r.get("freshness", {}).items():
        log(f"freshness ({name}, idle poll {f['idle_poll_s']}s, {f['samples']} updates, commit -> shipped): "
            f"p50 {f['p50_s']:.3f}s p95 {f['p95_s']:.3f}s p99 {f['p99_s']:.3f}s max {f['max_s']:.3f}s; "
            f"idle pelican {f['idle_claims_per_s']:.2f} claims/s")
    log(f"duration {r['duration_s']:.0f}s")


def main(argv=None) -> int:
    """Command line: every variant, printed (and written with --output); returns the exit status."""
    p = cli.parser(__doc__, None)
    # Five short rounds rather than three long ones: on a shared 2-core machine a round's
    # share of `none` has swung from 0.54 to 0.89, and the median of five steadies it more.
    p.add_argument("--duration", type=float, default=10.0, help="seconds per pgbench round (default 10)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved pgbench rounds (default 5)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--products", type=int, default=10_000)
    p.add_argument("--bulk-rounds", type=int, default=3)
    p.add_argument("--freshness-samples", type=int, default=30)
    p.add_argument("--freshness-spacing", type=float, default=1.0, help="mean seconds between freshness updates")
    p.add_argument("--idle-window", type=float, default=20.0, help="seconds over which pelican's idle rate is counted")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    args = p.parse_args(argv)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    for v in variants:
        variant_sql(v)  # an unknown name fails before anything starts
    result = run(args.duration, args.rounds, args.clients, args.products, args.bulk_rounds, args.freshness_samples,
                 args.freshness_spacing, args.idle_window, variants)
    cli.finish(result, args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
