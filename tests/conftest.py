"""Shared fixtures. System tests run against real local parts started once per
session: a PostgreSQL server, moto's SQS/SNS server and the index server, each on a
free loopback port under a temporary directory (never the developer's `make up`
stack). Apps are started per test as real subprocesses, so tests can stop, kill
and restart them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def pytest_collection_modifyitems(items):
    """Moves the modules with a test marked `slow` to the front, whole, keeping the order
    otherwise. pytest-xdist (`-n 2 --dist loadscope`: one module at a time per worker) hands
    modules out in this order, so the minutes-long ones start first and the short ones
    fill in around them instead of one worker finishing a long test alone at the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session")
def stack():
    from devstack.stack import DevStack, free_port
    from devstack.up import prepare_query_model

    # Not under pytest's tmp_path: pytest keeps that tree private to the user (0700),
    # and when CI runs as root PostgreSQL runs as the postgres user and must reach it.
    root = Path(tempfile.mkdtemp(prefix="productsearch-stack-"))
    os.chmod(root, 0o755)
    s = DevStack(root=root, pg_port=free_port(), aws_port=free_port(), index_port=free_port(), frontend_port=free_port())
    s.start_infrastructure()
    for key, value in s.env().items():
        os.environ[key] = value
    # The frontend embeds queries with ONNX Runtime (frontend.__main__), exporting the
    # model on its first start when no verified export is cached. Exported once here,
    # every frontend a test starts loads it in seconds instead of each racing the
    # tests' readiness waits with a first export (~1 min on 2 cores).
    # A failed export fails no test here: the frontend then falls back to torch (auto).
    prepare_query_model(os.environ)
    yield s
    s.stop_all()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def embedder():
    from productsearch.embedding import Embedder
    from productsearch.settings import EmbeddingSettings

    return Embedder(EmbeddingSettings.from_env({}))
