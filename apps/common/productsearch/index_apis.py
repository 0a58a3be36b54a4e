"""The two Pinecone data-plane APIs a products index can speak, behind one shape.

ProductIndex (productsearch.index) keeps the versioning, retries and request
sizing; a class here turns its few primitive requests (fetch, upsert, delete, list,
count) into the calls of one API of the official SDK:

- VectorsApi: a legacy vector index (the Vectors API). A record is a dense vector,
  its BM25 sparse vector and metadata.
- DocumentsApi: a document index (the Documents API, API version 2026-07), created
  with the schema of documents.product_schema. A document holds the dense vector in
  its ``embedding`` field, the product text in ``text`` and the SKU in ``sku`` (both
  full-text searched by Pinecone, which keeps the BM25 statistics itself), and the
  same metadata as top-level fields, which Pinecone filters on without declaring them.

Both read back as Stored, so the callers (reconcile, the frontend's sync state,
explain) never ask which API answered.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from productsearch.documents import (
    DENSE_FIELD,
    METADATA_FIELDS,
    SKU_FIELD,
    TEXT_FIELD,
    IndexRecord,
    SparseVector,
)

INDEX_APIS = ("vectors", "documents")

# The longest JSON text of a float is 24 characters ("-2.2250738585072014e-308"); one
# more for the comma. Bounding the values this way instead of serialising them keeps
# the size check off the hot path (a full dumps of every vector cost more than the
# request itself).
MAX_FLOAT_JSON_BYTES = 25
ITEM_ENVELOPE_BYTES = 64
# A sparse index is a uint32 (at most 10 digits) plus a comma.
MAX_SPARSE_INDEX_JSON_BYTES = 11
# Lucene's query syntax (Pinecone docs: "Full-text search" takes Lucene query syntax):
# these characters are operators, and so are AND, OR and NOT in capitals.
_LUCENE_OPERATORS = re.compile(r'[+\-&|!(){}\[\]^"~*?:\\/]')


@dataclass(frozen=True)
class Stored:
    """One record as the index holds it: its metadata (version, text_hash, price,
    category_key), its dense vector (floats, (dimension,); empty when not returned)
    and its BM25 sparse vector (None when it has none: always for a document index)."""

    metadata: dict[str, Any]
    values: list[float] = field(default_factory=list)
    sparse_values: SparseVector | None = None


@dataclass(frozen=True)
class Hit:
    """A search's match: the record id, the score the index ranked it by, its metadata."""

    id: str
    score: float
    metadata: dict[str, Any]


class IndexApi(Protocol):
    """The primitive requests ProductIndex makes; each raises the SDK's error."""

    def item(self, record_id: str, values: Sequence[float], metadata: dict[str, Any],
             record: IndexRecord | None = None) -> dict[str, Any]: ...
    @staticmethod
    def item_bytes(item: dict[str, Any]) -> int: ...
    def fetch(self, ids: list[str], namespace: str, timeout: float) -> dict[str, Stored]: ...
    def upsert(self, items: list[dict[str, Any]], namespace: str, timeout: float) -> None: ...
    def delete(self, ids: list[str], namespace: str, timeout: float) -> None: ...
    def list_page(self, namespace: str, limit: int, token: str | None,
                  timeout: float) -> tuple[list[str], str | None]: ...
    def count(self, namespace: str, timeout: float) -> int: ...
    def search_dense(self, values: list[float], top_k: int, filter: dict[str, Any] | None, namespace: str,
                     timeout: float) -> list[Hit]: ...


def namespace_count(index: Any, namespace: str, timeout: float) -> int:
    """Records in `namespace` by describe_index_stats, which both APIs' indexes answer
    (0 for a namespace the index does not list)."""
    ns = (index.describe_index_stats(timeout=timeout).namespaces or {}).get(namespace)
    return int(getattr(ns, "vector_count", 0) or 0) if ns is not None else 0


