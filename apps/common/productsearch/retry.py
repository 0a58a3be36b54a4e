"""Retries with capped exponential backoff and full jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class RetriesExhausted(RuntimeError):
    pass


def with_backoff(
    call: Callable[[], T],
    *,
    retryable: Callable[[BaseException], bool],
    attempts: int,
    base_delay: float = 0.25,
    max_delay: float = 20.0,
    what: str = "call",
    should_stop: Callable[[], bool] = lambda: False,
) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if not retryable(exc) or attempt == attempts or should_stop():
                if retryable(exc):
                    raise RetriesExhausted(f"{what} failed {attempt} times; last error: {exc}") from exc
                raise
            delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            log.warning("transient failure, backing off", extra={"what": what, "attempt": attempt, "retry_in_s": round(delay, 3), "error": str(exc)[:300]})
            time.sleep(delay)
    raise AssertionError("unreachable")
