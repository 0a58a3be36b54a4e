"""Readiness for the load balancer: the model is loaded and the database answers.

/healthz is answered from memory on the event loop. A thread of its own checks the
database every couple of seconds (`SELECT 1`, bounded by a pool timeout), so the
answer never waits on the database and never queues behind user work on the thread
pool: a slow index or database makes searches slow, not the task unhealthy, and the
ALB does not kill a task that is only waiting on a dependency."""

from __future__ import annotations

import threading


class HealthCheck:
    def __init__(self, services, interval_s: float = 2.0, db_timeout_s: float = 1.5):
        self.services = services
        self.interval_s = interval_s
        self.db_timeout_s = db_timeout_s
        self._db: tuple[bool, str] | None = None  # the latest database reading
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Starts the checking thread once; later calls do nothing."""
        with self._started:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="health-check", daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._db = self._check_database()
            self._stop.wait(self.interval_s)

    def _check_database(self) -> tuple[bool, str]:
        try:
            with self.services.pool.connection(timeout=self.db_timeout_s) as conn:
                conn.execute("SELECT 1")
            return True, "reachable"
        except Exception as exc:
            return False, f"unreachable ({type(exc).__name__})"

    @property
    def first_reading_timeout_s(self) -> float:
        """How long the very first /healthz may wait for the first database reading."""
        return self.db_timeout_s + 1.0

    def check(self) -> tuple[bool, dict[str, str]] | None:
        """(ready, parts) from the latest readings, without waiting; None until the
        database has been checked once."""
        db = self._db
        if db is None:
            return None
        model_ok, model = self.services.model_state
        parts = {"model": model, "database": db[1]}
        # Which index serves (an index migration switches it): informative, never a reason
        # to take the task out of service. Stand-ins for Services may have none.
        serving = getattr(self.services, "index_state", None)
        if serving:
            parts["index"] = serving
        return model_ok and db[0], parts

