"""Soak: a steady mixed write load (inserts, updates, deletes) on the products table
while search clients query the frontend's JSON API. Reports the changes applied,
the sync lag (write committed -> index reflects it), errors, and a final reconcile.

    python -m benchmarks.soak --minutes 3 --writes-per-second 20          # against `make up` (make soak)
    python -m benchmarks.soak --env-file path/to/stack.env --minutes 0.2   # any stack

Writes results/soak.json. It reports; it asserts nothing about time; it exits 1 when a
change never synced, anything errored or the final reconcile found drift.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg

from benchmarks import cli
from benchmarks.pipeline import REPO, read_env_file
from productsearch.documents import indexed_text, text_hash
from productsearch.index import ProductIndex
from productsearch.settings import IndexSettings, text_template_from_env


def percentile(values: list[float], q: float) -> float | None:
    """cli.pct, or None when there are no values (JSON has no NaN)."""
    return cli.pct(values, q) if values else None


class LagTracker:
    """Remembers the newest expected state per product and when it was written;
    a checker thread fetches outstanding ids and records when the index shows it."""

    def __init__(self, index):
        self.index = index
        self.pending: dict[int, tuple[str | None, float]] = {}  # id -> (expected text fingerprint or None for deleted, written_at)
        self.lags: list[float] = []
        self.lock = threading.Lock()
        self.errors = 0

    def expect(self, product_id: int, description: str | None) -> None:
        with self.lock:
            self.pending[product_id] = (description, time.monotonic())

    def check_once(self) -> None:
        with self.lock:
            items = list(self.pending.items())[:200]
        if not items:
            return
        try:
            found = self.index.fetch([str(i) for i, _ in items])
        except Exception:
            self.errors += 1
            return
        now = time.monotonic()
        with self.lock:
            for product_id, (expected, written_at) in items:
                if self.pending.get(product_id, (None, -1))[1] != written_at:
                    continue  # superseded by a newer write meanwhile
                vector = found.get(str(product_id))
                seen = vector is None if expected is None else (vector is not None and (vector.metadata or {}).get("text_hash") == expected)
                if seen:
                    self.lags.append(now - written_at)
                    del self.pending[product_id]


def run_soak(env: dict[str, str], minutes: float, writes_per_second: float, search_clients: int, seed: int = 1) -> dict:
    """Writes at `writes_per_second` (30% inserts, 55% updates, 15% deletes) for
    `minutes` to the stack of `env` (a stack.env's settings) while `search_clients`
    threads search its frontend, waits up to 300 s for every change to reach the index,
    then runs `pelican reconcile`. Returns the counts, the sync lag's p50/p95/max in
    seconds, the errors and reconcile's last line."""
    rng = random.Random(seed)
    template = text_template_from_env(env)
    index = ProductIndex(IndexSettings.from_env(env), attempts=3)
    tracker = LagTracker(index)
    stop = threading.Event()
    counts = {"inserts": 0, "updates": 0, "deletes": 0, "searches": 0, "write_errors": 0, "search_errors": 0}

    def searcher() -> None:
        words = ["wireless", "controller", "system", "device", "secure", "cloud", "analytics", "portable"]
        while not stop.is_set():
            body = json.dumps({"query": " ".join(rng.sample(words, 2)), "top_k": 10}).encode()
            request = urllib.request.Request(env["FRONTEND_URL"].rstrip("/") + "/api/search", data=body,
                                             headers={"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    json.loads(response.read())
                counts["searches"] += 1
            except Exception:
                counts["search_errors"] += 1
                time.sleep(0.2)

    def checker() -> None:
        while not stop.is_set():
            tracker.check_once()
            time.sleep(0.1)

    threads = [threading.Thread(target=searcher, daemon=True) for _ in range(search_clients)]
    threads.append(threading.Thread(target=checker, daemon=True))
    for t in threads:
        t.start()

    live: list[int] = []
    started = time.monotonic()
    deadline = started + minutes * 60
    interval = 1.0 / writes_per_second
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        live = [r[0] for r in conn.execute("SELECT id FROM products ORDER BY random() LIMIT 1000").fetchall()]
        n = 0
        while time.monotonic() < deadline:
            n += 1
            roll = rng.random()
            try:
                if roll < 0.3 or not live:
                    description = f"soak insert {n} {rng.random():.6f}"
                    pid = conn.execute("INSERT INTO products (name, sku, description, price, category) VALUES (%s, %s, %s, %s, 'soak') RETURNING id",
                                       (f"Soak Item {n}", f"SOAK-{seed}-{n}-{time.time_ns()}", description, rng.randint(100, 1000))).fetchone()[0]
                    live.append(pid)
                    counts["inserts"] += 1
                    tracker.expect(pid, text_hash(indexed_text({"name": f"Soak Item {n}", "description": description}, template)))
                elif roll < 0.85:
                    pid = rng.choice(live)
                    description = f"soak update {n} {rng.random():.6f}"
                    updated = conn.execute("UPDATE products SET description = %s WHERE id = %s RETURNING name",
                                           (description, pid)).fetchone()
                    if updated:
                        counts["updates"] += 1
                        tracker.expect(pid, text_hash(indexed_text({"name": updated[0], "description": description}, template)))
                else:
                    pid = live.pop(rng.randrange(len(live)))
                    if conn.execute("DELETE FROM products WHERE id = %s", (pid,)).rowcount:
                        counts["deletes"] += 1
                        tracker.expect(pid, None)
            except Exception:
                counts["write_errors"] += 1
            time.sleep(max(0.0, started + n * interval - time.monotonic()))

    drain_deadline = time.monotonic() + 300
    while tracker.pending and time.monotonic() < drain_deadline:
        time.sleep(0.5)
    stop.set()
    elapsed = time.monotonic() - started
    reconcile = subprocess.run([sys.executable, "-m", "pelican", "reconcile"], env={**os.environ, **env},
                               capture_output=True, text=True, timeout=1800)
    last_line = (reconcile.stdout.strip().splitlines() or ["reconcile printed nothing"])[-1]
    return {
        "minutes": minutes,
        "target_writes_per_second": writes_per_second,
        "changes_applied": counts["inserts"] + counts["updates"] + counts["deletes"],
        **counts,
        "never_synced": len(tracker.pending),
        "lag_seconds": {"p50": percentile(tracker.lags, 50), "p95": percentile(tracker.lags, 95), "max": max(tracker.lags, default=None)},
        "errors": counts["write_errors"] + counts["search_errors"] + tracker.errors + len(tracker.pending),
        "reconcile": last_line,
        "elapsed_seconds": round(elapsed, 1),
    }


def report(result: dict) -> None:
    """Prints the changes applied, the sync lag, the errors and the final reconcile."""
    lag = result["lag_seconds"]

    def fmt(v):
        return "n/a" if v is None else f"{v:.2f}s"

    cli.say(f"changes applied {result['changes_applied']} ({result['inserts']} inserts, {result['updates']} updates, "
            f"{result['deletes']} deletes) in {result['elapsed_seconds']}s; searches {result['searches']}")
    cli.say(f"sync lag p50 {fmt(lag['p50'])} p95 {fmt(lag['p95'])} max {fmt(lag['max'])}; errors {result['errors']}; "
            f"never synced {result['never_synced']}")
    cli.say(f"final reconcile: {result['reconcile']}")


def main(argv: list[str] | None = None) -> int:
    """Command line: run_soak() against the stack of --env-file; returns 2 when there is no
    such file, 1 when anything failed to sync or errored, else 0."""
    parser = cli.parser(__doc__, "soak.json", output_aliases=("--out",))
    parser.add_argument("--env-file", type=Path, default=REPO / ".local" / "stack.env")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--writes-per-second", type=float, default=20.0)
    parser.add_argument("--search-clients", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.env_file.exists():
        print(f"{args.env_file} not found: start the stack with `make up` first", file=sys.stderr)
        return 2
    result = run_soak(read_env_file(args.env_file), args.minutes, args.writes_per_second, args.search_clients)
    cli.finish(result, args.output, report)
    return 0 if result["errors"] == 0 and result["reconcile"] == "missing=0 stale=0 orphaned=0" else 1


if __name__ == "__main__":
    sys.exit(main())
