"""Test kit: what only tests do to a running local stack (devstack.stack.DevStack).

Faults go through the index server's local-only ``/_faults`` API
(devstack.index_server.faults); a restart of Postgres drops every connection the
apps hold. The clean slate between tests, :func:`devstack.reset.reset_data`, stays
in devstack because benchmarks use it too; so does :func:`clear_index_faults`, which
that reset needs.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from typing import Any

from devstack.reset import clear_index_faults, index_faults_url
from devstack.stack import DevStack

__all__ = ["clear_index_faults", "inject_index_fault", "restart_postgres"]


def inject_index_fault(stack: DevStack, **rule: Any) -> None:
    """Makes the next matching index requests fail or stall. *rule* is a fault rule as
    ``POST /_faults`` takes it: ``status``, ``count``, ``delay_seconds``, ``paths``,
    ``retry_after_seconds`` (see devstack.index_server.faults); HTTPError 400 if invalid."""
    request = urllib.request.Request(index_faults_url(stack), method="POST", data=json.dumps(rule).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


def restart_postgres(stack: DevStack, down_seconds: float = 0.0) -> None:
    """Stops Postgres with a fast shutdown (every connection dropped), keeps it down for
    *down_seconds*, and starts it again on the same data and port."""
    stack.stop("postgres", signal.SIGINT)
    time.sleep(down_seconds)
    stack.start_postgres()
