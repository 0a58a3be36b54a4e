import threading
import time

import pytest

from productsearch.retry import Backoff, RetriesExhausted, with_backoff


class Flaky:
    """Fails with the given exceptions in turn, then returns 'ok'."""

    def __init__(self, *failures: Exception):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def transient(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError)


def test_transient_failures_are_retried_until_success():
    call = Flaky(TimeoutError("slow"), TimeoutError("slow"))
    assert with_backoff(call, retryable=transient, attempts=3, base_delay=0.001) == "ok"
    assert call.calls == 3


def test_permanent_failure_is_raised_at_once():
    call = Flaky(ValueError("bad request"))
    with pytest.raises(ValueError):
        with_backoff(call, retryable=transient, attempts=5, base_delay=0.001)
    assert call.calls == 1


def test_exhausted_retries_name_the_call_and_the_last_error():
    call = Flaky(*[TimeoutError(f"slow {i}") for i in range(3)])
    with pytest.raises(RetriesExhausted, match="upsert failed 3 times; last error: slow 2"):
        with_backoff(call, retryable=transient, attempts=3, base_delay=0.001, what="upsert")
    assert call.calls == 3


def test_a_stop_request_ends_retrying_after_the_current_attempt():
    call = Flaky(TimeoutError("slow"), TimeoutError("slow"))
    with pytest.raises(RetriesExhausted, match="failed 1 times"):
        with_backoff(call, retryable=transient, attempts=8, base_delay=0.001, should_stop=lambda: True)
    assert call.calls == 1


def test_backoff_doubles_up_to_the_cap_and_starts_over_after_reset():
    backoff = Backoff(0.5, 10.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_full_jitter_stays_under_the_ceiling():
    backoff = Backoff(1.0, 4.0, jitter=True)
    for ceiling in (1.0, 2.0, 4.0, 4.0):
        assert 0 <= backoff.next_delay() <= ceiling


def test_a_stop_event_cuts_the_wait_short():
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    assert Backoff.wait(30.0, stop) is True
    assert time.monotonic() - started < 1.0


def test_reraise_raises_the_last_error_itself():
    call = Flaky(TimeoutError("slow 0"), TimeoutError("slow 1"))
    with pytest.raises(TimeoutError, match="slow 1"):
        with_backoff(call, retryable=transient, attempts=2, base_delay=0.001, reraise=True)
    assert call.calls == 2
