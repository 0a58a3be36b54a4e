"""Local, Pinecone-API-compatible vector index server (REST data plane).

Run::

    PYTHONPATH=scripts python -m devstack.index_server --host 127.0.0.1 --port 5081 \\
        --data-dir .local/index --dimension 384 --metric cosine [--api-key KEY]

and point the official SDK at it::

    from pinecone import Pinecone
    index = Pinecone(api_key="KEY").Index(host="http://127.0.0.1:5081")

Endpoints (Pinecone data plane, JSON field names in camelCase; snake_case is
accepted too):

* ``POST /vectors/upsert``         ``{"vectors": [{"id", "values", "sparseValues", "metadata"}],
  "namespace"}``
* ``POST /query``                  ``{"vector"|"id", "sparseVector", "topK", "filter",
  "includeValues", "includeMetadata", "namespace"}``
* ``GET  /vectors/fetch``          ``?ids=a&ids=b&namespace=ns``
* ``POST /vectors/fetch_by_metadata`` ``{"filter", "namespace", "limit", "paginationToken"}``
* ``POST /vectors/delete``         ``{"ids"|"deleteAll"|"filter", "namespace"}``
* ``GET  /vectors/list``           ``?namespace=&prefix=&limit=&paginationToken=``
* ``POST /vectors/update``         ``{"id"|"filter", "values", "sparseValues", "setMetadata",
  "namespace", "dryRun"}``
* ``POST|GET /describe_index_stats``
* ``GET /namespaces``, ``GET|DELETE /namespaces/{name}``

Sparse values (``{"indices": [uint32], "values": [float32]}``) ride along with the dense
values of a record, as in a Pinecone sparse-dense (hybrid) index: see :func:`parse_sparse`
for the rules and :meth:`Handlers.query` for how they are scored.

The default namespace is ``""``; ``"__default__"`` is accepted as its alias in
requests and is how it is reported by ``describe_index_stats`` and ``/namespaces``
(as current Pinecone does).

Errors use Pinecone's data-plane shape ``{"code": <grpc code>, "message": "...",
"details": []}`` with the matching HTTP status, so the SDK raises ``ApiError``
(alias ``PineconeApiException``) and its status subclasses.

Local-only extras (not part of Pinecone's API): ``GET /healthz`` and the fault
injection API ``POST /_faults`` / ``GET /_faults`` / ``DELETE /_faults``. A request
carrying the header ``X-Devstack-Fault-Exempt: 1`` neither triggers nor consumes a
fault, so a test can watch the index while the services under test meet the faults.
``DELETE /_faults`` also releases requests a delay is holding, and ``GET /_faults``
counts the API requests in flight, so a test can wait for the index to be quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from devstack.index_filters import FilterError, FilterNode, compile_filter
from devstack.index_store import METRICS, IndexStore, SparseVector

logger = logging.getLogger("devstack.index_server")

# ----------------------------------------------------------------------------- limits
# Pinecone's documented data-plane limits (docs.pinecone.io "Database limits").
MAX_REQUEST_BYTES = 2 * 1024 * 1024  # 2 MB per request
MAX_UPSERT_VECTORS = 1_000  # vectors per upsert request
MAX_METADATA_BYTES = 40_960  # 40 KB of metadata per record
MAX_ID_LENGTH = 512  # characters per record id
MAX_NAMESPACE_LENGTH = 512
MAX_TOP_K = 10_000
MAX_TOP_K_WITH_DATA = 1_000  # top_k limit when includeValues/includeMetadata is true
MAX_IDS_PER_REQUEST = 1_000  # ids per fetch / delete request
MAX_LIST_LIMIT = 100  # ids per /vectors/list page
DEFAULT_LIST_LIMIT = 100
MAX_FETCH_BY_METADATA_LIMIT = 10_000
DEFAULT_FETCH_BY_METADATA_LIMIT = 100
DEFAULT_NAMESPACE_ALIAS = "__default__"
# Pinecone docs, Limits: "Sparse vectors can contain no more than 1000 non-zero values" and
# "Max dimensionality for sparse vectors is 4.2 billion"; the sparse-dense vector format page
# gives the element types: indices uint32, values float32.
MAX_SPARSE_VALUES = 1_000
MAX_SPARSE_INDEX = 2**32 - 1
# The message Pinecone answers (400, gRPC code 3) to a sparse query on an index whose metric
# is not dotproduct (quoted in langchain-ai/langchain issue #2451).
SPARSE_METRIC_MESSAGE = "Index configuration does not support sparse values"

_GRPC_CODES = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    405: 12,  # UNIMPLEMENTED
    409: 6,  # ALREADY_EXISTS
    412: 9,  # FAILED_PRECONDITION
    413: 3,
    429: 8,  # RESOURCE_EXHAUSTED
    500: 13,  # INTERNAL
    501: 12,
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}

_UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/_faults"})
FAULT_EXEMPT_HEADER = "x-devstack-fault-exempt"


class ApiError(Exception):
    """Raised by handlers; rendered as a Pinecone-shaped error body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    code = _GRPC_CODES.get(status, 13 if status >= 500 else 3)
    body = orjson.dumps({"code": code, "message": message, "details": []})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


