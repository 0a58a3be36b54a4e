"""Document indexes (Pinecone's Documents API, API version 2026-07) on the local
index server, beside the legacy Vectors API it already serves.

Control plane (what ``pc.indexes.create/describe/list/configure/delete`` send):

* ``POST /indexes``          ``{"name", "schema": {"fields": {...}}, "deletion_protection", "tags"}``
* ``GET /indexes``, ``GET|PATCH|DELETE /indexes/{name}``

A schema declares ``dense_vector`` (``dimension``, ``metric``), ``sparse_vector`` and
``string`` fields with ``full_text_search``; integrated embedding (``embed``,
``sparse_embed``) and a legacy vector schema (the reserved ``_values`` field) are
refused with a 400 saying so. Each document index's data plane is served under its
``host``, ``{server}/document-indexes/{name}``, with the routes the SDK's
``Index.documents`` sends (``POST /namespaces/{ns}/documents/upsert|search|fetch|
delete|update|list``) and the namespace and stats routes an index has.

Search ranks by ``score_by``: one ``dense_vector`` or ``sparse_vector`` clause, or
any number of ``text`` and ``query_string`` clauses whose BM25 scores add up
(:mod:`~devstack.index_server.fulltext`, on tantivy). Filters use the metadata filter
language of :mod:`~devstack.index_server.filters` on undeclared fields and the
text-match operators (``$match_phrase``, ``$match_all``, ``$match_any``) on full-text
fields. Sources: Pinecone docs, Documents API, Data modeling, Full-text search (and
its query-syntax and text-processing pages), Operation limits.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import numpy as np
import orjson

from devstack.costs import Meter
from devstack.index_server import costs
from devstack.index_server.filters import FilterError, compile_filter
from devstack.index_server.fulltext import (
    FullTextConfigError,
    QueryError,
    TextIndex,
    check_config,
)
from devstack.index_server.limits import (
    MAX_IDS_PER_REQUEST,
    MAX_LIST_LIMIT,
    MAX_TOP_K,
)
from devstack.index_server.protocol import (
    ApiError,
    bad_request,
    check_id,
    decode_token,
    encode_token,
    parse_limit,
    parse_metadata,
    parse_sparse,
    parse_values,
)
from devstack.index_server.sparse import SparseVector

# Pinecone docs, Operation limits: "Max documents per upsert request: 1,000" (and 2 MB,
# enforced for every request by the app); the SDK's documents requests use the same
# 1,000 for ids per fetch or delete and 100 clauses per score_by.
MAX_UPSERT_DOCUMENTS = 1_000
MAX_SCORE_BY_CLAUSES = 100
MAX_DENSE_DIMENSION = 20_000  # Pinecone docs, Limits: max dimensionality for dense vectors
DEFAULT_FETCH_LIMIT = 100
MAX_FETCH_LIMIT = 10_000  # the SDK's FetchDocumentsRequest bound
# Pinecone docs, Object limits / the SDK's require_valid_resource_name: index names are
# lower-case letters, digits and hyphens, at most 45 characters.
_INDEX_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$")
METRICS = ("cosine", "dotproduct", "euclidean")
TEXT_MATCH_OPS = ("$match_phrase", "$match_all", "$match_any")
HOST_PREFIX = "/document-indexes"


class ControlPlaneError(ApiError):
    """A control-plane error, rendered in Pinecone's control-plane shape
    ``{"error": {"code", "message"}, "status"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code


# ----------------------------------------------------------------------------- schema
def check_schema(schema: Any) -> dict[str, dict[str, Any]]:
    """The ``fields`` of a create request's *schema*, checked: a non-empty object of
    field name to declaration; ``dense_vector`` with an integer ``dimension``
    (1..20,000) and a ``metric`` (cosine, dotproduct, euclidean; default cosine), at
    most one per index (the SDK: "the index's one dense slot"); ``sparse_vector``;
    ``string`` with ``full_text_search``.

    Raises:
        ApiError: 400 with a message naming the field, for anything else.
    """
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), dict) or not schema["fields"]:
        raise bad_request("schema must be an object with a non-empty 'fields' object")
    fields: dict[str, dict[str, Any]] = {}
    if set(schema["fields"]) & {"_values", "_sparse_values"}:
        raise bad_request(
            "This schema declares a legacy vector index; the local index server serves its "
            "one legacy index from its --dimension and --metric flags, and creates only "
            "document indexes"
        )
    for name, spec in schema["fields"].items():
        if not isinstance(name, str) or not name or name.startswith(("_", "$")) or len(name) > 64:
            raise bad_request(f"Invalid field name {name!r}: 1 to 64 characters, not starting with '_' or '$'")
        if not isinstance(spec, dict):
            raise bad_request(f"Field '{name}' must be an object with a 'type'")
        kind = spec.get("type")
        if kind == "dense_vector":
            dimension = spec.get("dimension")
            if not isinstance(dimension, int) or isinstance(dimension, bool) or not 1 <= dimension <= MAX_DENSE_DIMENSION:
                raise bad_request(f"Field '{name}': dimension must be an integer from 1 to {MAX_DENSE_DIMENSION}")
            metric = spec.get("metric", "cosine")
            if metric not in METRICS:
                raise bad_request(f"Field '{name}': metric must be one of {list(METRICS)}, got {metric!r}")
            fields[name] = {"type": kind, "dimension": dimension, "metric": metric}
        elif kind == "sparse_vector":
            fields[name] = {"type": kind}
        elif kind == "string":
            if "embed" in spec or "sparse_embed" in spec:
                raise bad_request(
                    f"Field '{name}': integrated embedding (embed, sparse_embed) is not served by "
                    f"the local index server"
                )
            if "full_text_search" not in spec:
                raise bad_request(
                    f"Field '{name}': a string field in the schema must declare full_text_search; "
                    f"metadata to filter on is not declared"
                )
            try:
                config = check_config(name, spec["full_text_search"])
            except FullTextConfigError as exc:
                raise bad_request(str(exc)) from None
            fields[name] = {"type": kind, "full_text_search": dict(config)}
        else:
            raise bad_request(
                f"Field '{name}': type must be dense_vector, sparse_vector or string, got {kind!r}"
            )
    if sum(f["type"] == "dense_vector" for f in fields.values()) > 1:
        raise bad_request("A schema may declare at most one dense_vector field")
    return fields


