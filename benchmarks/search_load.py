#!/usr/bin/env python3
"""Search throughput and latency under concurrency: POST /api/search on two frontend
processes side by side on one private local stack, one with query batching and the
query cache on (the defaults), one with both off (--query-embedding.max-batch 1
--query-embedding.cache-size 0: each query embedded alone in its request's thread).

The stack holds the sample catalog (its 9,999 rows by default), loaded by
`pelican backfill` and emu as in benchmarks.backfill; pelican and emu
are stopped before measuring. For each number of concurrent clients (1, 4, 16, 64 by
default) both frontends are measured in turn, the order alternating between rounds,
so drift in the machine's speed falls on both alike. Every query text is sent at most
once to a frontend, so the cache cannot flatter the figures; one more pair of rows
uses a workload where a share of the queries repeat earlier ones (Simon's model:
with probability --repeat-share a query repeats one sent before, picked uniformly, so
popular queries get more popular, a Zipf-like popularity), which is what the cache is
for.

Each client is a thread with its own keep-alive connection, sending the next query as
soon as its previous answer arrives (a closed loop). Figures: completed requests per
second (qps), client-side p50/p95/p99 latency, pooled over the rounds, and the
clients' own CPU per request (they share the machine's cores with the stack). Prints them
with the machine's description and writes JSON (results/search-load.json). It reports;
it asserts nothing about time.

    .venv/bin/python -m benchmarks.search_load                      # about 5 minutes on 2 cores
    .venv/bin/python -m benchmarks.search_load --rows 500 --concurrency 1,16 --requests 100

The same closed loop (load_level) serves `make bench`'s latency figures against one
frontend (search_latency), next to where a search's time goes in process
(search_breakdown).
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable

import httpx

from benchmarks import cli, machine, workload
from benchmarks.backfill import backfill_run
from benchmarks.cli import pct, say
from benchmarks.pipeline import Pipeline, healthy, memory_of
from devstack.stack import free_port
from devstack.waiting import wait_until
from productsearch.products import ROWS_BY_IDS
from productsearch.settings import EmbeddingSettings

# The two configurations measured side by side (frontend instance name -> its options).
CONFIGS = {
    "off": {"query_embedding.max_batch": 1, "query_embedding.cache_size": 0},
    "on": {},  # the defaults: batching and the cache on
}
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


class RepeatingQueries:
    """Simon's model over fresh texts: with probability `share` a query repeats one
    sent before in this workload (uniformly among all sent, so a query's chance grows
    with its count), else it is a text never sent. Deterministic for a seed and a
    sequence of calls; thread-safe."""

    def __init__(self, fresh: Callable[[], str], share: float, seed: int = 5):
        if not 0.0 <= share < 1.0:
            raise ValueError(f"share must be within [0, 1), got {share}")
        self._fresh, self.share = fresh, share
        self._sent: list[str] = []
        self._rnd = random.Random(seed)
        self._lock = threading.Lock()
        self.repeats = 0

    def take(self) -> str:
        with self._lock:
            if self._sent and self._rnd.random() < self.share:
                text = self._rnd.choice(self._sent)
                self.repeats += 1
            else:
                text = self._fresh()
            self._sent.append(text)
            return text


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


def load_level(url: str, clients: int, next_query: Callable[[], str], requests: int, max_seconds: float,
               body: dict | None = None) -> dict:
    """`clients` closed-loop clients (threads, each with a SearchClient) sending POST
    {url}/api/search with next_query()'s texts until `requests` are sent or
    max_seconds have passed. Returns the completed requests, errors (non-200 answers
    and transport errors), wall seconds, qps, p50/p95/p99 latency in ms, this
    process's CPU ms per request (the clients' own cost, on the same cores), and the
    raw latencies in seconds under "_latencies_s"."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds
    extra = body or {}

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
                ok = client.search({"query": query, "top_k": 10, **extra})
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
            "client_cpu_ms_per_request": round(cpu / done * 1000, 2) if done else None,
            "_latencies_s": latencies}


