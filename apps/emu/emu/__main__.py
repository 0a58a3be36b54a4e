"""emu's command line: `python -m emu run` (the worker) or `python -m emu check` (load the model and exit)."""

from __future__ import annotations

import argparse
import sys
import threading

from emu.embedding_process import EmbeddingFailed, EmbeddingProcess
from productsearch import logs
from emu.config import EmuSettings
from productsearch.settings import ConfigError, EmbeddingSettings, IndexSettings, QueueSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emu")
    parser.add_argument("command", choices=["run", "check"])
    tuning = EmuSettings.add_options(parser)
    args = parser.parse_args(argv)
    try:
        logs.configure("emu")
        embedding = EmbeddingSettings.from_env()
        # `check` only loads the model (e.g. to verify an image), so it needs no queue or index.
        queues = settings = index_settings = None
        if args.command == "run":
            queues = QueueSettings.from_env(need_dlq=True)
            settings = EmuSettings.from_env(options=tuning, args=args)
            index_settings = IndexSettings.from_env()
    except ConfigError as exc:
        print(f"emu: configuration error: {exc}", file=sys.stderr)
        return 2
    # only in the parent: the spawn start method re-runs this module in the embedding
    # child process, where the worker, index and AWS clients (~36 MB) are never used.
    from emu.worker import Emu
    from productsearch import aws
    from productsearch.index import ProductIndex
    from productsearch.index_set import writer_for

    try:
        embedder = EmbeddingProcess(embedding)
    except EmbeddingFailed as exc:
        print(f"emu: {exc}", file=sys.stderr)
        return 3
    if args.command == "check":
        print(embedder.description)
        embedder.close()
        return 0

    stopping = threading.Event()
    # After SIGTERM a failing index call is not retried: its messages go back to the
    # queue at once instead of outlasting the grace period in backoff. With
    # PINECONE_NEXT_HOST set (an index migration) every batch is written to both indexes.
    index = writer_for(index_settings, lambda one: ProductIndex(
        one, attempts=settings.max_index_attempts, timeout_s=settings.index_timeout_seconds,
        should_stop=stopping.is_set, requests_in_flight=settings.index_requests_in_flight))
    worker = Emu(queues, embedding, settings, index, embedder, aws.sqs_client(queues), aws.sns_client(queues),
                 stopping=stopping)
    worker.install_signal_handlers()
    try:
        worker.run()
    finally:
        embedder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
