"""Retries with capped exponential backoff: the one place for the delay schedule.

Two shapes of retrying use it:

- a bounded number of attempts at one call (with_backoff): the index client's
  requests, db.connect while the database restarts;
- a loop that retries forever, waiting longer after each consecutive failure and
  starting over after a success (Backoff used directly): emu's receive loop. Its
  wait takes a threading.Event, so a stop request interrupts the wait at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from productsearch.logs import brief

T = TypeVar("T")
log = logging.getLogger(__name__)


class RetriesExhausted(RuntimeError):
    """Every attempt failed with a retryable error; the last one is the __cause__."""


class Backoff:
    """Capped exponential delays in seconds: first, 2*first, 4*first, ... up to cap.

    With jitter, each delay is drawn uniformly from [0, that ceiling] ("full jitter",
    AWS Architecture Blog, "Exponential Backoff and Jitter"), so many clients failing
    together do not retry in step. reset() starts the schedule over (after a success).
    """

    def __init__(self, first: float, cap: float, *, jitter: bool = False):
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self._failures = 0

    def next_delay(self) -> float:
        """The delay to wait after one more consecutive failure, in seconds."""
        ceiling = min(self.cap, self.first * 2 ** self._failures)
        self._failures += 1
        return random.uniform(0, ceiling) if self.jitter else ceiling

    def reset(self) -> None:
        """Starts the schedule over at `first`."""
        self._failures = 0

    @staticmethod
    def wait(delay: float, stop: threading.Event | None = None) -> bool:
        """Sleeps `delay` seconds, or until `stop` is set; returns whether it was."""
        if stop is None:
            time.sleep(delay)
            return False
        return stop.wait(delay)


def with_backoff(
    call: Callable[[], T],
    *,
    retryable: Callable[[BaseException], bool],
    attempts: int,
    base_delay: float = 0.25,
    max_delay: float = 20.0,
    jitter: bool = True,
    what: str = "call",
    message: str = "transient failure, backing off",
    reraise: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> T:
    """Returns call()'s result, calling it up to `attempts` times while it raises an
    error `retryable` accepts, waiting Backoff(base_delay, max_delay, jitter) between
    attempts and logging `message` (a warning) before each wait.

    Raises a non-retryable error at once. After the last attempt, or after a failed
    attempt once should_stop() is true, raises RetriesExhausted (naming `what` and the
    last error), or with reraise=True the last error itself."""
    backoff = Backoff(base_delay, max_delay, jitter=jitter)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if not retryable(exc):
                raise
            if attempt == attempts or should_stop():
                if reraise:
                    raise
                raise RetriesExhausted(f"{what} failed {attempt} times; last error: {exc}") from exc
            delay = backoff.next_delay()
            log.warning(message, extra={"what": what, "attempt": attempt, "retry_in_s": round(delay, 3),
                                        "error": brief(exc)})
            Backoff.wait(delay)
    raise AssertionError("unreachable")