def _head_bytes(record_id: str, metadata: dict[str, Any]) -> int:
    return len(json.dumps({"id": record_id, "metadata": metadata}, separators=(",", ":")).encode())


class VectorsApi:
    """A legacy vector index through the SDK's Index (pinecone 10.2)."""

    def __init__(self, index: Any) -> None:
        self._index = index

    @staticmethod
    def item(record_id: str, values: Sequence[float], metadata: dict[str, Any],
             record: IndexRecord | None = None) -> dict[str, Any]:
        """The upsert item of one record; its sparse vector rides along when it has one."""
        item: dict[str, Any] = {"id": record_id, "values": list(values), "metadata": metadata}
        if record is not None and record.sparse:
            item["sparse_values"] = record.sparse.to_pinecone()
        return item

    @staticmethod
    def item_bytes(item: dict[str, Any]) -> int:
        """An upper bound of the item's size in the request's JSON."""
        sparse = item.get("sparse_values")
        sparse_bytes = len(sparse["indices"]) * (MAX_SPARSE_INDEX_JSON_BYTES + MAX_FLOAT_JSON_BYTES) + 64 if sparse else 0
        return (_head_bytes(item["id"], item.get("metadata") or {}) + len(item["values"]) * MAX_FLOAT_JSON_BYTES
                + sparse_bytes + ITEM_ENVELOPE_BYTES)

    def fetch(self, ids: list[str], namespace: str, timeout: float) -> dict[str, Stored]:
        found = self._index.fetch(ids=ids, namespace=namespace, timeout=timeout).vectors or {}
        out = {}
        for vid, vec in found.items():
            sparse = getattr(vec, "sparse_values", None)
            out[vid] = Stored(metadata=dict(vec.metadata or {}), values=list(getattr(vec, "values", None) or []),
                              sparse_values=SparseVector(tuple(sparse.indices), tuple(sparse.values)) if sparse else None)
        return out

    def upsert(self, items: list[dict[str, Any]], namespace: str, timeout: float) -> None:
        self._index.upsert(vectors=items, namespace=namespace, timeout=timeout)

    def delete(self, ids: list[str], namespace: str, timeout: float) -> None:
        self._index.delete(ids=ids, namespace=namespace, timeout=timeout)

    def list_page(self, namespace: str, limit: int, token: str | None, timeout: float) -> tuple[list[str], str | None]:
        page = self._index.list_paginated(namespace=namespace, limit=limit, pagination_token=token, timeout=timeout)
        return [v.id for v in (page.vectors or [])], page.pagination.next if page.pagination else None

    def count(self, namespace: str, timeout: float) -> int:
        return namespace_count(self._index, namespace, timeout)

    def query(self, values: list[float], sparse: SparseVector | None, top_k: int, filter: dict[str, Any] | None,
              namespace: str, timeout: float) -> list[Hit]:
        """One query scoring dense . dense + sparse . sparse (Pinecone's hybrid query)."""
        result = self._index.query(vector=values, sparse_vector=sparse.to_pinecone() if sparse else None, top_k=top_k,
                                   filter=filter or None, namespace=namespace, include_metadata=True, timeout=timeout)
        return [Hit(id=m.id, score=float(m.score), metadata=dict(m.metadata or {})) for m in result.matches or []]

    def search_dense(self, values: list[float], top_k: int, filter: dict[str, Any] | None, namespace: str,
                     timeout: float) -> list[Hit]:
        return self.query(values, None, top_k, filter, namespace, timeout)