# ----------------------------------------------------------------------------- storage
class Namespace:
    """One namespace's documents (``_id`` to document), its full-text index and, per
    vector field, a matrix of the documents that carry it, rebuilt after writes."""

    def __init__(self, fields: dict[str, dict[str, Any]]) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.sizes: dict[str, int] = {}
        self.text = TextIndex({n: f["full_text_search"] for n, f in fields.items() if f["type"] == "string"}) \
            if any(f["type"] == "string" for f in fields.values()) else None
        self._dense: dict[str, tuple[list[str], np.ndarray]] = {}

    def dense(self, field: str, dimension: int) -> tuple[list[str], np.ndarray]:
        if field not in self._dense:
            ids = [i for i, d in self.docs.items() if field in d]
            matrix = np.array([self.docs[i][field] for i in ids], dtype=np.float32).reshape(len(ids), dimension)
            self._dense[field] = (ids, matrix)
        return self._dense[field]

    def changed(self) -> None:
        self._dense.clear()


class DocumentIndex:
    """A document index: its description and its namespaces, persisted in one SQLite
    file (the documents as JSON; the full-text and vector indexes are rebuilt from them
    when the server starts). Thread-safe: one lock per index."""

    def __init__(self, path: str, description: dict[str, Any]) -> None:
        self.path = path
        self.description = description
        self.fields: dict[str, dict[str, Any]] = description["schema"]["fields"]
        self.lock = threading.RLock()
        self.namespaces: dict[str, Namespace] = {}
        self._empty: Namespace | None = None
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS documents (namespace TEXT NOT NULL, id TEXT NOT NULL, "
                        "body TEXT NOT NULL, PRIMARY KEY (namespace, id))")
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('description', ?)", (json.dumps(description),))
        self.db.commit()
        by_ns: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for ns, doc_id, body in self.db.execute("SELECT namespace, id, body FROM documents"):
            by_ns.setdefault(ns, []).append((doc_id, json.loads(body)))
        for ns, docs in by_ns.items():
            self._apply(ns, docs, [])

    @property
    def name(self) -> str:
        return self.description["name"]

    def save_description(self) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('description', ?)", (json.dumps(self.description),))
            self.db.commit()

    def empty(self) -> Namespace:
        """An empty namespace of this index's fields, for requests to one that does not exist."""
        if self._empty is None:
            self._empty = Namespace(self.fields)
        return self._empty

    def namespace(self, name: str, create: bool = False) -> Namespace | None:
        if name not in self.namespaces and create:
            self.namespaces[name] = Namespace(self.fields)
        return self.namespaces.get(name)

    def _apply(self, ns_name: str, upserts: list[tuple[str, dict[str, Any]]], deletes: list[str]) -> None:
        ns = self.namespace(ns_name, create=True)
        assert ns is not None
        for doc_id in deletes:
            ns.docs.pop(doc_id, None)
            ns.sizes.pop(doc_id, None)
        for doc_id, doc in upserts:
            ns.docs[doc_id] = doc
            ns.sizes[doc_id] = costs.document_bytes(doc_id, doc, self.fields)
        if ns.text is not None:
            ns.text.write(upserts, deletes)
        ns.changed()

    def write(self, ns_name: str, upserts: list[tuple[str, dict[str, Any]]], deletes: list[str] = ()) -> None:
        """Store *upserts* (replacing documents with the same ``_id``) and remove
        *deletes*, on disk first, then in memory."""
        deletes = list(deletes)
        with self.lock:
            with self.db:
                self.db.executemany("DELETE FROM documents WHERE namespace = ? AND id = ?",
                                    [(ns_name, i) for i in deletes])
                self.db.executemany("INSERT OR REPLACE INTO documents VALUES (?, ?, ?)",
                                    [(ns_name, i, orjson.dumps(d).decode()) for i, d in upserts])
            self._apply(ns_name, upserts, deletes)

    def drop_namespace(self, ns_name: str) -> bool:
        with self.lock:
            with self.db:
                self.db.execute("DELETE FROM documents WHERE namespace = ?", (ns_name,))
            return self.namespaces.pop(ns_name, None) is not None

    def close(self) -> None:
        self.db.close()