# ----------------------------------------------------------------------------- faults
class FaultInjector:
    """Rules that make the next N matching requests fail or stall (tests only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[dict[str, Any]] = []
        self._released = asyncio.Event()
        self.in_flight = 0  # API requests being served; only the event loop touches it

    @staticmethod
    def parse(raw: Any) -> dict[str, Any]:
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
        if not _is_number(delay) or not 0 <= delay <= 300:
            raise bad_request("Fault 'delay_seconds' must be a number between 0 and 300")
        if status is None and delay == 0:
            raise bad_request("Fault rule needs a 'status', a positive 'delay_seconds', or both")
        paths = raw.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise bad_request("Fault 'paths' must be a list of request paths")
        retry_after = raw.get("retry_after_seconds")
        if retry_after is not None and (not _is_number(retry_after) or retry_after < 0):
            raise bad_request("Fault 'retry_after_seconds' must be a non-negative number")
        return {
            "status": status,
            "count": count,
            "delay_seconds": float(delay),
            "paths": paths,
            "retry_after_seconds": retry_after,
        }

    def add(self, rule: dict[str, Any]) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        """Drops every rule and lets requests stalled by a delay go on at once."""
        with self._lock:
            self._rules.clear()
        self._released.set()
        self._released = asyncio.Event()

    async def stall(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._released.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    def snapshot(self) -> list[dict[str, Any]]:
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


# ----------------------------------------------------------------------------- parsing
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pick(body: dict[str, Any], camel: str, snake: str | None = None, default: Any = None) -> Any:
    if camel in body:
        return body[camel]
    if snake is not None and snake in body:
        return body[snake]
    return default


def parse_json_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_REQUEST_BYTES:
        raise request_too_large(len(raw))
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:  # the stdlib parser accepts NaN/Infinity tokens, rejected later with a clear message
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object")
    return body


def request_too_large(size: int) -> ApiError:
    return bad_request(
        f"Request size is {size} bytes ({size / 1024 / 1024:.2f} MB), which exceeds the limit "
        f"of {MAX_REQUEST_BYTES} bytes (2 MB) per request"
    )


def parse_namespace(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"namespace must be a string, got {type(value).__name__}")
    if len(value) > MAX_NAMESPACE_LENGTH:
        raise bad_request(
            f"Namespace length is {len(value)} characters, which exceeds the limit of "
            f"{MAX_NAMESPACE_LENGTH} characters"
        )
    return "" if value == DEFAULT_NAMESPACE_ALIAS else value


def display_namespace(name: str) -> str:
    return DEFAULT_NAMESPACE_ALIAS if name == "" else name


def check_id(value: Any, what: str = "Vector ID") -> str:
    if not isinstance(value, str):
        raise bad_request(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise bad_request(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise bad_request(
            f"{what} length is {len(value)} characters, which exceeds the limit of "
            f"{MAX_ID_LENGTH} characters"
        )
    if not value.isascii() or "\x00" in value:
        raise bad_request(f"{what} must contain only ASCII characters and no NUL, got {value!r}")
    return value


def check_ids(values: Any, what: str) -> list[str]:
    if not isinstance(values, list):
        raise bad_request(f"ids must be an array of strings for {what}")
    if len(values) > MAX_IDS_PER_REQUEST:
        raise bad_request(
            f"{what.capitalize()} request contains {len(values)} ids, which exceeds the limit of "
            f"{MAX_IDS_PER_REQUEST} ids per request"
        )
    return [check_id(v) for v in values]


def parse_filter(raw: Any) -> FilterNode | None:
    try:
        return compile_filter(raw)
    except FilterError as exc:
        raise bad_request(str(exc)) from None


def _render_value(value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_metadata(raw: Any, vid: str, *, for_update: bool = False) -> dict[str, Any] | None:
    """Validate record metadata; nulls are stripped (Pinecone does the same)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request(f"Metadata for vector '{vid}' must be a JSON object")
    clean: dict[str, Any] = {}
    for key, value in raw.items():
        if not key or key.startswith("$"):
            raise bad_request(
                f"Metadata field name {key!r} for vector '{vid}' is invalid: field names must be "
                f"non-empty and must not start with '$'"
            )
        if value is None:
            if for_update:
                clean[key] = None  # setMetadata: null removes the field
            continue
        if isinstance(value, (str, bool)):
            pass
        elif isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise bad_request(
                    f"Metadata value for field '{key}' of vector '{vid}' must be a finite number, "
                    f"got {_render_value(value)}"
                )
        elif isinstance(value, list) and all(isinstance(el, str) for el in value):
            pass
        else:
            raise bad_request(
                f"Metadata value must be a string, number, boolean or list of strings, "
                f"got '{_render_value(value)}' for field '{key}' of vector '{vid}'"
            )
        clean[key] = value
    check_metadata_size(vid, {k: v for k, v in clean.items() if v is not None})
    return clean or (None if not for_update else {})


