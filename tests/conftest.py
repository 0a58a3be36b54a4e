"""Shared fixtures. System tests run against real local parts started once per
session: a PostgreSQL server, moto's SQS/SNS server and the index server, each on a
free loopback port under a temporary directory (never the developer's `make up`
stack). Apps are started per test as real subprocesses, so tests can stop, kill
and restart them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def wait_until(predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.2, message: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message} (last value: {last!r})")


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from devstack.stack import LocalStack, free_port

    root = tmp_path_factory.mktemp("stack")
    if os.geteuid() == 0:
        os.chmod(root, 0o755)
        for parent in root.parents:
            if str(parent).startswith(("/tmp", "/var")) and parent != Path("/"):
                try:
                    os.chmod(parent, os.stat(parent).st_mode | 0o055)
                except PermissionError:
                    pass
    s = LocalStack(root=root, pg_port=free_port(), aws_port=free_port(), index_port=free_port(), frontend_port=free_port())
    s.start_infrastructure()
    for key, value in s.env().items():
        os.environ[key] = value
    yield s
    s.stop_all()


@pytest.fixture(scope="session")
def embedder():
    from productsearch.embedding import Embedder
    from productsearch.settings import EmbeddingSettings

    return Embedder(EmbeddingSettings.from_env({}))
