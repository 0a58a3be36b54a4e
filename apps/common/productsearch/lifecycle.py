"""Graceful shutdown shared by the workers: SIGTERM (what ECS sends before SIGKILL)
and SIGINT set an event that the worker's loops check between units of work."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable


def stop_on_signals(stopping: threading.Event, logger: logging.Logger, doing: str,
                    on_stop: Callable[[], None] | None = None) -> None:
    """on_stop runs in the handler, before `stopping` is set (e.g. to note the time)."""
    def handle(signum, _frame):
        if on_stop is not None:
            on_stop()
        logger.info(f"stop requested; {doing}", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
