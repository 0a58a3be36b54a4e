"""emu's model process: the same vectors as the model in process, and a child that
outlives neither a close nor its worker, and does not stop on SIGTERM by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from devstack.waiting import wait_until
from emu.embedding_process import EmbeddingProcess
from productsearch.settings import EmbeddingSettings

TEXTS = ["Pro System A monetize user-centric markets product.", "Lite Device with zero-defect success features.", "x"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is gone for our purpose
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_vectors_match_the_in_process_model_and_sigterm_leaves_the_child_to_its_worker(embedder):
    process = EmbeddingProcess(EmbeddingSettings.from_env({}))
    child = process.pid
    try:
        assert process.description == embedder.description
        vectors = process.embed(TEXTS)
        assert vectors.shape == (3, embedder.settings.dimension) and vectors.dtype == np.float32
        np.testing.assert_allclose(vectors, embedder.embed(TEXTS), atol=1e-5)
        assert process.embed([]).shape == (0, embedder.settings.dimension)

        os.kill(child, signal.SIGTERM)  # what a container stop sends the whole group
        np.testing.assert_allclose(process.embed(TEXTS[:1]), vectors[:1], atol=1e-5)
    finally:
        process.close()
    assert not alive(child)


@pytest.mark.timeout(300)
def test_child_exits_when_its_worker_is_killed():
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; from emu.embedding_process import EmbeddingProcess; "
                               "from productsearch.settings import EmbeddingSettings; "
                               "p = EmbeddingProcess(EmbeddingSettings.from_env({})); print(p.pid, flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        child = int(worker.stdout.readline())
        assert alive(child)
        worker.kill()  # SIGKILL to the worker alone, not its group
        worker.wait()
        wait_until(lambda: not alive(child), 30, what="the model process to exit after its worker died")
    finally:
        worker.kill()
