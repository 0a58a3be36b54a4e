#!/usr/bin/env python3
"""Search throughput and latency under concurrency, `make bench`'s search figures:
POST /api/search (top_k 10, the API's default mode) on the frontend with its deployed
defaults (query batching and the query cache on), on a private local stack holding N
catalog rows loaded by `pelican backfill` and emu (benchmarks.backfill); pelican and
emu are stopped before measuring.

At each number of concurrent clients (1, 4, 16, 64 by default) the clients run a
closed loop: each is a thread with its own keep-alive connection, sending the next
query as soon as its previous answer arrives. Every query text is sent once, so the
cache cannot flatter the figures. Figures: completed requests per second (qps),
client-side p50/p95/p99 latency, errors, and the clients' own CPU per request (they
share the machine's cores with the stack); then where one search's time goes in this
process (search_breakdown: embedding the query, the index query, reading the rows).

    .venv/bin/python -m benchmarks.search_load [--rows 10000] [--concurrency 1,16] [--requests 100]

Prints the figures with the machine's description and writes
results/search-load.json. It reports; it asserts nothing about time.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable

from benchmarks import cli, machine, workload
from benchmarks.backfill import backfill_run
from benchmarks.cli import pct, say
from benchmarks.pipeline import Pipeline, healthy, memory_of
from devstack.waiting import wait_until
from productsearch.embedding import Embedder
from productsearch.products import ROWS_BY_IDS
from productsearch.settings import EmbeddingSettings

DEFAULT_LEVELS = (1, 4, 16, 64)


class UniqueQueries:
    """Shopper-style catalog queries (benchmarks.workload.queries), each text at most once;
    thread-safe. RuntimeError when the pool runs out."""

    def __init__(self, base: list[dict], n: int, seed: int = 21):
        seen: set[str] = set()
        self._texts = [q for q in workload.queries(n, base, seed) if not (q in seen or seen.add(q))]
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._texts)

    def take(self) -> str:
        with self._lock:
            if self._next >= len(self._texts):
                raise RuntimeError(f"all {len(self._texts)} distinct queries are used up; ask for fewer requests")
            self._next += 1
            return self._texts[self._next - 1]


class SearchClient:
    """One keep-alive HTTP/1.1 connection to a frontend, for POST /api/search.

    The clients run on the same cores as the system they measure, so they must cost
    little: the standard library's http.client spends about an eighth of the CPU per
    request that httpx's Client did, CPU the frontend and the index server then lacked.
    Each level's figures carry this process's cost ("client_cpu_ms_per_request"). A
    connection that fails is reopened on the next request."""

    def __init__(self, url: str, timeout: float = 60.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http:// base URL, got {url!r}")
        self._host, self._port, self._timeout = parts.hostname, parts.port or 80, timeout
        self._conn: http.client.HTTPConnection | None = None

    def search(self, body: dict) -> bool:
        """Sends one search; True when the answer is a 200 with a "results" list.
        Transport errors and malformed answers are False, never raised."""
        payload = json.dumps(body).encode()
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._conn.request("POST", "/api/search", payload, {"Content-Type": "application/json"})
            response = self._conn.getresponse()
            data = response.read()
            if response.status != 200:
                return False
            return isinstance(json.loads(data).get("results"), list)
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            self.close()
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def load_level(url: str, clients: int, next_query: Callable[[], str], requests: int, max_seconds: float) -> dict:
    """`clients` closed-loop clients (threads, each with a SearchClient) sending POST
    {url}/api/search (top_k 10) with next_query()'s texts until `requests` are sent or
    max_seconds have passed. Returns the completed requests, errors (non-200 answers
    and transport errors), wall seconds, qps, p50/p95/p99 latency in ms and this
    process's CPU ms per request (the clients' own cost, on the same cores)."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds

    def client_loop():
        nonlocal errors, sent
        client = SearchClient(url)
        try:
            while time.monotonic() < stop_at:
                with lock:
                    if sent >= requests:
                        return
                    sent += 1
                query = next_query()
                t = time.perf_counter()
                ok = client.search({"query": query, "top_k": 10})
                elapsed = time.perf_counter() - t
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors += 1
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, name=f"client-{c}") for c in range(clients)]
    cpu_before = time.process_time()
    started = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    done = len(latencies) + errors
    return {"clients": clients, "requests": len(latencies), "errors": errors, "seconds": round(wall, 2),
            **summary(latencies, wall),
            "client_cpu_ms_per_request": round(cpu / done * 1000, 2) if done else None}