class DocumentIndexes:
    """Every document index of the server, kept under ``{data_dir}/documents/``, one
    SQLite file per index."""

    def __init__(self, data_dir: str) -> None:
        self.root = os.path.join(data_dir, "documents")
        os.makedirs(self.root, exist_ok=True)
        self.lock = threading.Lock()
        self.indexes: dict[str, DocumentIndex] = {}
        for entry in sorted(os.listdir(self.root)):
            if entry.endswith(".sqlite3"):
                path = os.path.join(self.root, entry)
                with sqlite3.connect(path) as db:
                    row = db.execute("SELECT v FROM meta WHERE k = 'description'").fetchone()
                if row is not None:
                    description = json.loads(row[0])
                    self.indexes[description["name"]] = DocumentIndex(path, description)

    def get(self, name: str) -> DocumentIndex:
        index = self.indexes.get(name)
        if index is None:
            raise ControlPlaneError(404, "NOT_FOUND", f"Resource {name} not found")
        return index

    def close(self) -> None:
        for index in self.indexes.values():
            index.close()


# ----------------------------------------------------------------------------- control plane
class ControlPlane:
    """The index operations of Pinecone's control plane, for document indexes."""

    def __init__(self, indexes: DocumentIndexes) -> None:
        self.indexes = indexes

    def create(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        """Creates the document index *body* describes (``name``, ``schema``,
        ``deletion_protection``, default disabled, ``tags``, ``deployment``) and answers
        its description, ready at once, its ``host`` on *base_url*.

        Raises:
            ControlPlaneError: 400 for a bad name, schema, protection or tags; 409 when
                the name is taken.
        """
        name = body.get("name")
        if not isinstance(name, str) or not _INDEX_NAME.match(name):
            raise ControlPlaneError(400, "INVALID_ARGUMENT", "Index name must consist of lower case "
                                    "alphanumeric characters or '-', start and end with one, and be at "
                                    f"most 45 characters, got {name!r}")
        fields = check_schema(body.get("schema"))
        protection = body.get("deletion_protection") or "disabled"
        if protection not in ("enabled", "disabled"):
            raise ControlPlaneError(400, "INVALID_ARGUMENT", "deletion_protection must be 'enabled' or 'disabled'")
        tags = body.get("tags")
        if tags is not None and (not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())):
            raise ControlPlaneError(400, "INVALID_ARGUMENT", "tags must be an object of strings")
        deployment = body.get("deployment") or {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
        with self.indexes.lock:
            if name in self.indexes.indexes:
                raise ControlPlaneError(409, "ALREADY_EXISTS", f"Resource {name} already exists")
            description = {
                "name": name,
                "status": {"ready": True, "state": "Ready"},
                "schema": {"fields": fields},
                "deployment": deployment,
                "deletion_protection": protection,
                "tags": tags or None,
            }
            path = os.path.join(self.indexes.root, f"{name}.sqlite3")
            if os.path.exists(path):  # left by a delete that could not remove it
                os.remove(path)
            self.indexes.indexes[name] = DocumentIndex(path, description)
        return _hosted(description, base_url)

    def describe(self, name: str, base_url: str) -> dict[str, Any]:
        """The index's description; ControlPlaneError 404 when there is none."""
        return _hosted(self.indexes.get(name).description, base_url)

    def list(self, base_url: str) -> dict[str, Any]:
        """``{"indexes": [description, ...]}``, by name."""
        return {"indexes": [_hosted(i.description, base_url) for _n, i in sorted(self.indexes.indexes.items())]}

    def configure(self, name: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        """Deletion protection and tags change in place (a tag set to ``""`` is
        removed); the schema cannot change (Data modeling: "You declare the schema
        when you create the index, and you can't change it afterward")."""
        index = self.indexes.get(name)
        with index.lock:
            described = index.description
            if body.get("schema") is not None and check_schema(body["schema"]) != described["schema"]["fields"]:
                raise ControlPlaneError(400, "INVALID_ARGUMENT", "An index's schema cannot be changed after it is created")
            protection = body.get("deletion_protection")
            if protection is not None:
                if protection not in ("enabled", "disabled"):
                    raise ControlPlaneError(400, "INVALID_ARGUMENT", "deletion_protection must be 'enabled' or 'disabled'")
                described["deletion_protection"] = protection
            tags = body.get("tags")
            if tags is not None:
                if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
                    raise ControlPlaneError(400, "INVALID_ARGUMENT", "tags must be an object of strings")
                merged = {**(described.get("tags") or {}), **tags}
                described["tags"] = {k: v for k, v in merged.items() if v != ""} or None
            index.save_description()
            return _hosted(described, base_url)

    def delete(self, name: str) -> None:
        """Deletes the index and its documents.

        Raises:
            ControlPlaneError: 404 when there is none; 403 while its deletion protection
                is enabled.
        """
        with self.indexes.lock:
            index = self.indexes.get(name)
            if index.description["deletion_protection"] == "enabled":
                raise ControlPlaneError(403, "FORBIDDEN", f"Deletion protection is enabled for index {name}. "
                                        "Disable deletion protection before retrying.")
            del self.indexes.indexes[name]
            index.close()
            os.remove(index.path)


def _hosted(description: dict[str, Any], base_url: str) -> dict[str, Any]:
    """*description* with its ``host``: this server's address as the request reached it
    (so it stays right when the server restarts on another port) and the index's path."""
    return {**description, "host": f"{base_url.rstrip('/')}{HOST_PREFIX}/{description['name']}"}


# ----------------------------------------------------------------------------- data plane
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

    # --- validation
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

    # --- operations
    def upsert(self, index_name: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        """Stores ``body["documents"]`` (1 to 1,000, unique ``_id``), each replacing any
        document with its ``_id``: ``{"upserted_count": n}``. Every ``dense_vector``
        field is required; values are checked against the schema; the other fields are
        metadata (40 KB at most). ApiError 400 names the first bad document."""
        index = self._index(index_name)
        raw = body.get("documents")
        if not isinstance(raw, list) or not raw:
            raise bad_request("Upsert request must contain a non-empty 'documents' array")
        if len(raw) > MAX_UPSERT_DOCUMENTS:
            raise bad_request(f"Upsert request contains {len(raw)} documents, which exceeds the limit of "
                              f"{MAX_UPSERT_DOCUMENTS} documents per upsert request")
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

    def _filter(self, index: DocumentIndex, ns: Namespace, raw: Any) -> Callable[[str], bool]:
        """The predicate on ``_id`` that the filter *raw* means in namespace *ns*."""
        if not isinstance(raw, dict) or not raw:
            raise bad_request("filter must be a non-empty object")
        parts: list[Callable[[str], bool]] = []
        for key, spec in raw.items():
            if key in ("$and", "$or"):
                if not isinstance(spec, list) or not spec:
                    raise bad_request(f"{key} must be a non-empty array of filters")
                subs = [self._filter(index, ns, sub) for sub in spec]
                parts.append((lambda s: lambda i: all(f(i) for f in s))(subs) if key == "$and"
                             else (lambda s: lambda i: any(f(i) for f in s))(subs))
            elif key in index.fields:
                parts.append(self._text_match(index, ns, key, spec))
            else:
                if isinstance(spec, dict) and set(spec) & set(TEXT_MATCH_OPS):
                    raise bad_request(f"Text-match operators apply only to full_text_search fields; "
                                      f"'{key}' is metadata")
                try:
                    node = compile_filter({key: spec})
                except FilterError as exc:
                    raise bad_request(str(exc)) from None
                assert node is not None
                parts.append((lambda n: lambda i: n.matches(_metadata(index, ns.docs[i])))(node))
        return lambda i: all(p(i) for p in parts)

    def _text_match(self, index: DocumentIndex, ns: Namespace, key: str, spec: Any) -> Callable[[str], bool]:
        if index.fields[key]["type"] != "string":
            raise bad_request(f"Field '{key}' is a {index.fields[key]['type']} field and cannot be filtered on")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in TEXT_MATCH_OPS:
            raise bad_request(f"Field '{key}' is a full_text_search field: filter it with one of "
                              f"{list(TEXT_MATCH_OPS)}, not comparison operators")
        op, text = next(iter(spec.items()))
        if not isinstance(text, str) or not text.strip():
            raise bad_request(f"{op} on field '{key}' needs a non-empty string")
        if ns.text is None:  # an empty namespace: nothing matches
            return lambda _i: False
        matched = ns.text.matching(ns.text.match_query(key, op, text))
        return matched.__contains__

    def search(self, index_name: str, ns_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """The ``top_k`` best documents by ``score_by``, among those ``filter`` keeps:
        ``{"matches": [{"_id", "_score", fields of include_fields}], "namespace",
        "usage": {"read_units"}}``. Dense scores are the field's metric (euclidean: the
        squared distance, smallest first), sparse scores dot products, text scores BM25
        summed over clauses and fields. ApiError 400 for a bad clause, top_k or filter."""
        index = self._index(index_name)
        clauses = body.get("score_by")
        if not isinstance(clauses, list) or not clauses:
            raise bad_request("'score_by' must contain at least one scoring method")
        if len(clauses) > MAX_SCORE_BY_CLAUSES:
            raise bad_request(f"score_by has {len(clauses)} clauses, which exceeds the limit of "
                              f"{MAX_SCORE_BY_CLAUSES}")
        top_k = body.get("top_k")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
            raise bad_request(f"'top_k' must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")
        include = _include_fields(index, body.get("include_fields"), default_all=False)
        kinds = [c.get("type") if isinstance(c, dict) else None for c in clauses]
        if len(clauses) > 1 and any(k not in ("text", "query_string") for k in kinds):
            raise bad_request("'score_by' clauses of type 'text' and 'query_string' may be combined, but "
                              "'dense_vector', 'sparse_vector', 'embed' and 'sparse_embed' clauses must "
                              "appear alone")
        with index.lock:
            ns = index.namespace(ns_name)
            namespace_bytes = sum(ns.sizes.values()) if ns else 0
            units = costs.query_read_units(namespace_bytes)
            # a namespace that does not exist yet answers no matches, after the same checks
            ns = ns or index.empty()
            keep = self._filter(index, ns, body["filter"]) if body.get("filter") is not None else None
            ranked = self._rank(index, ns, clauses, kinds, top_k, keep)
            matches = [{"_id": i, "_score": s, **_pick(ns.docs[i], include)} for i, s in ranked]
        self.meter.add("documents_search", read_units=units)
        return {"matches": matches, "namespace": ns_name, "usage": {"read_units": math.ceil(units)}}

    def _rank(self, index: DocumentIndex, ns: Namespace, clauses: list[Any], kinds: list[Any], top_k: int,  # noqa: C901 (one branch per score kind of Pinecone's document query)
              keep: Callable[[str], bool] | None) -> list[tuple[str, float]]:
        kind = kinds[0]
        if kind in ("dense_vector", "sparse_vector"):
            clause = clauses[0]
            field = clause.get("field")
            spec = index.fields.get(field) if isinstance(field, str) else None
            if spec is None or spec["type"] != kind:
                raise bad_request(f"{kind} scoring needs 'field' naming a {kind} field of the schema, got {field!r}")
            if kind == "dense_vector":
                query = parse_values([clause.get("values")], ["<query>"], spec["dimension"])[0]
                ids, matrix = ns.dense(field, spec["dimension"])
                scores = _dense_scores(matrix, query, spec["metric"])
                order = np.argsort(scores if spec["metric"] == "euclidean" else -scores, kind="stable")
                pairs = ((ids[j], float(scores[j])) for j in order)
            else:
                query_sparse = parse_sparse(clause.get("sparse_values"), "the query")
                if query_sparse is None:
                    raise bad_request("sparse_vector scoring needs non-empty 'sparse_values'")
                # only documents sharing a term with the query match, as in a sparse index
                scored = ((i, _sparse_dot(query_sparse, d[field])) for i, d in ns.docs.items() if field in d)
                pairs = iter(sorted(((i, sc) for i, sc in scored if sc is not None), key=lambda p: -p[1]))
            out = []
            for doc_id, score in pairs:
                if keep is None or keep(doc_id):
                    out.append((doc_id, score))
                    if len(out) == top_k:
                        break
            return out
        if any(not isinstance(c, dict) for c in clauses):
            raise bad_request("Each score_by clause must be an object with a 'type'")
        if kind not in ("text", "query_string"):
            if kind in ("embed", "sparse_embed"):
                raise bad_request(f"{kind} scoring needs integrated embedding, which the local index server "
                                  f"does not serve")
            raise bad_request(f"Unknown score_by type {kind!r}")
        if ns.text is None:
            raise bad_request("This index has no full_text_search field to score text against")
        import tantivy  # the engine behind ns.text; only its query combinators are needed here

        queries, seen = [], set()
        for clause in clauses:
            key = orjson.dumps(clause, option=orjson.OPT_SORT_KEYS)
            if key in seen:  # a repeated clause scores once, as Pinecone documents
                continue
            seen.add(key)
            text = clause.get("query")
            if not isinstance(text, str) or not text.strip():
                raise bad_request(f"A {clause.get('type')} clause needs a non-empty 'query' string")
            if clause["type"] == "text":
                fields = clause.get("fields")
                if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
                    raise bad_request("Text scoring requires 'fields', a non-empty array of field names")
                for f in fields:
                    if index.fields.get(f, {}).get("type") != "string":
                        raise bad_request(f"Text scoring field {f!r} is not a full_text_search field")
                q = ns.text.text_query(list(dict.fromkeys(fields)), text)
            else:
                try:
                    q = ns.text.query_string(text)
                except QueryError as exc:
                    raise bad_request(str(exc)) from None
            if q is not None:
                queries.append((tantivy.Occur.Should, q))
        if not queries:
            return []
        hits = ns.text.search(tantivy.Query.boolean_query(queries), len(ns.docs))
        return [(i, s) for i, s in hits if keep is None or keep(i)][:top_k]

    def fetch(self, index_name: str, ns_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Documents by ``ids`` (at most 1,000; unknown ones are left out) or by
        ``filter`` (by ``_id``, ``limit`` a page, default 100, with a pagination token
        for the next): ``{"documents": {id: document}, "namespace", "usage",
        "pagination"?}``; every field unless ``include_fields`` names some."""
        index = self._index(index_name)
        ids, raw_filter = body.get("ids"), body.get("filter")
        if bool(ids) == (raw_filter is not None):
            raise bad_request("Provide exactly one of 'ids' and 'filter' in a document fetch request")
        include = _include_fields(index, body.get("include_fields"), default_all=True)
        out: dict[str, Any] = {}
        with index.lock:
            ns = index.namespace(ns_name)
            if ids:
                if not isinstance(ids, list) or len(ids) > MAX_IDS_PER_REQUEST:
                    raise bad_request(f"ids must be an array of at most {MAX_IDS_PER_REQUEST} ids")
                wanted = [check_id(i) for i in ids]
                found = [i for i in dict.fromkeys(wanted) if ns and i in ns.docs]
            else:
                keep = self._filter(index, ns or index.empty(), raw_filter)
                limit = parse_limit(body.get("limit"), DEFAULT_FETCH_LIMIT, MAX_FETCH_LIMIT)
                token = body.get("pagination_token")
                after = decode_token(token) if token else None
                matching = sorted(i for i in (ns.docs if ns else {}) if (after is None or i > after) and keep(i))
                found = matching[:limit]
                if len(matching) > limit and found:
                    out["pagination"] = {"next": encode_token(found[-1])}
            documents = {i: {"_id": i, **_pick(ns.docs[i], include)} for i in found}
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
            ns = index.namespace(ns_name)
            if delete_all:
                index.drop_namespace(ns_name)
                self.meter.add("documents_delete", write_units=costs.DELETE_NAMESPACE_WRITE_UNITS)
                return {}
            if ids:
                if not isinstance(ids, list) or len(ids) > MAX_IDS_PER_REQUEST:
                    raise bad_request(f"ids must be an array of at most {MAX_IDS_PER_REQUEST} ids")
                doomed = [i for i in dict.fromkeys(check_id(i) for i in ids) if ns and i in ns.docs]
            else:
                keep = self._filter(index, ns or index.empty(), raw_filter)
                doomed = [i for i in (ns.docs if ns else {}) if keep(i)]
            deleted_bytes = sum(ns.sizes[i] for i in doomed) if ns else 0
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
            ns = index.namespace(ns_name)
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
                keep = self._filter(index, ns or index.empty(), body["filter"])
                sets, removes = body.get("set_fields") or {}, body.get("remove_fields") or []
                if not isinstance(sets, dict):
                    raise bad_request("set_fields must be an object of field values")
                if not sets and not removes:
                    raise bad_request("An update by filter needs 'set_fields' or 'remove_fields'")
                chosen = [i for i in (ns.docs if ns else {}) if keep(i)]
                patches = [(i, sets, removes) for i in chosen]
                matched = len(chosen)
            else:
                raise bad_request("Provide 'documents' or 'filter' in a document update request")
            updated = []
            for doc_id, sets, removes in patches:
                if ns is None or doc_id not in ns.docs:
                    continue
                if any(v is None for v in sets.values()):
                    raise bad_request(f"Field values must not be null (document '{doc_id}'); remove a field "
                                      f"with _remove_fields")
                if not isinstance(removes, list) or not all(isinstance(r, str) for r in removes):
                    raise bad_request("remove fields must be an array of field names")
                merged = {k: v for k, v in ns.docs[doc_id].items() if k not in removes}
                merged.update(sets)
                updated.append(self._document(index, {"_id": doc_id, **merged}, len(updated)))
            before = sum(ns.sizes[i] for i, _d in updated) if ns else 0
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
            ns = index.namespace(ns_name)
            ids = sorted(i for i in (ns.docs if ns else {}) if i.startswith(prefix) and (after is None or i > after))
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


def _metadata(index: DocumentIndex, doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in index.fields}


def _include_fields(index: DocumentIndex, raw: Any, default_all: bool) -> list[str] | None:
    """The fields to return: None for every field; search's default is none, fetch's all."""
    if raw is None or raw == []:
        return None if default_all else []
    if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
        raise bad_request("include_fields must be an array of field names")
    return None if "*" in raw else raw


def _pick(doc: dict[str, Any], include: list[str] | None) -> dict[str, Any]:
    if include is None:
        return dict(doc)
    return {k: doc[k] for k in include if k in doc}


def _dense_scores(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Cosine similarity, dot product, or squared euclidean distance (smaller is
    closer), as the legacy index scores them (:mod:`~devstack.index_server.scoring`)."""
    if len(matrix) == 0:
        return np.zeros(0, dtype=np.float32)
    if metric == "dotproduct":
        return matrix @ query
    if metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(query)), 1e-30)
        return (matrix @ query) / np.maximum(norms, 1e-30)
    return ((matrix - query) ** 2).sum(axis=1)


def _sparse_dot(query: SparseVector, stored: dict[str, Any]) -> float | None:
    """The dot product of *query* and a stored ``{"indices", "values"}``; None when they
    share no index (the document does not match)."""
    weights = dict(zip(stored.get("indices", ()), stored.get("values", ()), strict=True))
    shared = [(weights[int(i)], float(v)) for i, v in zip(query.indices, query.values, strict=True)
              if int(i) in weights]
    return sum(a * b for a, b in shared) if shared else None


def namespace_segment(raw: str) -> str:
    """The namespace a route's path segment names (percent-decoded, as the SDK encodes
    it); 400 for an empty one."""
    name = unquote(raw)
    if not name.strip():
        raise bad_request("namespace must be a non-empty string")
    if len(name) > 512:
        raise bad_request(f"Namespace length is {len(name)} characters, which exceeds the limit of 512 characters")
    return name