def check_metadata_size(vid: str, meta: dict[str, Any]) -> None:
    size = len(orjson.dumps(meta))
    if size > MAX_METADATA_BYTES:
        raise bad_request(
            f"Metadata size is {size} bytes, which exceeds the limit of {MAX_METADATA_BYTES} "
            f"bytes per vector (vector '{vid}')"
        )


def parse_values(raw_rows: list[Any], ids: list[str], dimension: int) -> np.ndarray:
    """Turn lists of numbers into an (n, dimension) float32 matrix, enforcing the rules."""
    for vid, row in zip(ids, raw_rows, strict=True):
        if not isinstance(row, list):
            raise bad_request(f"Values of vector '{vid}' must be an array of numbers")
        if len(row) != dimension:
            raise bad_request(
                f"Vector dimension {len(row)} does not match the dimension of the index "
                f"{dimension} (vector '{vid}')"
            )
    try:
        with np.errstate(over="ignore"):
            matrix = np.array(raw_rows, dtype=np.float32).reshape(len(raw_rows), dimension)
    except (TypeError, ValueError):
        for vid, row in zip(ids, raw_rows, strict=True):
            for position, value in enumerate(row):
                if value is not None and not _is_number(value):
                    raise bad_request(
                        f"Values of vector '{vid}' must be numbers, got {_render_value(value)} "
                        f"at position {position}"
                    ) from None
        raise bad_request("Vector values must be numbers") from None
    finite = np.isfinite(matrix)
    if not finite.all():
        bad_row = int(np.flatnonzero(~finite.all(axis=1))[0])
        position = int(np.flatnonzero(~finite[bad_row])[0])
        original = raw_rows[bad_row][position]
        shown = "null" if original is None else _render_value(original)
        raise bad_request(
            f"NaN and infinite values are not allowed in vector values: vector '{ids[bad_row]}' "
            f"has {shown} at position {position} (values must be finite 32-bit floats)"
        )
    return matrix