def summary(latencies: list[float], seconds: float) -> dict:
    """qps and p50/p95/p99 (ms, numpy's linear interpolation) of completed requests."""
    if not latencies:
        return {"qps": 0.0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    p50, p95, p99 = (pct(latencies, q) * 1000 for q in (50, 95, 99))
    return {"qps": round(len(latencies) / seconds, 1), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
            "p99_ms": round(p99, 1)}


def search_latency(url: str, base: list[dict], levels: list[int], per_level: int, max_seconds: float) -> dict:
    """load_level against the frontend at `url` at each number of clients in `levels`
    (per_level requests, at most max_seconds each), after a warm-up of ten requests; query
    texts are UniqueQueries over the catalog rows `base`. Returns {"endpoint", "top_k",
    "levels": {clients: figures}}. RuntimeError when the catalog yields too few distinct
    queries for the requests asked."""
    needed = per_level * len(levels) + 10
    # Catalog phrases sometimes coincide, so more are drawn than needed.
    pool = UniqueQueries(base, int(needed * 1.4) + 100)
    if len(pool) < needed:
        raise RuntimeError(f"only {len(pool)} distinct queries for {needed} requests; ask for fewer")
    load_level(url, 2, pool.take, 10, 30)  # warm-up: connections, allocator, first-request paths
    out: dict = {"endpoint": f"POST {url}/api/search", "top_k": 10, "levels": {}}
    for clients in levels:
        figures = load_level(url, clients, pool.take, per_level, max_seconds)
        out["levels"][str(clients)] = figures
        say(f"    {clients:>2} client(s): {figures}")
    return out


def search_breakdown(pipeline: Pipeline, embedder, queries: list[str], n: int = 100) -> dict:
    """Where a search's time goes, in this process, one query at a time: embedding the
    query with `embedder` (give it the frontend's query runtime,
    productsearch.settings.EmbeddingSettings.for_queries), the index query (top_k 10, metadata),
    reading the rows from Postgres; p50 and p95 in ms per stage over the first n queries."""
    stages: dict[str, list[float]] = {"embed_ms": [], "index_query_ms": [], "postgres_rows_ms": []}
    for q in queries[:n]:
        t0 = time.perf_counter()
        vector = embedder.embed([q])[0]
        t1 = time.perf_counter()
        matches = pipeline.index.search_dense(vector, top_k=10)
        t2 = time.perf_counter()
        pipeline.conn.execute(ROWS_BY_IDS, ([int(m.id) for m in matches],)).fetchall()
        t3 = time.perf_counter()
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2)):
            stages[key].append(value * 1000)
    return {"queries": len(stages["embed_ms"]), "query_runtime": getattr(embedder, "description", None),
            **{key: {"p50": round(pct(v, 50), 1), "p95": round(pct(v, 95), 1)} for key, v in stages.items()}}


def measure(pipeline: Pipeline, base: list[dict], app_env: dict[str, str], levels: list[int], requests: int,
            max_seconds: float) -> dict:
    """Starts the frontend on `pipeline` with `app_env` over its defaults, waits for its
    /healthz (300 s at most, else TimeoutError), runs search_latency and stops it; then
    search_breakdown. Returns the latency figures with "frontend_memory_kib" and
    "breakdown"."""
    pipeline.start_app("frontend", app_env)
    url = pipeline.env["FRONTEND_URL"]
    try:
        wait_until(lambda: healthy(url), 300, 0.5, what="the frontend's /healthz")
        result = search_latency(url, base, levels, requests, max_seconds)
        result["frontend_memory_kib"] = memory_of(pipeline.stack.processes["frontend"].pid)
    finally:
        pipeline.stop_app("frontend")
    query_embedder = Embedder(EmbeddingSettings.for_queries(pipeline.app_env(app_env)))
    result["breakdown"] = search_breakdown(pipeline, query_embedder, workload.queries(200, base))
    say(f"    search path in process, per stage: {result['breakdown']}")
    return result


def report(r: dict) -> None:
    """Prints measure()'s figures, one line per level and one for the stages."""
    for lv in r["levels"].values():
        say(f"search, {lv['clients']:>2} client(s)         p50 {lv['p50_ms']} ms  p95 {lv['p95_ms']} ms  "
            f"p99 {lv['p99_ms']} ms  {lv['qps']} QPS  ({lv['requests']} requests, {lv['errors']} errors)")
    b = r.get("breakdown")
    if b:
        say(f"search stages (in process)    embed p50 {b['embed_ms']['p50']} ms ({b['query_runtime']}), index query "
            f"p50 {b['index_query_ms']['p50']} ms, Postgres rows p50 {b['postgres_rows_ms']['p50']} ms")


def main(argv=None) -> int:
    """Command line: backfill --rows, then measure(); returns the exit status."""
    p = cli.parser(__doc__, "search-load.json", rows=10000, app_env=True)
    p.add_argument("--concurrency", default=",".join(map(str, DEFAULT_LEVELS)))
    p.add_argument("--requests", type=int, default=400, help="requests per level (each text new)")
    p.add_argument("--seconds", type=float, default=60.0, help="at most this long per level")
    args = p.parse_args(argv)
    extra = dict(args.app_env)
    base = workload.catalog_rows()
    with Pipeline.own(say) as pipeline:
        say(f"loading {args.rows:,} rows through pelican backfill and emu ...")
        backfill_run(pipeline, workload.rows(args.rows, base), args.sync_timeout, extra)
        pipeline.stop_app("pelican")
        pipeline.stop_app("emu")
        result = measure(pipeline, base, extra, [int(s) for s in args.concurrency.split(",") if s.strip()],
                         args.requests, args.seconds)
    result.update(rows=args.rows, app_env=extra, measured_at=cli.now_utc())
    cli.finish(result, args.output, lambda r: (say(f"machine: {machine.one_line(r['machine'])}"), report(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
