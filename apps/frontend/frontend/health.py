"""Readiness for the load balancer: the model is loaded and the database answers.
The database check is cached for a moment so health checks from the ALB, the
container's HEALTHCHECK and monitors cost one `SELECT 1` per interval at most, and
the answer comes back fast even while the database is slow or down."""

from __future__ import annotations

import threading
import time


class HealthCheck:
    def __init__(self, services, ttl_s: float = 2.0, db_timeout_s: float = 1.5):
        self.services = services
        self.ttl_s = ttl_s
        self.db_timeout_s = db_timeout_s
        self._lock = threading.Lock()
        self._db: tuple[float, bool, str] | None = None

    def database(self) -> tuple[bool, str]:
        with self._lock:
            now = time.monotonic()
            if self._db and now - self._db[0] < self.ttl_s:
                return self._db[1], self._db[2]
            try:
                with self.services.pool.connection(timeout=self.db_timeout_s) as conn:
                    conn.execute("SELECT 1")
                result = (True, "reachable")
            except Exception as exc:
                result = (False, f"unreachable ({type(exc).__name__})")
            self._db = (time.monotonic(), *result)
            return result

    def check(self) -> tuple[bool, dict[str, str]]:
        model_ok, model = self.services.model_state
        db_ok, db = self.database()
        return model_ok and db_ok, {"model": model, "database": db}
