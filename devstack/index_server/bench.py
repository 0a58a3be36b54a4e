"""Measure query latency of the local index server at a realistic size.

    python -m devstack.index_server.bench [--vectors 50000] [--dimension 384]

Fills a temporary index (in process, through :class:`IndexStore`, so it is also
persisted to SQLite), times queries with and without metadata filters directly
against the store, then starts the real server on that data directory and times
the same queries end to end through the official ``pinecone`` SDK.
Prints a small table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from pinecone import Pinecone

from devstack.index_server.filters import compile_filter
from devstack.index_server.store import IndexStore

FILTERS: dict[str, dict | None] = {
    "no filter": None,
    "genre == g3 (10%)": {"genre": "g3"},
    "year >= 2015 and in_stock (~22%)": {"year": {"$gte": 2015}, "in_stock": True},
    "$or(tags $in 2 of 20, price < 20) (~30%)": {
        "$or": [{"tags": {"$in": ["t1", "t2"]}}, {"price": {"$lt": 20}}]
    },
    "sku == one id (1 row)": {"sku": "sku-00042"},
}


def make_data(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n, dim), dtype=np.float32)
    metas = []
    for i in range(n):
        metas.append(
            {
                "genre": f"g{i % 10}",
                "year": int(1990 + rng.integers(0, 35)),
                "price": float(round(rng.uniform(1, 200), 2)),
                "in_stock": bool(rng.random() < 0.5),
                "tags": [f"t{int(t)}" for t in rng.choice(20, size=2, replace=False)],
                "sku": f"sku-{i:05d}",
            }
        )
    return values, metas


def timed(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=50_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "index")
        values, metas = make_data(args.vectors, args.dimension)
        store = IndexStore(data_dir, args.dimension, "cosine")
        started = time.perf_counter()
        for start in range(0, args.vectors, 1000):
            stop = start + 1000
            store.upsert("bench", [m["sku"] for m in metas[start:stop]], values[start:stop],
                         metas[start:stop])
        print(f"upserted {args.vectors} x {args.dimension} in "
              f"{time.perf_counter() - started:.1f}s (in process, incl. SQLite)")

        rng = np.random.default_rng(1)
        queries = rng.standard_normal((args.repeat, args.dimension), dtype=np.float32)
        print(f"\nin-process store.query, top_k={args.top_k}, median / p95 over {args.repeat}:")
        for label, raw in FILTERS.items():
            node = compile_filter(raw)
            cold_started = time.perf_counter()
            store.query("bench", queries[0], args.top_k, node, False, True)
            cold = (time.perf_counter() - cold_started) * 1000
            it = iter(range(10**9))
            median, p95 = timed(
                lambda node=node, it=it: store.query(
                    "bench", queries[next(it) % args.repeat], args.top_k, node, False, True
                ),
                args.repeat,
            )
            print(f"  {label:42s} {median:6.2f} ms / {p95:6.2f} ms   (first call {cold:.1f} ms)")
        store.close()

        port = free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.index_server", "--port", str(port), "--data-dir",
             data_dir, "--dimension", str(args.dimension), "--log-level", "warning"],
            env=env,
        )
        try:
            started = time.perf_counter()
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
                if time.perf_counter() - started > 120:
                    raise RuntimeError("server did not start")
            print(f"\nserver restart loaded {args.vectors} vectors in "
                  f"{time.perf_counter() - started:.1f}s")
            index = Pinecone(api_key="bench").Index(host=f"http://127.0.0.1:{port}")
            print(f"end to end through the pinecone SDK (HTTP, JSON), top_k={args.top_k}:")
            for label, raw in FILTERS.items():
                q = queries[0].tolist()
                index.query(vector=q, top_k=args.top_k, namespace="bench", filter=raw,
                            include_metadata=True)
                median, p95 = timed(
                    lambda raw=raw, q=q: index.query(vector=q, top_k=args.top_k, namespace="bench",
                                                     filter=raw, include_metadata=True),
                    args.repeat,
                )
                print(f"  {label:42s} {median:6.2f} ms / {p95:6.2f} ms")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
