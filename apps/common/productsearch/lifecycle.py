"""Graceful shutdown shared by the workers: SIGTERM (what ECS sends before SIGKILL)
and SIGINT set an event that the worker's loops check between units of work."""

from __future__ import annotations

import logging
import signal
import threading


def stop_on_signals(stopping: threading.Event, logger: logging.Logger, doing: str) -> None:
    def handle(signum, _frame):
        logger.info(f"stop requested; {doing}", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
