"""Readiness for the load balancer: the model is loaded and the database answers.

/healthz is answered from memory on the event loop. A thread of its own checks the
database every couple of seconds (`SELECT 1`, bounded by a pool timeout), so the
answer never waits on the database and never queues behind user work on the thread
pool: a slow index or database makes searches slow, not the task unhealthy, and the
ALB does not kill a task that is only waiting on a dependency."""

from __future__ import annotations

from productsearch.periodic import Periodic


class HealthCheck:
    """The readiness /healthz reports: the model's state (from Services) and the latest
    database reading, taken every `interval_s` seconds by a thread of its own, each
    check bounded by `db_timeout_s` (both in seconds)."""

    def __init__(self, services, interval_s: float = 2.0, db_timeout_s: float = 1.5):
        self.services = services
        self.db_timeout_s = db_timeout_s
        self._db: tuple[bool, str] | None = None  # the latest database reading
        self._reader = Periodic("health-check", self._read_database, interval_s)

    def start(self) -> None:
        """Starts the checking thread once; later calls do nothing."""
        self._reader.start()

    def close(self) -> None:
        """Stops the checking thread."""
        self._reader.close()

    def _read_database(self) -> None:
        self._db = self._check_database()

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