def parse_sparse(raw: Any, what: str) -> SparseVector | None:
    """Validate Pinecone sparse values ``{"indices": [...], "values": [...]}``.

    *what* names the owner in messages (``"vector 'a'"``, ``"the query"``). Rules, each a
    400 with a message saying which entry is wrong:

    * an object with both ``indices`` and ``values`` arrays (the SDK sends these two keys
      for both ``sparse_values`` and ``sparse_vector``);
    * the same number of indices and values;
    * at most ``MAX_SPARSE_VALUES`` (1000) entries (Pinecone docs: Limits);
    * indices are integers in ``[0, 2**32 - 1]`` (uint32, Pinecone docs: sparse-dense vector
      format; Limits: "Max dimensionality for sparse vectors is 4.2 billion"), each once;
    * values are numbers that are finite as float32, like dense values.

    Empty arrays are accepted and mean "no sparse part" (returns ``None``): Pinecone's docs
    set only an upper bound on the non-zero values, and a product whose text yields no
    terms must still be writable. Zero weights are kept as given.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("indices"), list) or not isinstance(
        raw.get("values"), list
    ):
        raise bad_request(
            f"Sparse values of {what} must be an object with 'indices' and 'values' arrays"
        )
    indices, values = raw["indices"], raw["values"]
    if len(indices) != len(values):
        raise bad_request(
            f"Sparse values of {what} have {len(indices)} indices and {len(values)} values; "
            f"indices and values must have the same length"
        )
    if len(indices) > MAX_SPARSE_VALUES:
        raise bad_request(
            f"Sparse vector size {len(indices)} exceeds the limit of {MAX_SPARSE_VALUES} "
            f"non-zero values per sparse vector ({what})"
        )
    if not indices:
        return None
    for position, index in enumerate(indices):
        if not isinstance(index, int) or isinstance(index, bool) or not (
            0 <= index <= MAX_SPARSE_INDEX
        ):
            raise bad_request(
                f"Sparse indices must be integers between 0 and {MAX_SPARSE_INDEX} (uint32): "
                f"{what} has {_render_value(index)} at position {position}"
            )
    idx = np.array(indices, dtype=np.uint32)
    if len(set(indices)) != len(indices):
        seen: set[int] = set()
        duplicate = next(i for i in indices if i in seen or seen.add(i))
        raise bad_request(
            f"Sparse indices must be unique: {what} has index {duplicate} more than once"
        )
    for position, value in enumerate(values):
        if value is not None and not _is_number(value):
            raise bad_request(
                f"Sparse values must be numbers: {what} has {_render_value(value)} at "
                f"position {position}"
            )
    with np.errstate(over="ignore"):
        # null counts as non-finite: the SDK's JSON encoder writes NaN and infinities as null
        vals = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
    finite = np.isfinite(vals)
    if not finite.all():
        position = int(np.flatnonzero(~finite)[0])
        raise bad_request(
            f"NaN and infinite values are not allowed in sparse values: {what} has "
            f"{_render_value(values[position])} at position {position} (values must be finite "
            f"32-bit floats)"
        )
    return SparseVector(idx, vals)


def parse_bool(value: Any, name: str, default: bool = False) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be a boolean")
    return value


def encode_token(last_id: str) -> str:
    raw = orjson.dumps({"after": last_id})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        after = data["after"]
        if not isinstance(after, str):
            raise TypeError
        return after
    except Exception:
        raise bad_request(f"Invalid pagination token {token!r}") from None


def parse_limit(raw: Any, default: int, maximum: int, name: str = "limit") -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an integer, got {raw!r}") from None
    if value < 1 or value > maximum:
        raise bad_request(f"{name} must be between 1 and {maximum}, got {value}")
    return value


def fetched_record(
    vid: str, values: np.ndarray, sparse: SparseVector | None, meta: dict[str, Any] | None
) -> dict[str, Any]:
    """A record as fetch answers it: ``id``, ``values``, and ``sparseValues`` /
    ``metadata`` when the record has them."""
    record: dict[str, Any] = {"id": vid, "values": values}
    if sparse is not None:
        record["sparseValues"] = sparse.as_json()
    if meta is not None:
        record["metadata"] = meta
    return record


# ----------------------------------------------------------------------------- handlers
class Handlers:
    """Synchronous request handlers (run in the thread pool)."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self.dimension = store.dimension

    def _dense(self, raw_rows: list[Any], ids: list[str]) -> np.ndarray:
        matrix = parse_values(raw_rows, ids, self.dimension)
        if self.store.metric == "cosine":
            zero = ~matrix.any(axis=1)
            if zero.any():
                vid = ids[int(np.flatnonzero(zero)[0])]
                raise bad_request(
                    f"Dense vectors must contain at least one non-zero value (vector '{vid}' is "
                    f"all zeros, which has no cosine similarity)"
                )
        return matrix

    def upsert(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = parse_namespace(body.get("namespace"))
        vectors = body.get("vectors")
        if not isinstance(vectors, list):
            raise bad_request("Upsert request must contain a 'vectors' array")
        if not vectors:
            raise bad_request("Upsert request must contain at least one vector")
        if len(vectors) > MAX_UPSERT_VECTORS:
            raise bad_request(
                f"Upsert request contains {len(vectors)} vectors, which exceeds the limit of "
                f"{MAX_UPSERT_VECTORS} vectors per upsert request"
            )
        ids: list[str] = []
        raw_values: list[Any] = []
        metadatas: list[dict[str, Any] | None] = []
        sparse: list[SparseVector | None] = []
        for item in vectors:
            if not isinstance(item, dict):
                raise bad_request("Each vector must be a JSON object with 'id' and 'values'")
            vid = check_id(item.get("id"))
            values = item.get("values")
            if values is None or values == []:
                # Pinecone docs, Limits: records with sparse values must also contain dense
                # values (in a dense index, which is what this server emulates).
                raise bad_request(f"Vector '{vid}' must have non-empty dense values")
            ids.append(vid)
            raw_values.append(values)
            metadatas.append(parse_metadata(item.get("metadata"), vid))
            # Accepted whatever the metric: Pinecone docs (Known limitations) say upserting,
            # updating and fetching sparse-dense vectors succeeds on any metric; only
            # querying with sparse values needs dotproduct.
            raw_sparse = _pick(item, "sparseValues", "sparse_values")
            sparse.append(parse_sparse(raw_sparse, f"vector '{vid}'"))
        matrix = self._dense(raw_values, ids)
        count = self.store.upsert(namespace, ids, matrix, metadatas, sparse)
        return {"upsertedCount": count}

    def _query_vector(
        self, body: dict[str, Any], namespace: str
    ) -> tuple[np.ndarray, SparseVector | None] | None:
        """The query's (dense vector, sparse vector or None); ``None`` for an unknown id.

        Rules (Pinecone docs: query sparse-dense vectors, Known limitations):

        * ``sparseVector`` on an index whose metric is not dotproduct: 400 ``Index
          configuration does not support sparse values``;
        * ``sparseVector`` without ``vector``: 400, since this emulates a dense index, whose
          queries need a dense vector; a keyword-only query sends an all-zero ``vector``
          (Pinecone's ``hybrid_score_norm`` with alpha=0), which dotproduct accepts;
        * ``id`` with ``vector`` or ``sparseVector``: 400; by ``id``, a dotproduct index
          queries with the stored record's dense and sparse values, other metrics with
          its dense values only.
        """
        vector = body.get("vector")
        qid = body.get("id")
        raw_sparse = _pick(body, "sparseVector", "sparse_vector")
        if vector is not None and qid is not None:
            raise bad_request("Cannot provide both 'ID' and 'vector' at the same time")
        if raw_sparse is not None and qid is not None:
            raise bad_request("Cannot provide both 'ID' and 'sparse_vector' at the same time")
        if raw_sparse is not None and self.store.metric != "dotproduct":
            raise bad_request(
                f"{SPARSE_METRIC_MESSAGE}: sparse query vectors need an index with the "
                f"dotproduct metric, and this index uses {self.store.metric}"
            )
        if vector is None and qid is None:
            if raw_sparse is not None:
                raise bad_request(
                    "Query must provide 'vector' (or 'id'): this is a dense index, so a sparse "
                    "query needs a dense vector too; send an all-zero 'vector' with "
                    "'sparseVector' for a sparse-only (keyword) query"
                )
            raise bad_request("Query must provide either 'vector' or 'id'")
        if qid is not None:
            stored = self.store.get_vector(namespace, check_id(qid))
            if stored is None or self.store.metric == "dotproduct":
                return stored
            return stored[0], None
        sparse = parse_sparse(raw_sparse, "the query")
        if not isinstance(vector, list):
            raise bad_request("Query 'vector' must be an array of numbers")
        if len(vector) != self.dimension:
            raise bad_request(
                f"Query vector dimension {len(vector)} does not match the dimension of the "
                f"index {self.dimension}"
            )
        return self._dense([vector], ["<query>"])[0], sparse

    def query(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = parse_namespace(body.get("namespace"))
        top_k = _pick(body, "topK", "top_k")
        if not isinstance(top_k, int) or isinstance(top_k, bool):
            raise bad_request("Query must provide 'topK' as an integer")
        include_values = parse_bool(_pick(body, "includeValues", "include_values"), "includeValues")
        include_metadata = parse_bool(
            _pick(body, "includeMetadata", "include_metadata"), "includeMetadata"
        )
        if top_k < 1:
            raise bad_request(f"top_k must be at least 1, got {top_k}")
        if top_k > MAX_TOP_K:
            raise bad_request(
                f"top_k is {top_k}, which exceeds the limit of {MAX_TOP_K} results per query"
            )
        if (include_values or include_metadata) and top_k > MAX_TOP_K_WITH_DATA:
            raise bad_request(
                f"top_k is {top_k}, which exceeds the limit of {MAX_TOP_K_WITH_DATA} results per "
                f"query when includeValues or includeMetadata is true"
            )
        node = parse_filter(body.get("filter"))
        query = self._query_vector(body, namespace)
        shown_ns = body.get("namespace") or ""
        if query is None:  # query by an id that does not exist
            return {"matches": [], "namespace": shown_ns, "usage": {"readUnits": 1}}
        vector, sparse = query
        matches = self.store.query(
            namespace, vector, top_k, node, include_values, include_metadata, sparse
        )
        out = []
        for m in matches:
            item: dict[str, Any] = {"id": m.id, "score": m.score}
            item["values"] = m.values if m.values is not None else []
            if m.sparse_values is not None:
                item["sparseValues"] = m.sparse_values.as_json()
            if m.metadata is not None:
                item["metadata"] = m.metadata
            out.append(item)
        return {"matches": out, "namespace": shown_ns, "usage": {"readUnits": 1}}

    def fetch(self, ids: list[str], namespace_raw: str | None) -> dict[str, Any]:
        namespace = parse_namespace(namespace_raw)
        if not ids:
            raise bad_request("Fetch request must contain at least one id")
        ids = check_ids(ids, "fetch")
        found = self.store.fetch(namespace, ids)
        vectors = {record[0]: fetched_record(*record) for record in found}
        return {"vectors": vectors, "namespace": namespace_raw or "", "usage": {"readUnits": 1}}

    def fetch_by_metadata(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = parse_namespace(body.get("namespace"))
        raw_filter = body.get("filter")
        if not raw_filter:
            raise bad_request("Empty filter provided for fetch by metadata request")
        node = parse_filter(raw_filter)
        assert node is not None
        limit = parse_limit(
            body.get("limit"), DEFAULT_FETCH_BY_METADATA_LIMIT, MAX_FETCH_BY_METADATA_LIMIT
        )
        token = _pick(body, "paginationToken", "pagination_token")
        after = decode_token(token) if token else None
        ids = sorted(self.store.matching_ids(namespace, node))
        if after is not None:
            import bisect

            ids = ids[bisect.bisect_right(ids, after) :]
        page, more = ids[:limit], len(ids) > limit
        found = self.store.fetch(namespace, page)
        vectors = {record[0]: fetched_record(*record) for record in found}
        out: dict[str, Any] = {
            "vectors": vectors,
            "namespace": body.get("namespace") or "",
            "usage": {"readUnits": 1},
        }
        if more and page:
            out["pagination"] = {"next": encode_token(page[-1])}
        return out

    def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = parse_namespace(body.get("namespace"))
        ids = body.get("ids")
        delete_all = parse_bool(_pick(body, "deleteAll", "delete_all"), "deleteAll")
        raw_filter = body.get("filter")
        selectors = sum([ids is not None and ids != [], delete_all, raw_filter is not None])
        if selectors > 1:
            raise bad_request("Delete request must specify only one of ids, deleteAll or filter")
        if delete_all:
            self.store.delete_namespace(namespace)
        elif ids is not None and ids != []:
            self.store.delete_ids(namespace, check_ids(ids, "delete"))
        elif raw_filter is not None:
            if raw_filter == {}:
                raise bad_request("Delete with empty metadata filter is not allowed")
            node = parse_filter(raw_filter)
            assert node is not None
            self.store.delete_where(namespace, node)
        else:
            raise bad_request("Delete request must specify ids, deleteAll or filter")
        return {}

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = parse_namespace(body.get("namespace"))
        vid = body.get("id")
        raw_filter = body.get("filter")
        values = body.get("values")
        raw_sparse = _pick(body, "sparseValues", "sparse_values")
        dry_run = parse_bool(_pick(body, "dryRun", "dry_run"), "dryRun")
        if vid is not None and raw_filter is not None:
            raise bad_request("Update request must specify either 'id' or 'filter', not both")
        if vid is None and raw_filter is None:
            raise bad_request("Update request must specify 'id' or 'filter'")
        label = vid if isinstance(vid, str) else "<filter>"
        set_metadata = parse_metadata(
            _pick(body, "setMetadata", "set_metadata"), label, for_update=True
        )
        matrix = None
        if values is not None and values != []:
            if raw_filter is not None:
                raise bad_request("Update by filter can only set metadata, not values")
            matrix = self._dense([values], [label])[0]
        if raw_sparse is not None and raw_filter is not None:
            raise bad_request("Update by filter can only set metadata, not sparse values")
        # Replaces the record's sparse values (empty arrays remove them); absent keeps them.
        sparse = parse_sparse(raw_sparse, f"vector '{label}'")
        if vid is not None:
            ids = [check_id(vid)]
        else:
            if raw_filter == {}:
                raise bad_request("Update with empty metadata filter is not allowed")
            node = parse_filter(raw_filter)
            assert node is not None
            ids = self.store.matching_ids(namespace, node)
        matched = self.store.update(
            namespace, ids, matrix, set_metadata, dry_run=dry_run,
            check_metadata=check_metadata_size, sparse=sparse, set_sparse=raw_sparse is not None,
        )
        return {"matchedRecords": matched}

    def list_ids(self, params: dict[str, str]) -> dict[str, Any]:
        namespace = parse_namespace(params.get("namespace"))
        prefix = params.get("prefix") or ""
        if len(prefix) > MAX_ID_LENGTH:
            raise bad_request(
                f"prefix length is {len(prefix)} characters, which exceeds the limit of "
                f"{MAX_ID_LENGTH} characters"
            )
        limit = parse_limit(params.get("limit"), DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        token = params.get("paginationToken") or params.get("pagination_token")
        after = decode_token(token) if token else None
        page, more = self.store.list_ids(namespace, prefix, after, limit)
        out: dict[str, Any] = {
            "vectors": [{"id": vid} for vid in page],
            "namespace": params.get("namespace") or "",
            "usage": {"readUnits": 1},
        }
        if more and page:
            out["pagination"] = {"next": encode_token(page[-1])}
        return out

    def stats(self, body: dict[str, Any]) -> dict[str, Any]:
        node = parse_filter(body.get("filter"))
        counts = self.store.stats(node)
        return {
            "namespaces": {
                display_namespace(name): {"vectorCount": count}
                for name, count in sorted(counts.items())
            },
            "dimension": self.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(counts.values()),
            "metric": self.store.metric,
            "vectorType": "dense",
        }

    def list_namespaces(self, params: dict[str, str]) -> dict[str, Any]:
        prefix = params.get("prefix") or ""
        limit = parse_limit(params.get("limit"), 100, 100)
        token = params.get("paginationToken")
        after = decode_token(token) if token else None
        counts = self.store.stats()
        names = sorted(
            display_namespace(n) for n in counts if display_namespace(n).startswith(prefix)
        )
        if after is not None:
            names = [n for n in names if n > after]
        page = names[:limit]
        out: dict[str, Any] = {
            "namespaces": [
                {"name": n, "record_count": counts[parse_namespace(n)]} for n in page
            ],
            "total_count": len(names),
        }
        if len(names) > limit and page:
            out["pagination"] = {"next": encode_token(page[-1])}
        return out

    def describe_namespace(self, name: str) -> dict[str, Any]:
        counts = self.store.stats()
        key = parse_namespace(name)
        if key not in counts:
            raise ApiError(404, f"Namespace '{name}' not found")
        return {"name": display_namespace(key), "record_count": counts[key]}

    def delete_namespace(self, name: str) -> dict[str, Any]:
        key = parse_namespace(name)
        if not self.store.delete_namespace(key):
            raise ApiError(404, f"Namespace '{name}' not found")
        return {}


# ----------------------------------------------------------------------------- app
async def _drain(request: Request) -> None:
    """Read and discard the rest of the request body without buffering it."""
    try:
        async for _chunk in request.stream():
            pass
    except Exception:  # client went away; nothing to answer then
        logger.debug("could not drain request body", exc_info=True)


def create_app(store: IndexStore, api_key: str | None = None) -> FastAPI:
    handlers = Handlers(store)
    faults = FaultInjector()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        store.close()

    app = FastAPI(
        title="devstack local index server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.faults = faults

    @app.middleware("http")
    async def pipeline(request: Request, call_next):
        started = time.perf_counter()
        path = request.url.path
        response: Response | None = None
        counted = path not in _UNAUTHENTICATED_PATHS
        if counted:
            faults.in_flight += 1
        try:
            if counted and not request.headers.get(FAULT_EXEMPT_HEADER):
                rule = faults.take(path)
                if rule is not None:
                    if rule["delay_seconds"]:
                        await faults.stall(rule["delay_seconds"])
                    if rule["status"] is not None:
                        headers = {}
                        if rule["retry_after_seconds"] is not None:
                            headers["Retry-After"] = str(rule["retry_after_seconds"])
                        response = error_response(
                            rule["status"],
                            f"Injected fault: HTTP {rule['status']} for {path} "
                            f"(local index server fault injection)",
                            headers,
                        )
                if response is None and api_key:
                    supplied = request.headers.get("api-key")
                    if supplied is None:
                        response = error_response(401, "API key is missing (header Api-Key)")
                    elif not hmac.compare_digest(supplied.encode(), api_key.encode()):
                        response = error_response(401, "Invalid API Key")
            if response is None:
                length = request.headers.get("content-length")
                if length and length.isdigit() and int(length) > MAX_REQUEST_BYTES:
                    response = error_response(400, request_too_large(int(length)).message)
            if response is None:
                response = await call_next(request)
            else:
                # Answering before the client has finished sending can reset the connection
                # under it, which the client would see as a network error instead of our status.
                await _drain(request)
        except Exception:  # pragma: no cover - safety net
            logger.exception("unhandled error on %s %s", request.method, path)
            response = error_response(500, "Internal error in local index server")
        finally:
            if counted:
                faults.in_flight -= 1
        response.headers["x-pinecone-request-id"] = uuid.uuid4().hex[:16]
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info("%s %s %d %.1fms", request.method, path, response.status_code, elapsed_ms)
        return response

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"Internal error in local index server: {type(exc).__name__}")

    async def body_of(request: Request) -> dict[str, Any]:
        return parse_json_body(await request.body())

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "dimension": store.dimension, "metric": store.metric})

    def post_json(path: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """A POST route whose JSON body goes to a handler, run off the event loop."""
        async def endpoint(request: Request) -> Response:
            body = await body_of(request)
            return json_response(await run_in_threadpool(handler, body))

        app.add_api_route(path, endpoint, methods=["POST"])

    post_json("/vectors/upsert", handlers.upsert)
    post_json("/query", handlers.query)
    post_json("/vectors/fetch_by_metadata", handlers.fetch_by_metadata)
    post_json("/vectors/delete", handlers.delete)
    post_json("/vectors/update", handlers.update)
    post_json("/describe_index_stats", handlers.stats)

    @app.get("/vectors/fetch")
    async def fetch(request: Request) -> Response:
        ids = request.query_params.getlist("ids")
        namespace = request.query_params.get("namespace")
        return json_response(await run_in_threadpool(handlers.fetch, ids, namespace))

    @app.get("/vectors/list")
    async def list_ids(request: Request) -> Response:
        params = dict(request.query_params)
        return json_response(await run_in_threadpool(handlers.list_ids, params))

    @app.get("/describe_index_stats")
    async def stats_get() -> Response:
        return json_response(await run_in_threadpool(handlers.stats, {}))

    @app.get("/namespaces")
    async def list_namespaces(request: Request) -> Response:
        params = dict(request.query_params)
        return json_response(await run_in_threadpool(handlers.list_namespaces, params))

    @app.get("/namespaces/{name:path}")
    async def describe_namespace(name: str) -> Response:
        return json_response(await run_in_threadpool(handlers.describe_namespace, name))

    @app.delete("/namespaces/{name:path}")
    async def delete_namespace(name: str) -> Response:
        return json_response(await run_in_threadpool(handlers.delete_namespace, name))

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

    return app


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.index_server",
        description="Local Pinecone-compatible vector index server (REST data plane).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5081)
    parser.add_argument("--data-dir", default=".local/index")
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--metric", choices=METRICS, default="cosine")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("INDEX_SERVER_API_KEY") or None,
        help="require this value in the Api-Key header (default: $INDEX_SERVER_API_KEY; "
        "unset = no authentication)",
    )
    parser.add_argument("--log-level", default=os.environ.get("INDEX_SERVER_LOG_LEVEL", "info"))
    return parser


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        store = IndexStore(args.data_dir, args.dimension, args.metric)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    app = create_app(store, args.api_key)
    logger.info(
        "index server on http://%s:%d dimension=%d metric=%s data_dir=%s auth=%s",
        args.host,
        args.port,
        args.dimension,
        args.metric,
        args.data_dir,
        "on" if args.api_key else "off",
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        access_log=False,
        h11_max_incomplete_event_size=1024 * 1024,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
