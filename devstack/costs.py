"""Request accounting and added latency for the local stand-ins of Pinecone and SQS/SNS.

Both servers (``devstack.index_server`` and ``devstack.aws_server``) keep a
:class:`Meter`: counters per operation since the last reset, and a latency they add
to every API request (``--latency-ms``, or at run time through ``PUT /_latency``).
Their local-only control endpoints, never delayed and never counted:

* ``GET /_stats``: ``{"since": <unix s>, "latency_ms": <ms>, "operations": {<op>:
  {<field>: <number>}}, "totals": {<field>: <number>}}``; the fields are the server's
  (``INDEX_FIELDS`` in devstack.index_server.costs, ``SQS_FIELDS`` in devstack.aws_server);
* ``DELETE /_stats``: the same snapshot, then every counter back to zero;
* ``GET /_latency`` / ``PUT /_latency`` with ``{"latency_ms": <ms>}``.

The helpers below drive both servers of a stack from its environment
(:meth:`devstack.stack.DevStack.env`, or ``.local/stack.env``), for benchmarks.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

MAX_LATENCY_MS = 60_000.0  # a sanity bound, not a property of either service


def check_latency_ms(value: Any) -> float:
    """*value* as a latency in milliseconds; ValueError unless a number in 0..60,000."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_LATENCY_MS:
        raise ValueError(f"latency_ms must be a number from 0 to {MAX_LATENCY_MS:.0f}, got {value!r}")
    return float(value)


class Meter:
    """Counters per operation since the last reset, and the latency (ms) a server adds
    to each API request. Thread-safe: handlers count from worker threads."""

    def __init__(self, fields: Iterable[str], latency_ms: float = 0.0) -> None:
        self.fields = tuple(fields)
        self.latency_ms = check_latency_ms(latency_ms)
        self._lock = threading.Lock()
        self._ops: dict[str, dict[str, float]] = {}
        self._since = time.time()

    def add(self, op: str, **amounts: float) -> None:
        """Adds *amounts* (keywords among the fields) to operation *op*'s counters."""
        with self._lock:
            row = self._ops.setdefault(op, dict.fromkeys(self.fields, 0))
            for field, amount in amounts.items():
                row[field] += amount

    def snapshot(self, *, reset: bool = False) -> dict[str, Any]:
        """The counters as ``GET /_stats`` answers them (see the module docstring); with
        *reset*, they then start again from zero, with nothing counted in between."""
        with self._lock:
            ops, since = self._ops, self._since
            if reset:
                self._ops, self._since = {}, time.time()
            else:
                ops = {op: dict(row) for op, row in ops.items()}
        totals = {field: sum(row[field] for row in ops.values()) for field in self.fields}
        return {"since": since, "latency_ms": self.latency_ms, "operations": dict(sorted(ops.items())),
                "totals": totals}


# -- client helpers (benchmarks) ------------------------------------------------------
def _call(url: str, method: str = "GET", body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _bases(env: Mapping[str, str]) -> dict[str, str]:
    """The two local servers' roots: a document index's host carries a path
    (/document-indexes/<name>) under the server whose counters it shares."""
    index = urlsplit(env["PINECONE_HOST"])
    return {"index": f"{index.scheme}://{index.netloc}", "aws": env["AWS_ENDPOINT_URL"].rstrip("/")}


def read_stats(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Both servers' counters since their last reset: ``{"index": <GET /_stats>,
    "aws": <GET /_stats>}``. *env* holds PINECONE_HOST and AWS_ENDPOINT_URL.
    Raises OSError (urllib.error.URLError) when a server does not answer in 10 s."""
    return {name: _call(f"{base}/_stats") for name, base in _bases(env).items()}


def reset_stats(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Sets both servers' counters to zero; returns what they held, as :func:`read_stats`.
    Raises OSError when a server does not answer in 10 s."""
    return {name: _call(f"{base}/_stats", "DELETE") for name, base in _bases(env).items()}


def set_latency(env: Mapping[str, str], *, index_ms: float | None = None, aws_ms: float | None = None) -> None:
    """Sets the latency, in milliseconds, the index server (*index_ms*) and the SQS/SNS
    server (*aws_ms*) add to each API request from now on; None leaves a server's as
    it is. Raises ValueError for a latency outside 0..60,000 ms, OSError when a server
    does not answer in 10 s."""
    bases = _bases(env)
    for name, ms in (("index", index_ms), ("aws", aws_ms)):
        if ms is not None:
            _call(f"{bases[name]}/_latency", "PUT", {"latency_ms": check_latency_ms(ms)})
