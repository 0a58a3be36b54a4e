"""Periodic: the background thread behind the frontend's health check calls its work
at start and again after each interval, starts once however often start() is called,
and makes no further call after close()."""

from __future__ import annotations

import threading

from productsearch.periodic import Periodic

WAIT_S = 30.0  # a bound on waiting for a thread on a busy machine, never an expectation


def test_work_runs_at_start_and_again_after_each_interval():
    calls = []
    third = threading.Event()

    def work():
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            third.set()

    periodic = Periodic("test-periodic", work, interval_s=0.01)
    periodic.start()
    try:
        assert third.wait(WAIT_S)
    finally:
        periodic.close()
    assert periodic.join(WAIT_S)
    assert set(calls) == {"test-periodic"}


def test_start_is_idempotent_across_threads():
    entered = threading.Event()
    release = threading.Event()
    threads_seen = set()

    def work():
        threads_seen.add(threading.get_ident())
        entered.set()
        release.wait(WAIT_S)

    periodic = Periodic("test-periodic-once", work, interval_s=0.01)
    starters = [threading.Thread(target=periodic.start) for _ in range(8)]
    for t in starters:
        t.start()
    for t in starters:
        t.join(WAIT_S)
    assert entered.wait(WAIT_S)
    assert [t.name for t in threading.enumerate()].count("test-periodic-once") == 1
    periodic.close()
    release.set()
    assert periodic.join(WAIT_S)
    assert len(threads_seen) == 1


def test_close_stops_further_calls():
    calls = []
    first = threading.Event()

    def work():
        calls.append(1)
        first.set()

    # A long interval: the thread is waiting between calls when close() arrives.
    periodic = Periodic("test-periodic-close", work, interval_s=3600.0)
    periodic.start()
    assert first.wait(WAIT_S)
    periodic.close()
    assert periodic.join(WAIT_S)  # close() ends the wait at once, not after the interval
    assert calls == [1]


def test_join_before_start_is_true():
    assert Periodic("never-started", lambda: None, interval_s=1.0).join(0)
