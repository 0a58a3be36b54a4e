"""The Pinecone data-plane operations (upsert, query, fetch, fetch by metadata,
delete, list, update, stats, namespaces): each takes a parsed request, validates
it with :mod:`devstack.index_server.protocol` and answers from the
:class:`~devstack.index_server.store.IndexStore`. Each one that succeeds charges the
read or write units Pinecone would bill (:mod:`devstack.index_server.costs`) to the
server's :class:`~devstack.costs.Meter`.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from devstack.costs import Meter
from devstack.index_server import costs
from devstack.index_server.limits import (
    DEFAULT_FETCH_BY_METADATA_LIMIT,
    DEFAULT_LIST_LIMIT,
    MAX_FETCH_BY_METADATA_LIMIT,
    MAX_ID_LENGTH,
    MAX_LIST_LIMIT,
    MAX_TOP_K,
    MAX_TOP_K_WITH_DATA,
    MAX_UPSERT_VECTORS,
)
from devstack.index_server.protocol import (
    SPARSE_METRIC_MESSAGE,
    ApiError,
    bad_request,
    check_id,
    check_ids,
    check_metadata_size,
    decode_token,
    display_namespace,
    encode_token,
    fetched_record,
    parse_bool,
    parse_filter,
    parse_limit,
    parse_metadata,
    parse_namespace,
    parse_sparse,
    parse_values,
    pick,
)
from devstack.index_server.sparse import SparseVector
from devstack.index_server.store import IndexStore

class Handlers:
    """Synchronous request handlers (run in the thread pool)."""

    def __init__(self, store: IndexStore, meter: Meter | None = None) -> None:
        self.store = store
        self.dimension = store.dimension
        self.meter = meter if meter is not None else Meter(costs.INDEX_FIELDS)

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
        sent_bytes = 0
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
            raw_sparse = pick(item, "sparseValues", "sparse_values")
            sparse.append(parse_sparse(raw_sparse, f"vector '{vid}'"))
            sent_bytes += costs.record_bytes(vid, self.dimension, metadatas[-1], sparse[-1])
        matrix = self._dense(raw_values, ids)
        overwritten = self.store.record_sizes(namespace, ids)
        count = self.store.upsert(namespace, ids, matrix, metadatas, sparse)
        self.meter.add("upsert", write_units=costs.write_units(sent_bytes + sum(overwritten.values())),
                       records=len(ids), record_bytes=sent_bytes)
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
        raw_sparse = pick(body, "sparseVector", "sparse_vector")
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
        top_k = pick(body, "topK", "top_k")
        if not isinstance(top_k, int) or isinstance(top_k, bool):
            raise bad_request("Query must provide 'topK' as an integer")
        include_values = parse_bool(pick(body, "includeValues", "include_values"), "includeValues")
        include_metadata = parse_bool(
            pick(body, "includeMetadata", "include_metadata"), "includeMetadata"
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
        self.meter.add("query", read_units=costs.query_read_units(self.store.namespace_bytes(namespace)))
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
        units = costs.fetch_read_units(len(found))
        self.meter.add("fetch", read_units=units, records=len(found))
        return {"vectors": vectors, "namespace": namespace_raw or "", "usage": {"readUnits": units}}

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
        token = pick(body, "paginationToken", "pagination_token")
        after = decode_token(token) if token else None
        ids = sorted(self.store.matching_ids(namespace, node))
        if after is not None:
            ids = ids[bisect.bisect_right(ids, after) :]
        page, more = ids[:limit], len(ids) > limit
        found = self.store.fetch(namespace, page)
        vectors = {record[0]: fetched_record(*record) for record in found}
        units = costs.fetch_read_units(len(found))
        self.meter.add("fetch_by_metadata", read_units=units, records=len(found))
        out: dict[str, Any] = {
            "vectors": vectors,
            "namespace": body.get("namespace") or "",
            "usage": {"readUnits": units},
        }
        if more and page:
            out["pagination"] = {"next": encode_token(page[-1])}
        return out

    def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = parse_namespace(body.get("namespace"))
        ids = body.get("ids")
        delete_all = parse_bool(pick(body, "deleteAll", "delete_all"), "deleteAll")
        raw_filter = body.get("filter")
        selectors = sum([ids is not None and ids != [], delete_all, raw_filter is not None])
        if selectors > 1:
            raise bad_request("Delete request must specify only one of ids, deleteAll or filter")
        if delete_all:
            self.store.delete_namespace(namespace)
            self.meter.add("delete", write_units=costs.DELETE_NAMESPACE_WRITE_UNITS)
            return {}
        if ids is not None and ids != []:
            ids = check_ids(ids, "delete")
        elif raw_filter is not None:
            if raw_filter == {}:
                raise bad_request("Delete with empty metadata filter is not allowed")
            node = parse_filter(raw_filter)
            assert node is not None
            ids = self.store.matching_ids(namespace, node)
        else:
            raise bad_request("Delete request must specify ids, deleteAll or filter")
        deleted = self.store.record_sizes(namespace, ids)
        self.store.delete_ids(namespace, ids)
        deleted_bytes = sum(deleted.values())
        self.meter.add("delete", write_units=costs.write_units(deleted_bytes), records=len(deleted),
                       record_bytes=deleted_bytes)
        return {}

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = parse_namespace(body.get("namespace"))
        vid = body.get("id")
        raw_filter = body.get("filter")
        values = body.get("values")
        raw_sparse = pick(body, "sparseValues", "sparse_values")
        dry_run = parse_bool(pick(body, "dryRun", "dry_run"), "dryRun")
        if vid is not None and raw_filter is not None:
            raise bad_request("Update request must specify either 'id' or 'filter', not both")
        if vid is None and raw_filter is None:
            raise bad_request("Update request must specify 'id' or 'filter'")
        label = vid if isinstance(vid, str) else "<filter>"
        set_metadata = parse_metadata(
            pick(body, "setMetadata", "set_metadata"), label, for_update=True
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
        before = self.store.record_sizes(namespace, ids)
        matched = self.store.update(
            namespace, ids, matrix, set_metadata, dry_run=dry_run,
            check_metadata=check_metadata_size, sparse=sparse, set_sparse=raw_sparse is not None,
        )
        if not dry_run:  # a dry run writes nothing; the cost page names no charge for it
            after = sum(self.store.record_sizes(namespace, list(before)).values())
            self.meter.add("update", write_units=costs.write_units(sum(before.values()) + after),
                           records=len(before), record_bytes=after)
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
        self.meter.add("list", read_units=costs.LIST_READ_UNITS, records=len(page))
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
        self.meter.add("delete_namespace", write_units=costs.DELETE_NAMESPACE_WRITE_UNITS)
        return {}

