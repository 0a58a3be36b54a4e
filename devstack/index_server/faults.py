"""Fault injection for tests: the :class:`FaultInjector` rules and the local-only
``/_faults`` API (not part of Pinecone's).

``POST /_faults`` adds a rule that makes the next N matching requests fail with a
status, stall for a while, or both; ``GET /_faults`` lists the rules and counts the
API requests in flight; ``DELETE /_faults`` drops every rule and releases requests
a delay is holding. A request carrying :data:`FAULT_EXEMPT_HEADER` neither triggers
nor consumes a fault, so a test can watch the index while the services under test
meet the faults.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from devstack.index_server.columns import is_number
from devstack.index_server.protocol import bad_request, body_of, error_response, json_response

logger = logging.getLogger("devstack.index_server")

FAULT_EXEMPT_HEADER = "x-devstack-fault-exempt"


class FaultInjector:
    """Rules that make the next N matching requests fail or stall (tests only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[dict[str, Any]] = []
        self._released = asyncio.Event()
        self.in_flight = 0  # API requests being served; only the event loop touches it

    @staticmethod
    def parse(raw: Any) -> dict[str, Any]:
        """A rule from a ``POST /_faults`` body, normalised; :class:`ApiError` 400 on a bad one."""
        if not isinstance(raw, dict):
            raise bad_request("Fault rule must be a JSON object")
        unknown = set(raw) - {"status", "count", "delay_seconds", "paths", "retry_after_seconds"}
        if unknown:
            raise bad_request(f"Unknown fault rule fields: {sorted(unknown)}")
        status = raw.get("status")
        if status is not None and (
            not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599
        ):
            raise bad_request("Fault 'status' must be an HTTP error status (400-599) or null")
        count = raw.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise bad_request("Fault 'count' must be a positive integer")
        delay = raw.get("delay_seconds", 0.0)
        if not is_number(delay) or not 0 <= delay <= 300:
            raise bad_request("Fault 'delay_seconds' must be a number between 0 and 300")
        if status is None and delay == 0:
            raise bad_request("Fault rule needs a 'status', a positive 'delay_seconds', or both")
        paths = raw.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise bad_request("Fault 'paths' must be a list of request paths")
        retry_after = raw.get("retry_after_seconds")
        if retry_after is not None and (not is_number(retry_after) or retry_after < 0):
            raise bad_request("Fault 'retry_after_seconds' must be a non-negative number")
        return {
            "status": status,
            "count": count,
            "delay_seconds": float(delay),
            "paths": paths,
            "retry_after_seconds": retry_after,
        }

    def add(self, rule: dict[str, Any]) -> None:
        """Appends a rule parsed by :meth:`parse`; rules are tried in the order added."""
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        """Drops every rule and lets requests stalled by a delay go on at once."""
        with self._lock:
            self._rules.clear()
        self._released.set()
        self._released = asyncio.Event()

    async def stall(self, seconds: float) -> None:
        """Waits *seconds*, or less if :meth:`clear` releases the stalled requests first."""
        try:
            await asyncio.wait_for(self._released.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    def snapshot(self) -> list[dict[str, Any]]:
        """Copies of the rules left, with their remaining counts."""
        with self._lock:
            return [dict(rule) for rule in self._rules]

    def take(self, path: str) -> dict[str, Any] | None:
        """Consume one use of the first rule matching *path*."""
        with self._lock:
            for rule in self._rules:
                paths = rule["paths"]
                if paths and not any(
                    path == p or (p.endswith("*") and path.startswith(p[:-1])) for p in paths
                ):
                    continue
                rule["count"] -= 1
                if rule["count"] <= 0:
                    self._rules.remove(rule)
                return dict(rule)
        return None

    async def meet(self, request: Request, path: str) -> Response | None:
        """Applies the first rule matching *path* to a request: stalls for its delay,
        then returns its error response, or ``None`` when the request goes on.
        Requests carrying :data:`FAULT_EXEMPT_HEADER` neither trigger nor consume a rule."""
        if request.headers.get(FAULT_EXEMPT_HEADER):
            return None
        rule = self.take(path)
        if rule is None:
            return None
        if rule["delay_seconds"]:
            await self.stall(rule["delay_seconds"])
        if rule["status"] is None:
            return None
        headers = {}
        if rule["retry_after_seconds"] is not None:
            headers["Retry-After"] = str(rule["retry_after_seconds"])
        return error_response(
            rule["status"],
            f"Injected fault: HTTP {rule['status']} for {path} "
            f"(local index server fault injection)",
            headers,
        )


def add_fault_routes(app: FastAPI, faults: FaultInjector) -> None:
    """Mounts the local-only ``/_faults`` API (add, list, clear) on *app*."""

    @app.post("/_faults")
    async def add_fault(request: Request) -> Response:
        rule = FaultInjector.parse(await body_of(request))
        faults.add(rule)
        logger.info("fault injected: %s", rule)
        return json_response({"faults": faults.snapshot()})

    @app.get("/_faults")
    async def get_faults() -> Response:
        return json_response({"faults": faults.snapshot(), "in_flight_requests": faults.in_flight})

    @app.delete("/_faults")
    async def clear_faults() -> Response:
        faults.clear()
        return json_response({"faults": []})