class DocumentsApi:
    """A document index through the SDK's ``Index.documents`` (pinecone 10.2, API
    version 2026-07), with the fields of documents.product_schema."""

    def __init__(self, index: Any) -> None:
        self._documents = index.documents
        self._index = index

    @staticmethod
    def item(record_id: str, values: Sequence[float], metadata: dict[str, Any],
             record: IndexRecord | None = None) -> dict[str, Any]:
        """The document of one record: its vector in ``embedding``, its product text and
        SKU in ``text`` and ``sku`` (a tombstone has neither), metadata beside them."""
        doc: dict[str, Any] = {"_id": record_id, DENSE_FIELD: list(values), **metadata}
        if record is not None:
            doc[TEXT_FIELD] = record.text
            if record.sku:
                doc[SKU_FIELD] = record.sku
        return doc

    @staticmethod
    def item_bytes(item: dict[str, Any]) -> int:
        """An upper bound of the document's size in the request's JSON."""
        rest = {k: v for k, v in item.items() if k not in ("_id", DENSE_FIELD)}
        return _head_bytes(item["_id"], rest) + len(item[DENSE_FIELD]) * MAX_FLOAT_JSON_BYTES + ITEM_ENVELOPE_BYTES

    def _stored(self, doc: Any) -> Stored:
        data = doc.to_dict()
        metadata = {k: v for k, v in data.items() if k not in ("_id", "_score", DENSE_FIELD, TEXT_FIELD, SKU_FIELD)}
        return Stored(metadata=metadata, values=list(data.get(DENSE_FIELD) or []))

    def fetch(self, ids: list[str], namespace: str, timeout: float) -> dict[str, Stored]:
        found = self._documents.fetch(namespace=namespace, ids=ids, include_fields=[DENSE_FIELD, *METADATA_FIELDS],
                                       timeout=timeout).documents or {}
        return {doc_id: self._stored(doc) for doc_id, doc in found.items()}

    def upsert(self, items: list[dict[str, Any]], namespace: str, timeout: float) -> None:
        self._documents.upsert(namespace=namespace, documents=items, timeout=timeout)

    def delete(self, ids: list[str], namespace: str, timeout: float) -> None:
        self._documents.delete(namespace=namespace, ids=ids, timeout=timeout)

    def list_page(self, namespace: str, limit: int, token: str | None, timeout: float) -> tuple[list[str], str | None]:
        pages = self._documents.list(namespace=namespace, limit=limit, pagination_token=token, timeout=timeout)
        page = next(iter(pages.pages()), None)  # one request: the Paginator fetches lazily
        return ([d.id for d in page.items], page.pagination_token) if page is not None else ([], None)

    def count(self, namespace: str, timeout: float) -> int:
        return namespace_count(self._index, namespace, timeout)

    def _search(self, clause: dict[str, Any], top_k: int, filter: dict[str, Any] | None, namespace: str,
                timeout: float) -> list[Hit]:
        result = self._documents.search(namespace=namespace, score_by=[clause], top_k=top_k, filter=filter or None,
                                        include_fields=list(METADATA_FIELDS), timeout=timeout)
        return [Hit(id=m.id, score=float(m.score or 0.0), metadata=self._stored(m).metadata)
                for m in result.matches or []]

    def search_dense(self, values: list[float], top_k: int, filter: dict[str, Any] | None, namespace: str,
                     timeout: float) -> list[Hit]:
        """The top_k documents by their ``embedding``'s similarity to `values`."""
        return self._search({"type": "dense_vector", "field": DENSE_FIELD, "values": values}, top_k, filter,
                            namespace, timeout)

    def search_text(self, text: str, top_k: int, filter: dict[str, Any] | None, namespace: str,
                    timeout: float) -> list[Hit]:
        """The top_k documents by Pinecone's BM25 score of `text`'s words in ``text``
        and ``sku``; only documents sharing a word come back. `text` is read as plain
        words (full_text_query), so no user input is ever query syntax."""
        words = full_text_query(text)
        if not words:
            return []
        return self._search({"type": "text", "fields": [TEXT_FIELD, SKU_FIELD], "query": words}, top_k, filter,
                            namespace, timeout)


def full_text_query(text: str) -> str:
    """`text` as a full-text query of plain words: NFKC and case folded (as
    lexical.match_form matches), every Lucene operator character turned into a space
    and the words joined by single spaces, so AND/OR/NOT become the lower-case words
    the analyser drops or matches. "" when no word is left."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_LUCENE_OPERATORS.sub(" ", folded).split())
