"""What Pinecone would bill for each request to a serverless index, in read units (RU)
and write units (WU), and the operation names the server counts them under.

Source of every rule: Pinecone docs, "Understand Pinecone cost"
(https://docs.pinecone.io/guides/cost/understand-cost), sections Read units, Write
units and Storage. "1 KB" and "1 GB" there are decimal: the page's examples give a
768-dimension record with 500 bytes of metadata as 3.57 KB and 500,000 of them as
1.79 GB. Describe index stats and the namespace listings bill no units (the page
names none for them).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from devstack.index_server.sparse import SparseVector

# Counted per operation (devstack.costs.Meter): requests, errors (status >= 400), HTTP
# body bytes each way, the units billed, and the records those units were billed for
# with their size in bytes (record_bytes below).
INDEX_FIELDS = ("requests", "errors", "request_bytes", "response_bytes", "read_units", "write_units",
                "records", "record_bytes")

# Understand Pinecone cost, Read units > Query: "1 RU for every 1 GB of namespace size,
# with a minimum of 0.25 RUs per query"; top_k, include_metadata and include_values
# don't change it.
QUERY_MIN_READ_UNITS = 0.25
BYTES_PER_QUERY_READ_UNIT = 1_000_000_000
# Read units > Fetch: "1 RU for every 10 records fetched"; non-existent or repeated ids
# add nothing; "at least 1 RU". Fetching by metadata: the same model.
RECORDS_PER_FETCH_READ_UNIT = 10
# Read units > List: "A list request uses 1 RU and returns up to 100 IDs."
LIST_READ_UNITS = 1
# Write units > Upsert, Update, Delete: "1 WU for each 1 KB ..., with a minimum of 5 WUs
# per request".
BYTES_PER_WRITE_UNIT = 1_000
MIN_WRITE_UNITS = 5
# Write units > Delete: deleting a namespace, or all of its records with deleteAll,
# "uses 5 WUs".
DELETE_NAMESPACE_WRITE_UNITS = 5

_OPERATIONS = {
    ("POST", "/vectors/upsert"): "upsert",
    ("POST", "/query"): "query",
    ("GET", "/vectors/fetch"): "fetch",
    ("POST", "/vectors/fetch_by_metadata"): "fetch_by_metadata",
    ("POST", "/vectors/delete"): "delete",
    ("POST", "/vectors/update"): "update",
    ("GET", "/vectors/list"): "list",
    ("GET", "/describe_index_stats"): "describe_index_stats",
    ("POST", "/describe_index_stats"): "describe_index_stats",
    ("GET", "/namespaces"): "list_namespaces",
}


def operation(method: str, path: str) -> str:
    """The name a request is counted under: ``upsert``, ``query``, ``fetch``,
    ``fetch_by_metadata``, ``delete``, ``update``, ``list``, ``describe_index_stats``,
    ``list_namespaces``, ``describe_namespace``, ``delete_namespace``; a document index's
    ``documents_upsert``, ``documents_search``, ``documents_fetch``, ``documents_delete``,
    ``documents_update``, ``documents_list`` (its stats and namespace routes count as the
    legacy index's do); else ``other``."""
    if path.startswith("/document-indexes/"):
        # a document index's data plane: .../namespaces/{ns}/documents/{operation}
        parts = path.rstrip("/").split("/")
        if len(parts) >= 3 and parts[-2] == "documents":
            return f"documents_{parts[-1]}"
        path = "/" + "/".join(parts[3:])
    if path.startswith("/namespaces/"):
        return {"GET": "describe_namespace", "DELETE": "delete_namespace"}.get(method, "other")
    return _OPERATIONS.get((method, path), "other")


def record_bytes(vid: str, dimension: int, metadata: dict[str, Any] | None, sparse: SparseVector | None) -> int:
    """A record's size in bytes as Pinecone counts it (Understand Pinecone cost, Storage,
    "Index with both dense and sparse vectors"): ID size + metadata size + dense
    dimensions x 4 bytes + non-zero sparse values x 8 bytes. The ID counts in UTF-8
    bytes, the metadata as compact JSON (as the 40 KB metadata limit is checked)."""
    meta = len(orjson.dumps(metadata)) if metadata else 0
    return len(vid.encode()) + meta + 4 * dimension + 8 * (len(sparse) if sparse is not None else 0)


def query_read_units(namespace_bytes: int) -> float:
    """RUs of one query against a namespace of *namespace_bytes* (the sum of its
    records' :func:`record_bytes`): 1 per GB, at least 0.25. An empty or missing
    namespace costs the minimum."""
    return max(QUERY_MIN_READ_UNITS, namespace_bytes / BYTES_PER_QUERY_READ_UNIT)


def fetch_read_units(records_found: int) -> int:
    """RUs of a fetch (by id or by metadata) that returned *records_found* distinct
    records: 1 per 10 started (107 records: 11), at least 1."""
    return max(1, math.ceil(records_found / RECORDS_PER_FETCH_READ_UNIT))


def write_units(written_bytes: int) -> int:
    """WUs of an upsert, update or delete whose records come to *written_bytes*
    (:func:`record_bytes` summed): 1 per KB started, at least 5.

    What each request counts (Understand Pinecone cost, Write units): an upsert, the
    records it sends plus any existing record it overwrites; an update, the new and
    the existing record; a delete, the records it deletes (non-existent or repeated
    ids add nothing). The page's tables round the whole request up, not each record
    (two 3.2 KB records: 7 WUs)."""
    return max(MIN_WRITE_UNITS, math.ceil(written_bytes / BYTES_PER_WRITE_UNIT))


def document_bytes(doc_id: str, document: dict[str, Any], fields: dict[str, dict[str, Any]]) -> int:
    """A document's size in bytes, counted as :func:`record_bytes` counts a record:
    the ``_id`` in UTF-8, 4 bytes per dense value and 8 per non-zero sparse value of
    the vector fields, the UTF-8 bytes of each full-text field, and the other
    (metadata) fields as compact JSON."""
    size = len(doc_id.encode())
    metadata = {}
    for key, value in document.items():
        kind = fields.get(key, {}).get("type")
        if kind == "dense_vector":
            size += 4 * len(value)
        elif kind == "sparse_vector":
            size += 8 * len(value.get("indices", ()))
        elif kind == "string":
            size += len(value.encode())
        else:
            metadata[key] = value
    return size + (len(orjson.dumps(metadata)) if metadata else 0)
