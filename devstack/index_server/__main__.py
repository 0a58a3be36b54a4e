"""Command line of the local index server::

    python -m devstack.index_server --host 127.0.0.1 --port 5081 \\
        --data-dir .local/index --dimension 384 --metric dotproduct [--api-key KEY] \\
        [--latency-ms MS]
"""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn
from threadpoolctl import threadpool_limits

from devstack.costs import MAX_LATENCY_MS
from devstack.index_server.app import create_app
from devstack.index_server.store import METRICS, IndexStore

logger = logging.getLogger("devstack.index_server")

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.index_server",
        description="Local Pinecone-compatible vector index server (REST data plane).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=5081, help="TCP port (default 5081)")
    parser.add_argument("--data-dir", default=".local/index",
                        help="where the vectors are kept across restarts (default .local/index)")
    parser.add_argument("--dimension", type=int, default=384,
                        help="dense vector length; fixed when the data directory is created (default 384)")
    parser.add_argument("--metric", choices=METRICS, default="cosine",
                        help="similarity metric; fixed when the data directory is created (default cosine)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("INDEX_SERVER_API_KEY") or None,
        help="require this value in the Api-Key header (default: $INDEX_SERVER_API_KEY; "
        "unset = no authentication)",
    )
    parser.add_argument("--log-level", default=os.environ.get("INDEX_SERVER_LOG_LEVEL", "info"),
                        help="debug, info, warning or error (default: $INDEX_SERVER_LOG_LEVEL, else info)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="milliseconds added to each API request, as a network to Pinecone would "
                        "(default 0; PUT /_latency changes it at run time)")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads for scoring a query (default 1; 0: BLAS's own default, one per core)",
    )
    return parser


def limit_blas_threads(threads: int) -> threadpool_limits | None:
    """Caps the BLAS libraries loaded in this process (numpy's OpenBLAS) at *threads*
    threads for the rest of its life; 0 leaves BLAS's own default (one per core).
    Returns the limiter (its restore_original_limits() undoes it), or None for 0.

    Why one: a query is one matrix-vector product over every row, memory-bound, so a
    second BLAS thread barely shortens it, while its spin-wait takes CPU from the
    processes sharing the machine: on a 2-core machine one thread roughly halved the
    server's CPU per hybrid query at the same latency."""
    if threads < 0:
        raise ValueError(f"BLAS threads must be >= 0, got {threads}")
    if threads == 0:
        return None
    return threadpool_limits(limits=threads, user_api="blas")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.blas_threads < 0:
        parser.error(f"--blas-threads must be 0 or more, got {args.blas_threads}")
    if not 0 <= args.latency_ms <= MAX_LATENCY_MS:
        parser.error(f"--latency-ms must be from 0 to {MAX_LATENCY_MS:.0f}, got {args.latency_ms}")
    limit_blas_threads(args.blas_threads)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        store = IndexStore(args.data_dir, args.dimension, args.metric)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    app = create_app(store, args.api_key, args.latency_ms)
    logger.info(
        "index server on http://%s:%d dimension=%d metric=%s data_dir=%s auth=%s",
        args.host,
        args.port,
        args.dimension,
        args.metric,
        args.data_dir,
        "on" if args.api_key else "off",
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        access_log=False,
        h11_max_incomplete_event_size=1024 * 1024,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
