"""The data plane of document indexes (Pinecone's Documents API, API version 2026-07)
on the local index server, beside the legacy Vectors API it already serves.

Each document index's data plane is served under its ``host``,
``{server}/document-indexes/{name}`` (:mod:`~devstack.index_server.document_control`
creates it), with the routes the SDK's ``Index.documents`` sends (``POST
/namespaces/{ns}/documents/upsert|search|fetch|delete|update|list``) and the
namespace and stats routes an index has (:mod:`~devstack.index_server.document_routes`).
Documents are checked against the index's schema here, stored by
:mod:`~devstack.index_server.document_store` and searched by
:mod:`~devstack.index_server.document_search`. Sources: Pinecone docs, Documents API,
Data modeling, Operation limits.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import unquote

from devstack.costs import Meter
from devstack.index_server import costs
from devstack.index_server.document_search import document_filter, include_fields, pick, search
from devstack.index_server.document_store import DocumentIndex, DocumentIndexes
from devstack.index_server.limits import MAX_IDS_PER_REQUEST, MAX_LIST_LIMIT, MAX_NAMESPACE_LENGTH
from devstack.index_server.protocol import (
    ApiError,
    bad_request,
    check_array,
    check_id,
    check_length,
    decode_token,
    encode_token,
    parse_limit,
    parse_metadata,
    parse_sparse,
    parse_values,
)

# Pinecone docs, Operation limits: "Max documents per upsert request: 1,000" (and 2 MB,
# enforced for every request by the app); the SDK's documents requests use the same
# 1,000 for ids per fetch or delete.
MAX_UPSERT_DOCUMENTS = 1_000
DEFAULT_FETCH_LIMIT = 100
MAX_FETCH_LIMIT = 10_000  # the SDK's FetchDocumentsRequest bound


class DocumentHandlers:
    """The data-plane operations of one server's document indexes. Each request
    names its index (from the host path) and namespace (from the route)."""

    def __init__(self, indexes: DocumentIndexes, meter: Meter) -> None:
        self.indexes = indexes
        self.meter = meter

    def _index(self, name: str) -> DocumentIndex:
        index = self.indexes.indexes.get(name)
        if index is None:
            raise ApiError(404, f"Index '{name}' not found")
        return index

    def _document(self, index: DocumentIndex, raw: Any, position: int) -> tuple[str, dict[str, Any]]:
        if not isinstance(raw, dict):
            raise bad_request(f"Document at position {position} must be a JSON object")
        doc_id = check_id(raw.get("_id"), f"Document _id at position {position}")
        doc: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        searchable = False
        for key, value in raw.items():
            if key == "_id":
                continue
            spec = index.fields.get(key)
            if spec is None:
                metadata[key] = value
                continue
            doc[key] = self._field_value(key, spec, value, doc_id)
            searchable = True
        for key, spec in index.fields.items():
            if spec["type"] == "dense_vector" and key not in doc:
                raise bad_request(f"Document '{doc_id}' is missing the dense_vector field '{key}', which "
                                  f"every document of this index needs")
        if not searchable:
            raise bad_request(f"Document '{doc_id}' has no searchable field; it needs at least one of "
                              f"{sorted(index.fields)}")
        clean = parse_metadata(metadata, doc_id) or {}
        return doc_id, {**doc, **clean}

    def _field_value(self, key: str, spec: dict[str, Any], value: Any, doc_id: str) -> Any:
        kind = spec["type"]
        if kind == "dense_vector":
            matrix = parse_values([value], [doc_id], spec["dimension"])
            if spec["metric"] == "cosine" and not matrix.any():
                raise bad_request(f"Dense vectors must contain at least one non-zero value (field '{key}' "
                                  f"of document '{doc_id}')")
            return [float(x) for x in matrix[0]]
        if kind == "sparse_vector":
            sparse = parse_sparse(value, f"field '{key}' of document '{doc_id}'")
            if sparse is None:
                return {"indices": [], "values": []}
            return {"indices": sparse.indices.tolist(), "values": sparse.values.tolist()}
        if not isinstance(value, str):
            raise bad_request(f"Field '{key}' of document '{doc_id}' is a full-text field and must be a "
                              f"string, got {type(value).__name__}")
        return value

    def upsert(self, index_name: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        """Stores ``body["documents"]`` (1 to 1,000, unique ``_id``), each replacing any
        document with its ``_id``: ``{"upserted_count": n}``. Every ``dense_vector``
        field is required; values are checked against the schema; the other fields are
        metadata (40 KB at most). ApiError 400 names the first bad document."""
        index = self._index(index_name)
        raw = check_array(body.get("documents"), MAX_UPSERT_DOCUMENTS,
                          missing="Upsert request must contain a non-empty 'documents' array",
                          too_many="Upsert request contains {count} documents, which exceeds the limit of "
                                   "{limit} documents per upsert request")
        docs = [self._document(index, item, position) for position, item in enumerate(raw)]
        if len({i for i, _d in docs}) != len(docs):
            raise bad_request("Document _id values must be unique within an upsert request")
        with index.lock:
            namespace = index.namespace(ns)
            overwritten = sum(namespace.sizes.get(i, 0) for i, _d in docs) if namespace else 0
            index.write(ns, docs)
        sent = sum(costs.document_bytes(i, d, index.fields) for i, d in docs)
        self.meter.add("documents_upsert", write_units=costs.write_units(sent + overwritten),
                       records=len(docs), record_bytes=sent)
        return {"upserted_count": len(docs)}

    def search(self, index_name: str, ns_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """The ``top_k`` best documents by ``score_by``, as
        :func:`~devstack.index_server.document_search.search` ranks them:
        ``{"matches": [{"_id", "_score", ...}], "namespace", "usage": {"read_units"}}``.
        ApiError 400 for a bad clause, top_k or filter."""
        matches, units = search(self._index(index_name), ns_name, body)
        self.meter.add("documents_search", read_units=units)
        return {"matches": matches, "namespace": ns_name, "usage": {"read_units": math.ceil(units)}}

    def fetch(self, index_name: str, ns_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Documents by ``ids`` (at most 1,000; unknown ones are left out) or by
        ``filter`` (by ``_id``, ``limit`` a page, default 100, with a pagination token
        for the next): ``{"documents": {id: document}, "namespace", "usage",
        "pagination"?}``; every field unless ``include_fields`` names some."""
        index = self._index(index_name)
        ids, raw_filter = body.get("ids"), body.get("filter")
        if bool(ids) == (raw_filter is not None):
            raise bad_request("Provide exactly one of 'ids' and 'filter' in a document fetch request")
        include = include_fields(body.get("include_fields"), default_all=True)
        out: dict[str, Any] = {}
        with index.lock:
            # a namespace that does not exist reads as an empty one
            ns = index.namespace(ns_name) or index.empty()
            if ids:
                found = [i for i in _requested_ids(ids) if i in ns.docs]
            else:
                keep = document_filter(index, ns, raw_filter)
                limit = parse_limit(body.get("limit"), DEFAULT_FETCH_LIMIT, MAX_FETCH_LIMIT)
                token = body.get("pagination_token")
                after = decode_token(token) if token else None
                matching = sorted(i for i in ns.docs if (after is None or i > after) and keep(i))
                found = matching[:limit]
                if len(matching) > limit and found:
                    out["pagination"] = {"next": encode_token(found[-1])}
            documents = {i: {"_id": i, **pick(ns.docs[i], include)} for i in found}
        units = costs.fetch_read_units(len(found))
        self.meter.add("documents_fetch", read_units=units, records=len(found))
        return {"documents": documents, "namespace": ns_name, "usage": {"read_units": units}, **out}

    def delete(self, index_name: str, ns_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Deletes by exactly one of ``ids``, ``filter`` (answers ``matched_records``)
        or ``delete_all``; unknown ids are no error."""
        index = self._index(index_name)
        ids, raw_filter, delete_all = body.get("ids"), body.get("filter"), body.get("delete_all") is True
        if sum([bool(ids), raw_filter is not None, delete_all]) != 1:
            raise bad_request("Provide exactly one of 'ids', 'filter' or 'delete_all' in a document delete request")
        with index.lock:
            ns = index.namespace(ns_name) or index.empty()
            if delete_all:
                index.drop_namespace(ns_name)
                self.meter.add("documents_delete", write_units=costs.DELETE_NAMESPACE_WRITE_UNITS)
                return {}
            if ids:
                doomed = [i for i in _requested_ids(ids) if i in ns.docs]
            else:
                keep = document_filter(index, ns, raw_filter)
                doomed = [i for i in ns.docs if keep(i)]
            deleted_bytes = sum(ns.sizes[i] for i in doomed)
            if doomed:
                index.write(ns_name, [], doomed)
        self.meter.add("documents_delete", write_units=costs.write_units(deleted_bytes), records=len(doomed),
                       record_bytes=deleted_bytes)
        return {"matched_records": len(doomed)} if raw_filter is not None else {}

    def update(self, index_name: str, ns_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Per-``_id`` patches (``documents``, with ``_remove_fields``) or one patch by
        ``filter`` (``set_fields``, ``remove_fields``); a patched document is checked as
        an upserted one would be. Unknown ids are a no-op."""
        index = self._index(index_name)
        with index.lock:
            ns = index.namespace(ns_name) or index.empty()
            patches: list[tuple[str, dict[str, Any], list[str]]] = []
            if body.get("documents") is not None:
                raw = body["documents"]
                if not isinstance(raw, list) or not raw or len(raw) > MAX_UPSERT_DOCUMENTS:
                    raise bad_request(f"'documents' must hold 1 to {MAX_UPSERT_DOCUMENTS} patches")
                for item in raw:
                    if not isinstance(item, dict):
                        raise bad_request("Each document patch must be an object with an '_id'")
                    doc_id = check_id(item.get("_id"))
                    removes = item.get("_remove_fields") or []
                    sets = {k: v for k, v in item.items() if k not in ("_id", "_remove_fields")}
                    patches.append((doc_id, sets, removes))
                matched = None
            elif body.get("filter") is not None:
                keep = document_filter(index, ns, body["filter"])
                sets, removes = body.get("set_fields") or {}, body.get("remove_fields") or []
                if not isinstance(sets, dict):
                    raise bad_request("set_fields must be an object of field values")
                if not sets and not removes:
                    raise bad_request("An update by filter needs 'set_fields' or 'remove_fields'")
                chosen = [i for i in ns.docs if keep(i)]
                patches = [(i, sets, removes) for i in chosen]
                matched = len(chosen)
            else:
                raise bad_request("Provide 'documents' or 'filter' in a document update request")
            updated = []
            for doc_id, sets, removes in patches:
                if doc_id not in ns.docs:
                    continue
                if any(v is None for v in sets.values()):
                    raise bad_request(f"Field values must not be null (document '{doc_id}'); remove a field "
                                      f"with _remove_fields")
                if not isinstance(removes, list) or not all(isinstance(r, str) for r in removes):
                    raise bad_request("remove fields must be an array of field names")
                merged = {k: v for k, v in ns.docs[doc_id].items() if k not in removes}
                merged.update(sets)
                updated.append(self._document(index, {"_id": doc_id, **merged}, len(updated)))
            before = sum(ns.sizes[i] for i, _d in updated)
            if updated:
                index.write(ns_name, updated)
        after = sum(costs.document_bytes(i, d, index.fields) for i, d in updated)
        self.meter.add("documents_update", write_units=costs.write_units(before + after), records=len(updated),
                       record_bytes=after)
        return {"matched_records": matched} if matched is not None else {}

    def list(self, index_name: str, ns_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A page of ``_id`` values in order (``prefix``, ``limit`` up to 100, a
        pagination token): ``{"documents": [{"_id"}], "namespace", "usage",
        "pagination"?}``."""
        index = self._index(index_name)
        prefix = body.get("prefix") or ""
        if not isinstance(prefix, str) or len(prefix) > 512:
            raise bad_request("prefix must be a string of at most 512 characters")
        limit = parse_limit(body.get("limit"), MAX_LIST_LIMIT, MAX_LIST_LIMIT)
        token = body.get("pagination_token")
        after = decode_token(token) if token else None
        with index.lock:
            ns = index.namespace(ns_name) or index.empty()
            ids = sorted(i for i in ns.docs if i.startswith(prefix) and (after is None or i > after))
        page = ids[:limit]
        self.meter.add("documents_list", read_units=costs.LIST_READ_UNITS, records=len(page))
        out: dict[str, Any] = {"documents": [{"_id": i} for i in page], "namespace": ns_name,
                               "usage": {"read_units": costs.LIST_READ_UNITS}}
        if len(ids) > limit and page:
            out["pagination"] = {"next": encode_token(page[-1])}
        return out

    def stats(self, index_name: str) -> dict[str, Any]:
        """``describe_index_stats`` as a legacy index answers it: documents per
        namespace, and the dense field's dimension and metric when there is one."""
        index = self._index(index_name)
        with index.lock:
            counts = {n: len(ns.docs) for n, ns in sorted(index.namespaces.items()) if ns.docs}
        dense = [f for f in index.fields.values() if f["type"] == "dense_vector"]
        out: dict[str, Any] = {
            "namespaces": {n: {"vectorCount": c} for n, c in counts.items()},
            "indexFullness": 0.0,
            "totalVectorCount": sum(counts.values()),
        }
        if dense:
            out["dimension"] = dense[0]["dimension"]
            out["metric"] = dense[0]["metric"]
        return out

    def list_namespaces(self, index_name: str) -> dict[str, Any]:
        """The namespaces holding documents, with their counts."""
        index = self._index(index_name)
        with index.lock:
            names = [(n, len(ns.docs)) for n, ns in sorted(index.namespaces.items()) if ns.docs]
        return {"namespaces": [{"name": n, "record_count": c} for n, c in names], "total_count": len(names)}

    def delete_namespace(self, index_name: str, ns_name: str) -> dict[str, Any]:
        """Deletes a namespace and its documents; ApiError 404 when it holds none."""
        index = self._index(index_name)
        if not index.drop_namespace(ns_name):
            raise ApiError(404, f"Namespace '{ns_name}' not found")
        self.meter.add("delete_namespace", write_units=costs.DELETE_NAMESPACE_WRITE_UNITS)
        return {}


def _requested_ids(ids: Any) -> list[str]:
    """The ``ids`` of a fetch or delete request, checked, without repeats."""
    if not isinstance(ids, list) or len(ids) > MAX_IDS_PER_REQUEST:
        raise bad_request(f"ids must be an array of at most {MAX_IDS_PER_REQUEST} ids")
    return list(dict.fromkeys(check_id(i) for i in ids))


def namespace_segment(raw: str) -> str:
    """The namespace a route's path segment names (percent-decoded, as the SDK encodes
    it); 400 for an empty one."""
    name = unquote(raw)
    if not name.strip():
        raise bad_request("namespace must be a non-empty string")
    check_length(name, "Namespace", MAX_NAMESPACE_LENGTH)
    return name

