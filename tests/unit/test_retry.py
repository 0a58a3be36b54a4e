import pytest

from productsearch.retry import RetriesExhausted, with_backoff


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
