"""Polling until something is true: how tests and benchmarks wait on the real parts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> T:
    """Returns the predicate's first truthy value; TimeoutError, naming *what* and the last value, if none comes in time."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})")