def summary(latencies: list[float], seconds: float) -> dict:
    """qps and p50/p95/p99 (ms, numpy's linear interpolation) of completed requests."""
    if not latencies:
        return {"qps": 0.0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    p50, p95, p99 = (pct(latencies, q) * 1000 for q in (50, 95, 99))
    return {"qps": round(len(latencies) / seconds, 1), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
            "p99_ms": round(p99, 1)}


def pooled(runs: list[dict]) -> dict:
    """One level's figures over its rounds: every latency, total requests over total seconds."""
    latencies = [x for run in runs for x in run["_latencies_s"]]
    seconds = sum(run["seconds"] for run in runs)
    answered = sum(r["requests"] + r["errors"] for r in runs)
    client_cpu = sum((r["client_cpu_ms_per_request"] or 0) * (r["requests"] + r["errors"]) for r in runs)
    return {"clients": runs[0]["clients"], "requests": len(latencies), "errors": sum(r["errors"] for r in runs),
            "seconds": round(seconds, 2), **summary(latencies, seconds),
            "qps_per_round": [r["qps"] for r in runs],
            "client_cpu_ms_per_request": round(client_cpu / answered, 2) if answered else None}


def start_frontends(pipeline: Pipeline, app_env: dict[str, str]) -> dict[str, str]:
    """Starts one frontend per CONFIGS entry on a free port; returns name -> base URL
    once every /healthz answers 200 (the model loaded)."""
    urls = {}
    for name, settings in CONFIGS.items():
        port = free_port()
        pipeline.stack.start_app("frontend", {**app_env, "FRONTEND_PORT": str(port)}, options=settings,
                                 instance=f"frontend-{name}")
        urls[name] = f"http://127.0.0.1:{port}"
    for name, url in urls.items():
        proc = pipeline.stack.processes[f"frontend-{name}"]

        def up(url=url, proc=proc, name=name):
            if proc.poll() is not None:
                raise RuntimeError(f"frontend-{name} exited:\n{pipeline.stack.log_path(f'frontend-{name}').read_text()[-3000:]}")
            return healthy(url)

        wait_until(up, 300, 0.5, what=f"frontend-{name}'s /healthz")
    return urls


def query_models(pipeline: Pipeline) -> dict[str, str | None]:
    """name -> the model each frontend embeds queries with, as its "frontend ready to
    search" log line describes it (runtime and threads, e.g. ONNX Runtime on one thread):
    the machine's description is of this process's torch, which the frontends may not
    use. None where the line is not found."""
    found: dict[str, str | None] = {}
    for name in CONFIGS:
        found[name] = None
        path = pipeline.stack.log_path(f"frontend-{name}")
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("msg") == "frontend ready to search":
                found[name] = entry.get("model")
    return found


def run(*, rows: int | None = None, levels: tuple[int, ...] = DEFAULT_LEVELS, requests: int = 400,
        max_seconds: float = 60.0, rounds: int = 2, repeat_share: float = 0.5, repeat_clients: int = 16,
        mode: str | None = None, app_env: dict[str, str] | None = None, sync_timeout: float = 1800.0,
        log: Callable[[str], None] = say) -> dict:
    """Measures search qps and latency at each number of concurrent clients in `levels`,
    batching+cache on against off, on a private stack holding the first `rows` rows of
    the sample catalog (None: all). Per level and round each configuration gets
    max(requests, 10 x clients) distinct queries (at most max_seconds). The repeat
    workload (share `repeat_share`, `repeat_clients` clients; repeat_share 0 skips it)
    runs after the levels. mode: the API's `mode` field, None to send none (the API's
    default). app_env: settings for all apps (KEY -> value). Returns the figures as a
    dict (see main's output); raises RuntimeError if a frontend fails to start."""
    app_env = dict(app_env or {})
    base = workload.catalog_rows()
    catalog = workload.rows(rows if rows is not None else len(base), base)
    per_level = {c: max(requests, 10 * c) for c in levels}
    body = {"mode": mode} if mode else {}
    needed = rounds * sum(per_level.values()) + (max(requests, 10 * repeat_clients) if repeat_share else 0) + 20
    # Each frontend reads its own sequence of fresh texts, the same one: the same workload
    # for both. Catalog phrases sometimes coincide, so more are drawn than needed.
    streams = {name: UniqueQueries(base, int(needed * 1.4) + 100) for name in CONFIGS}
    if len(streams["on"]) < needed:
        raise RuntimeError(f"only {len(streams['on'])} distinct queries for {needed} requests; ask for fewer")
    started = time.monotonic()
    result: dict = {"measured_at": cli.now_utc(), "rows": len(catalog),
                    "configs": CONFIGS, "app_env": app_env, "mode": mode or "(API default)", "rounds": rounds,
                    "levels": {}}
    pipeline = Pipeline.own(log)
    with pipeline:
        env = pipeline.app_env(app_env)
        device = EmbeddingSettings.from_env(env).device
        if device == "auto":
            import torch  # heavy: torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        result["machine"] = machine.describe(device)
        log(f"loading {len(catalog):,} catalog rows through pelican backfill and emu ...")
        backfill = backfill_run(pipeline, catalog, sync_timeout, app_env)
        backfill.pop("_ids")
        result["load"] = {"rows": backfill["rows"], "seconds": backfill["seconds"], "rows_per_s": backfill["rows_per_s"]}
        pipeline.stop_app("pelican")
        pipeline.stop_app("emu")
        log("starting the frontends (batching+cache on, and off) ...")
        urls = start_frontends(pipeline, app_env)
        result["query_model"] = query_models(pipeline)
        for name, url in urls.items():  # warm-up: connections, allocator, first-request paths
            load_level(url, 2, streams[name].take, 10, 30, body)
        for clients in levels:
            runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
            for r in range(rounds):
                order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
                for name in order:
                    runs[name].append(load_level(urls[name], clients, streams[name].take, per_level[clients],
                                                 max_seconds, body))
            result["levels"][str(clients)] = {name: pooled(runs[name]) for name in CONFIGS}
            row = result["levels"][str(clients)]
            log(f"  {clients:>2} client(s): " + "; ".join(
                f"{name} {row[name]['qps']} qps, p50 {row[name]['p50_ms']} ms, p95 {row[name]['p95_ms']} ms"
                for name in CONFIGS))
        if repeat_share:
            n = max(requests, 10 * repeat_clients)
            runs = {name: [] for name in CONFIGS}
            repeaters = {name: RepeatingQueries(streams[name].take, repeat_share) for name in CONFIGS}
            for r in range(rounds):
                order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
                for name in order:
                    runs[name].append(load_level(urls[name], repeat_clients, repeaters[name].take, n, max_seconds, body))
            sent = sum(run["requests"] + run["errors"] for run in runs["on"])
            result["repeats"] = {"share_asked": repeat_share, "clients": repeat_clients,
                                 "share_sent": round(repeaters["on"].repeats / sent, 3) if sent else None,
                                 **{name: pooled(runs[name]) for name in CONFIGS}}
            rep = result["repeats"]
            log(f"  {repeat_clients:>2} client(s), {rep['share_sent']:.0%} repeated queries: " + "; ".join(
                f"{name} {rep[name]['qps']} qps, p95 {rep[name]['p95_ms']} ms" for name in CONFIGS))
        result["frontend_memory_kib"] = {name: memory_of(pipeline.stack.processes[f"frontend-{name}"].pid)
                                         for name in CONFIGS}
        for name in CONFIGS:
            pipeline.stop_app(f"frontend-{name}")
    result["scaling"] = scaling(result)
    result["duration_s"] = round(time.monotonic() - started, 1)
    return result


def scaling(result: dict) -> dict:
    """How throughput grows from one client to 16: qps at 16 over qps at 1, for "on" and
    "off"; {} unless both levels ran. A ratio, not a goal: the local index server is a
    stand-in, so absolute latencies here say nothing of Pinecone's."""
    levels = result["levels"]
    if "1" not in levels or "16" not in levels:
        return {}

    def ratio(name: str) -> float | None:
        one = levels["1"][name]["qps"]
        return round(levels["16"][name]["qps"] / one, 2) if one else None

    return {"qps_16_over_1": ratio("on"), "qps_16_off_over_1_off": ratio("off")}


def report(result: dict) -> None:
    """Prints run()'s figures as a table, with how throughput scales."""
    say()
    say(f"machine: {machine.one_line(result['machine'])}")
    if result.get("query_model"):
        say("queries embedded by: " + "; ".join(f"{name} {model}" for name, model in result["query_model"].items()))
    say(f"{result['rows']:,} products indexed; POST /api/search top_k 10, mode {result['mode']}; "
        f"{result['rounds']} rounds per level, on and off alternating")
    say(f"{'clients':>7} | {'config':<6} | {'qps':>7} | {'p50 ms':>7} | {'p95 ms':>7} | {'p99 ms':>7} | requests | errors"
        " | client CPU ms/request")
    rows = [(lv, name, figs[name]) for lv, figs in result["levels"].items() for name in CONFIGS]
    if result.get("repeats"):
        rep = result["repeats"]
        rows += [(f"{rep['clients']}*", name, rep[name]) for name in CONFIGS]
    for lv, name, f in rows:
        say(f"{lv:>7} | {name:<6} | {f['qps']:>7} | {f['p50_ms']!s:>7} | {f['p95_ms']!s:>7} | {f['p99_ms']!s:>7} | "
            f"{f['requests']:>8} | {f['errors']:>6} | {f['client_cpu_ms_per_request']}")
    if result.get("repeats"):
        say(f"  * {result['repeats']['share_sent']:.0%} of the queries repeat an earlier one (Simon's model)")
    s = result.get("scaling") or {}
    if s:
        say(f"qps at 16 clients over 1: on {s['qps_16_over_1']}, off {s['qps_16_off_over_1_off']}")
    say(f"duration {result['duration_s']:.0f}s")


def search_latency(url: str, queries: list[str], levels: list[int], per_level: int, max_seconds: float,
                   seed: int = 0) -> dict:
    """POST {url}/api/search (top_k 10) at each number of concurrent clients in
    `levels` (load_level: `per_level` requests, at most max_seconds each), the query
    texts drawn at random from `queries`, after a warm-up on the first ten. Returns
    {"endpoint", "top_k", "sample_query", "sample_top_result", "levels": {clients:
    figures}}."""
    rnd = random.Random(seed)
    lock = threading.Lock()

    def next_query() -> str:
        with lock:
            return rnd.choice(queries)

    with httpx.Client(timeout=30) as client:
        for q in queries[:10]:  # warm-up
            client.post(f"{url}/api/search", json={"query": q, "top_k": 10})
        sample = client.post(f"{url}/api/search", json={"query": queries[0], "top_k": 10}).json()
    out = {"endpoint": f"POST {url}/api/search", "top_k": 10, "sample_query": queries[0],
           "sample_top_result": (sample.get("results") or [{}])[0].get("name"), "levels": {}}
    for clients in levels:
        figures = load_level(url, clients, next_query, per_level, max_seconds)
        figures.pop("_latencies_s")
        out["levels"][str(clients)] = figures
        say(f"    {clients:>2} client(s): {figures}")
    return out


def _embed_one_at_a_time_ms(embedder, queries: list[str]) -> list[float]:
    """Milliseconds each query took to embed alone, in order."""
    times = []
    for q in queries:
        t0 = time.perf_counter()
        embedder.embed([q])
        times.append((time.perf_counter() - t0) * 1000)
    return times


def search_breakdown(pipeline: Pipeline, embedder, queries: list[str], n: int = 100,
                     query_embedder=None) -> dict:
    """Where a search's time goes, in this process, one query at a time: embedding the
    query, the index query (top_k 10, metadata), reading the rows from Postgres; p50
    and p95 in ms per stage over the first n queries. `embedder` is emu's (torch by
    default); its embedding is timed again with one torch thread. `query_embedder`, when
    given, is the frontend's (productsearch.settings.EmbeddingSettings.for_queries),
    and the "embed_ms" stage is its; "embed_ms_emu_runtime" is then `embedder`'s."""
    stages: dict[str, list[float]] = {"embed_ms": [], "index_query_ms": [], "postgres_rows_ms": []}
    frontend_embedder = query_embedder or embedder
    for q in queries[:n]:
        t0 = time.perf_counter()
        vector = frontend_embedder.embed([q])[0]
        t1 = time.perf_counter()
        matches = pipeline.index.query(vector, top_k=10)
        t2 = time.perf_counter()
        pipeline.conn.execute(ROWS_BY_IDS, ([int(m.id) for m in matches],)).fetchall()
        t3 = time.perf_counter()
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2)):
            stages[key].append(value * 1000)
    if query_embedder is not None:
        stages["embed_ms_emu_runtime"] = _embed_one_at_a_time_ms(embedder, queries[:n])
    # The query embedding again with one intra-op thread: on two cores shared with other
    # processes, torch's second thread mostly waits at barriers for a tiny input.
    import torch  # heavy: torch

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _embed_one_at_a_time_ms(embedder, queries[:n])
    finally:
        torch.set_num_threads(threads)
    return {"queries": len(stages["embed_ms"]), "torch_threads": threads,
            "query_runtime": getattr(frontend_embedder, "description", None),
            **{key: {"p50": round(pct(v, 50), 1), "p95": round(pct(v, 95), 1)} for key, v in stages.items()},
            "embed_ms_1_thread": {"p50": round(pct(one, 50), 1), "p95": round(pct(one, 95), 1)}}


