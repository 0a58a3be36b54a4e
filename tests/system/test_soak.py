"""The soak benchmark (benchmarks.soak) at a tiny size, so it cannot rot: writes and searches run together,
every change syncs, nothing errors, reconcile ends clean."""

from __future__ import annotations

import pytest

from benchmarks import soak
from devstack.waiting import wait_until

pytestmark = pytest.mark.stack


def healthy(url: str) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(url + "/healthz", timeout=2).status == 200
    except OSError:
        return False


def test_short_soak_applies_every_change_without_errors(parts, stack):
    parts.insert_many(50, prefix="soakseed")
    stack.start_app("pelican", options={"poll_interval_seconds": 1})
    stack.start_app("emu")
    stack.start_app("frontend")
    wait_until(lambda: parts.index.count() == 50, 120, what="seed rows indexed")
    wait_until(lambda: healthy(stack.env()["FRONTEND_URL"]), 180, interval=1, what="frontend healthy")
    result = soak.run_soak(stack.env(), minutes=0.25, writes_per_second=8, search_clients=1)
    assert result["changes_applied"] >= 60
    assert result["inserts"] and result["updates"] and result["deletes"]
    assert result["searches"] > 0
    assert result["errors"] == 0 and result["never_synced"] == 0
    assert result["lag_seconds"]["max"] is not None
    assert result["reconcile"] == "missing=0 stale=0 orphaned=0"
