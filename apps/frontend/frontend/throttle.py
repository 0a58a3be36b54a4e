"""Throttling of failed editor logins, per client address.

No rate-limiting library is among the frontend's dependencies, and what is needed is
small: a sliding window of failure times per client, in memory. Each replica counts
on its own, so behind a load balancer with n tasks a client gets at most n times the
allowance; that still turns a fast password-guessing loop into a handful of guesses
per window."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginThrottle:
    """Refuses a client that failed to log in max_failures times within the last
    window_s seconds, until the oldest of those failures is window_s old.

    Memory is bounded: at most max_clients addresses are tracked (the least recently
    seen is forgotten first) and each keeps at most max_failures timestamps.
    Thread-safe: the JSON API and the Gradio handlers share one instance."""

    def __init__(self, max_failures: int, window_s: float, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        if max_failures < 1 or window_s <= 0 or max_clients < 1:
            raise ValueError("max_failures and max_clients must be at least 1 and window_s positive")
        self.max_failures, self.window_s, self.max_clients = max_failures, window_s, max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.failures_total = 0  # since the process started; logged with each failure

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until `client` may try again (at least 1), or None if it may now."""
        with self._lock:
            times = self._recent(client, self._clock())
            if times is None or len(times) < self.max_failures:
                return None
            return max(1, math.ceil(times[0] + self.window_s - self._clock()))

    def failed(self, client: str) -> int:
        """Records a failed login; returns the client's failures within the window."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if times is None:
                times = self._failures[client] = deque(maxlen=self.max_failures)
                while len(self._failures) > self.max_clients:
                    self._failures.popitem(last=False)
            times.append(now)
            self._failures.move_to_end(client)
            self.failures_total += 1
            return len(times)

    def succeeded(self, client: str) -> None:
        """Forgets the client's failures: the editor got the password right."""
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times
