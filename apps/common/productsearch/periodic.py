"""A reading kept fresh in the background, so that a request never waits for it: one
daemon thread that calls a function at start and then every few seconds until closed.
The frontend's database health check runs on it."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    """Calls `work` in a daemon thread named `name`: once at start(), then every
    `interval_s` seconds (after the previous call returns) until close().

    `work` handles its own errors: an exception it lets out ends the thread. start()
    is safe to call from several threads and more than once (one thread is started);
    close() returns at once, and the thread ends when its current call returns."""

    def __init__(self, name: str, work: Callable[[], None], interval_s: float):
        self.name = name
        self.interval_s = interval_s
        self._work = work
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Starts the thread once; later calls do nothing."""
        with self._started:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Asks the thread to stop; it makes no further call to `work`."""
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> bool:
        """Waits up to `timeout_s` seconds for the thread to end (close() first);
        True when it has ended or was never started."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._work()
            self._stop.wait(self.interval_s)
