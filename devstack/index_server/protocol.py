"""The Pinecone data-plane wire format: error bodies, JSON responses and the
parsing and validation of request bodies (ids, namespaces, metadata, dense and
sparse values, filters, pagination tokens and limits).

Every check raises :class:`ApiError` with the status and the message Pinecone
gives (or the closest we know), so the official SDK raises the same exception
types against this server as against Pinecone.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response

from devstack.index_server.columns import is_number
from devstack.index_server.filters import FilterError, FilterNode, compile_filter
from devstack.index_server.limits import (
    MAX_ID_LENGTH,
    MAX_IDS_PER_REQUEST,
    MAX_METADATA_BYTES,
    MAX_NAMESPACE_LENGTH,
    MAX_REQUEST_BYTES,
    MAX_SPARSE_INDEX,
    MAX_SPARSE_VALUES,
)
from devstack.index_server.sparse import SparseVector

DEFAULT_NAMESPACE_ALIAS = "__default__"
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


# ----------------------------------------------------------------------------- parsing
def pick(body: dict[str, Any], camel: str, snake: str | None = None, default: Any = None) -> Any:
    """The field *camel* of a request body, or its snake_case spelling *snake* (the
    SDK sends camelCase; both are accepted, as Pinecone does)."""
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
        except RecursionError:  # nesting orjson refused and the stdlib parser's stack cannot hold
            raise bad_request("Request body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object")
    return body


async def body_of(request: Request) -> dict[str, Any]:
    """The request's JSON body, checked by :func:`parse_json_body`."""
    return parse_json_body(await request.body())


def request_too_large(size: int) -> ApiError:
    return bad_request(
        f"Request size is {size} bytes ({size / 1024 / 1024:.2f} MB), which exceeds the limit "
        f"of {MAX_REQUEST_BYTES} bytes (2 MB) per request"
    )


def check_length(value: str, what: str, limit: int) -> None:
    """ApiError 400 naming *what* and *limit* when *value* has more than *limit* characters."""
    if len(value) > limit:
        raise bad_request(
            f"{what} length is {len(value)} characters, which exceeds the limit of {limit} characters"
        )


def check_array(value: Any, limit: int, *, missing: str, too_many: str) -> list[Any]:
    """*value*, checked to be a non-empty array of at most *limit* items. ApiError 400
    with *missing* when it is not an array or is empty, or with *too_many* (formatted
    with ``count`` and ``limit``) when it is longer."""
    if not isinstance(value, list) or not value:
        raise bad_request(missing)
    if len(value) > limit:
        raise bad_request(too_many.format(count=len(value), limit=limit))
    return value


def parse_namespace(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"namespace must be a string, got {type(value).__name__}")
    check_length(value, "Namespace", MAX_NAMESPACE_LENGTH)
    return "" if value == DEFAULT_NAMESPACE_ALIAS else value


def display_namespace(name: str) -> str:
    return DEFAULT_NAMESPACE_ALIAS if name == "" else name


def check_id(value: Any, what: str = "Vector ID") -> str:
    if not isinstance(value, str):
        raise bad_request(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise bad_request(f"{what} must not be empty")
    check_length(value, what, MAX_ID_LENGTH)
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
                if value is not None and not is_number(value):
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
        if value is not None and not is_number(value):
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