def main(argv=None) -> int:
    """Command line: run(), printed and written; returns the exit status."""
    p = cli.parser(__doc__, "search-load.json")
    p.add_argument("--rows", type=int, help="catalog rows to index (default: the whole sample catalog)")
    p.add_argument("--concurrency", default=",".join(map(str, DEFAULT_LEVELS)))
    p.add_argument("--requests", type=int, default=400, help="requests per level, configuration and round "
                   "(at least 10 per client)")
    p.add_argument("--seconds", type=float, default=60.0, help="at most this long per level, configuration and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeat-share", type=float, default=0.5, help="share of repeated queries in the cache row (0: no row)")
    p.add_argument("--repeat-clients", type=int, default=16)
    p.add_argument("--mode", help="the API's search mode field (default: none sent, the API's default)")
    p.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE",
                   help="a variable for every app, e.g. EMBEDDING_RUNTIME=onnx (repeatable)")
    args = p.parse_args(argv)
    result = run(rows=args.rows, levels=tuple(int(s) for s in args.concurrency.split(",") if s.strip()),
                 requests=args.requests, max_seconds=args.seconds, rounds=args.rounds,
                 repeat_share=args.repeat_share, repeat_clients=args.repeat_clients, mode=args.mode,
                 app_env=dict(item.split("=", 1) for item in args.app_env))
    cli.finish(result, args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
