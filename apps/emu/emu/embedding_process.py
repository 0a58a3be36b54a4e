"""The model in a process of its own, driven over a pipe: texts in, vectors out.

emu's receiver and writer threads run Python (boto3, the Pinecone SDK) while the
model runs. In one process they share the GIL with the thread that drives the model
(torch or ONNX Runtime, EMBEDDING_RUNTIME), and every moment they hold it stalls the
model on all its cores. Measured on the 2-core machine of docs/benchmarks.md: a
Python thread busy 10% of one core cost the model 15% of its throughput; the same
load in another process cost 7%. So emu's own work stays in its main process and the
model gets a process with nothing else in it. With ONNX Runtime that process never
imports torch: a first-use export runs in a short-lived process of its own
(productsearch.onnx_export), so its memory is returned before emu starts work.

The child ignores SIGINT and SIGTERM: the worker decides when to stop (it finishes
the batch in hand first) and closes the pipe, which ends the child. If the worker
dies outright, the pipe closes too and the child exits. If the child dies (the
kernel's OOM killer, a crash in native code), the worker starts a new one (restart).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Sequence

import numpy as np

from productsearch import logs
from productsearch.settings import EmbeddingSettings

log = logging.getLogger(__name__)


class EmbeddingFailed(RuntimeError):
    """The model process could not embed a batch, or is gone."""


class EmbeddingProcess:
    """Same interface as productsearch.embedding.Embedder (embed, description, device)."""

    def __init__(self, settings: EmbeddingSettings, start_timeout_s: float = 600.0):
        """start_timeout_s covers loading the model, and on a first local start without
        a cached ONNX export, exporting it (under a minute on 2 cores when idle)."""
        self.settings, self.start_timeout_s = settings, start_timeout_s
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited threads or locks; CUDA-safe
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.settings, child_end), name="emu-embedding",
                                        daemon=True)
        self._process.start()
        child_end.close()
        if not self._conn.poll(self.start_timeout_s):
            self.close()
            raise EmbeddingFailed(f"the embedding process did not load the model within {self.start_timeout_s:.0f}s")
        kind, *payload = self._recv()
        if kind != "ready":
            self.close()
            raise EmbeddingFailed(f"the embedding process could not load the model: {payload[0]}")
        self.description, self.device = payload

    def restart(self) -> None:
        """Ends the model's process if it still runs and starts a new one, which loads
        the model again. Raises EmbeddingFailed when the new one cannot load it."""
        self.close()
        self._start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def alive(self) -> bool:
        """False once the model's process has exited: emu cannot embed any more."""
        return self._process.is_alive()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.settings.dimension), dtype=np.float32)
        try:
            self._conn.send(list(texts))
        except (BrokenPipeError, OSError) as exc:
            raise EmbeddingFailed(f"the embedding process is gone (exit code {self._process.exitcode})") from exc
        kind, payload = self._recv()
        if kind != "vectors":
            raise EmbeddingFailed(payload)
        return payload

    def _recv(self) -> tuple:
        try:
            return self._conn.recv()
        except EOFError as exc:
            self._process.join(timeout=5)
            raise EmbeddingFailed(f"the embedding process is gone (exit code {self._process.exitcode})") from exc

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._conn.close()
        self._process.join(timeout=timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)


def _serve(settings: EmbeddingSettings, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from productsearch.embedding import Embedder  # only in the child process: the parent never loads a model

    logs.configure("emu")
    try:
        embedder = Embedder(settings)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", embedder.description, str(embedder.device)))
    while True:
        try:
            texts = conn.recv()
        except EOFError:
            return
        if texts is None:
            return
        try:
            reply = ("vectors", embedder.embed(texts))
        except Exception as exc:
            log.exception("embedding failed")
            reply = ("error", f"embedding failed: {type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return
