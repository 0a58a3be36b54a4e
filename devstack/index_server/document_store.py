"""Storage of document indexes (:mod:`~devstack.index_server.documents`): each index's
description and documents in one SQLite file under ``{data_dir}/documents/``, and in
memory per namespace the documents, their billed sizes, a full-text index
(:mod:`~devstack.index_server.fulltext`) and a matrix per dense field, all rebuilt
from the file when the server starts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from devstack.index_server import costs
from devstack.index_server.fulltext import TextIndex

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

    def _apply(self, ns_name: str, upserts: list[tuple[str, dict[str, Any]]], deletes: Sequence[str]) -> None:
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

    def write(self, ns_name: str, upserts: list[tuple[str, dict[str, Any]]], deletes: Sequence[str] = ()) -> None:
        """Store *upserts* (replacing documents with the same ``_id``) and remove
        *deletes*, on disk first, then in memory."""
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

    def close(self) -> None:
        for index in self.indexes.values():
            index.close()

