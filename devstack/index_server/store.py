"""Storage for the local index server: in-memory numpy matrices backed by SQLite.

Every namespace keeps a contiguous float32 matrix of its vectors (grown by
doubling), their squared norms, their ids, their metadata dicts and their
optional sparse values. Queries are exact (brute force) over that matrix. Metadata
filters are evaluated with lazily built per-field
:class:`~devstack.index_server.columns.FieldColumn` objects that are dropped whenever the
namespace changes. Sparse values are scored through :class:`~devstack.index_server.sparse.SparsePostings`, a
scipy CSC matrix (records x terms) kept current by rescoring the few rows written
since it was built.

Durability: every mutation is written to SQLite (WAL, ``synchronous=FULL``) and
committed *before* the in-memory state changes and before the HTTP response is
sent. At start-up the whole table is loaded back into memory.

Thread safety: one re-entrant lock guards all state; callers take it through
the public methods only.
"""


from __future__ import annotations

import bisect
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from devstack.index_server.filters import FilterNode
from devstack.index_server.namespace import Namespace
from devstack.index_server.scoring import Match, rank
from devstack.index_server.sparse import SparseVector, encode_sparse

logger = logging.getLogger(__name__)

METRICS = ("cosine", "dotproduct", "euclidean")



def _encode_meta(meta: dict[str, Any] | None) -> str | None:
    if not meta:
        return None
    return json.dumps(meta, separators=(",", ":"), ensure_ascii=False)


class IndexStore:
    """All namespaces of one index plus their SQLite persistence."""

    def __init__(self, data_dir: str, dimension: int, metric: str) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if dimension < 1 or dimension > 20_000:
            raise ValueError(f"dimension must be between 1 and 20000, got {dimension}")
        self.dimension = dimension
        self.metric = metric
        self.lock = threading.RLock()
        self.namespaces: dict[str, Namespace] = {}
        os.makedirs(data_dir, exist_ok=True)
        self.db_path = os.path.join(data_dir, "index.sqlite3")
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors ("
            " namespace TEXT NOT NULL, id TEXT NOT NULL, vals BLOB NOT NULL, metadata TEXT,"
            " sparse BLOB, PRIMARY KEY (namespace, id))"
        )
        self._check_settings()
        self._load()

    # ------------------------------------------------------------------ setup
    def _check_settings(self) -> None:
        stored = dict(self._db.execute("SELECT key, value FROM settings").fetchall())
        if not stored:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?)",
                [("dimension", str(self.dimension)), ("metric", self.metric)],
            )
            self._db.execute("COMMIT")
            return
        if int(stored["dimension"]) != self.dimension or stored["metric"] != self.metric:
            raise ValueError(
                f"Data directory {os.path.dirname(self.db_path)!r} holds an index with "
                f"dimension={stored['dimension']} metric={stored['metric']}, but the server "
                f"was started with dimension={self.dimension} metric={self.metric}. Use "
                f"another --data-dir or the matching settings."
            )

    def _load(self) -> None:
        count = 0
        current_ns: str | None = None
        batch_ids: list[str] = []
        batch_vals: list[bytes] = []
        batch_meta: list[dict[str, Any] | None] = []
        batch_sparse: list[SparseVector | None] = []

        def flush() -> None:
            if current_ns is None or not batch_ids:
                return
            ns = self.namespaces.setdefault(current_ns, Namespace(self.dimension))
            values = np.frombuffer(b"".join(batch_vals), dtype=np.float32).reshape(
                len(batch_ids), self.dimension
            )
            ns.put(batch_ids, values, batch_meta, batch_sparse)

        cursor = self._db.execute(
            "SELECT namespace, id, vals, metadata, sparse FROM vectors ORDER BY namespace"
        )
        for namespace, vid, vals, meta, sparse in cursor:
            if namespace != current_ns or len(batch_ids) >= 10_000:
                flush()
                batch_ids, batch_vals, batch_meta, batch_sparse = [], [], [], []
                current_ns = namespace
            batch_ids.append(vid)
            batch_vals.append(vals)
            batch_meta.append(json.loads(meta) if meta else None)
            batch_sparse.append(SparseVector.from_bytes(sparse) if sparse else None)
            count += 1
        flush()
        logger.info(
            "loaded %d vectors in %d namespaces from %s", count, len(self.namespaces), self.db_path
        )

    def close(self) -> None:
        with self.lock:
            self._db.close()

    # ------------------------------------------------------------------ helpers
    def _write(self, statements: list[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Run *statements* (sql, rows) in one committed transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                self._db.executemany(sql, rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def namespace(self, name: str) -> Namespace | None:
        return self.namespaces.get(name)

    # ------------------------------------------------------------------ writes
    def upsert(
        self,
        namespace: str,
        ids: Sequence[str],
        values: np.ndarray,
        metadatas: Sequence[dict[str, Any] | None],
        sparse: Sequence[SparseVector | None] | None = None,
    ) -> int:
        """Insert or overwrite whole records; a later duplicate id in the batch wins.

        values: (n, dimension) float32; sparse: one :class:`SparseVector` or ``None``
        per record (``None`` for all when omitted).
        """
        sparse = list(sparse) if sparse is not None else [None] * len(ids)
        last: dict[str, int] = {}
        for i, vid in enumerate(ids):
            last[vid] = i
        if len(last) != len(ids):
            keep = sorted(last.values())
            ids = [ids[i] for i in keep]
            values = values[keep]
            metadatas = [metadatas[i] for i in keep]
            sparse = [sparse[i] for i in keep]
        rows = [
            (namespace, vid, values[i].tobytes(), _encode_meta(metadatas[i]),
             encode_sparse(sparse[i]))
            for i, vid in enumerate(ids)
        ]
        with self.lock:
            self._write(
                [
                    (
                        "INSERT OR REPLACE INTO vectors (namespace, id, vals, metadata, sparse) "
                        "VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                ]
            )
            ns = self.namespaces.setdefault(namespace, Namespace(self.dimension))
            ns.put(ids, values, metadatas, sparse)
        return len(ids)

    def delete_ids(self, namespace: str, ids: Sequence[str]) -> int:
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return 0
            present = [vid for vid in dict.fromkeys(ids) if vid in ns.rows]
            if not present:
                return 0
            self._write(
                [
                    (
                        "DELETE FROM vectors WHERE namespace = ? AND id = ?",
                        [(namespace, vid) for vid in present],
                    )
                ]
            )
            removed = ns.remove(present)
            if not len(ns):
                del self.namespaces[namespace]
            return removed

    def delete_namespace(self, namespace: str) -> int:
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return 0
            self._write([("DELETE FROM vectors WHERE namespace = ?", [(namespace,)])])
            del self.namespaces[namespace]
            return len(ns)

    def update(
        self,
        namespace: str,
        ids: Sequence[str],
        values: np.ndarray | None,
        set_metadata: dict[str, Any] | None,
        dry_run: bool = False,
        check_metadata: Callable[[str, dict[str, Any]], None] | None = None,
        sparse: SparseVector | None = None,
        set_sparse: bool = False,
    ) -> int:
        """Overwrite values and/or sparse values and/or merge *set_metadata* into records.

        Returns how many of *ids* exist. Keys in *set_metadata* whose value is
        ``None`` are removed from the record's metadata. With *set_sparse* the
        records' sparse values become *sparse* (``None`` removes them); without it
        they are kept. *check_metadata* is called with each merged result before
        anything is written and may raise to refuse the whole update.
        """
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return 0
            targets = [(vid, ns.rows[vid]) for vid in dict.fromkeys(ids) if vid in ns.rows]
            if dry_run or not targets:
                return len(targets)
            new_meta: dict[int, dict[str, Any] | None] = {}
            if set_metadata is not None:
                for _vid, row in targets:
                    merged = dict(ns.metadata[row] or {})
                    for key, value in set_metadata.items():
                        if value is None:
                            merged.pop(key, None)
                        else:
                            merged[key] = value
                    if check_metadata is not None:
                        check_metadata(_vid, merged)
                    new_meta[row] = merged or None
            sql_rows = []
            for vid, row in targets:
                vec = values if values is not None else ns.matrix[row]
                meta = new_meta[row] if row in new_meta else ns.metadata[row]
                sv = sparse if set_sparse else ns.sparse[row]
                sql_rows.append((namespace, vid, np.asarray(vec, np.float32).tobytes(),
                                 _encode_meta(meta), encode_sparse(sv)))
            self._write(
                [
                    (
                        "INSERT OR REPLACE INTO vectors (namespace, id, vals, metadata, sparse) "
                        "VALUES (?, ?, ?, ?, ?)",
                        sql_rows,
                    )
                ]
            )
            for _vid, row in targets:
                if values is not None:
                    ns.set_values(row, values)
                if set_sparse:
                    ns.set_sparse(row, sparse)
                if row in new_meta:
                    ns.set_metadata(row, new_meta[row])
            return len(targets)

    def matching_ids(self, namespace: str, node: FilterNode) -> list[str]:
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return []
            mask = ns.filter_mask(node)
            assert mask is not None
            return [ns.ids[i] for i in np.flatnonzero(mask)]

    # ------------------------------------------------------------------ reads
    def fetch(
        self, namespace: str, ids: Sequence[str]
    ) -> list[tuple[str, np.ndarray, SparseVector | None, dict[str, Any] | None]]:
        """(id, dense values, sparse values or None, metadata or None) of each id found."""
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return []
            out = []
            for vid in dict.fromkeys(ids):
                row = ns.rows.get(vid)
                if row is not None:
                    out.append((vid, ns.matrix[row].copy(), ns.sparse[row], ns.metadata[row]))
            return out

    def get_vector(
        self, namespace: str, vid: str
    ) -> tuple[np.ndarray, SparseVector | None] | None:
        """A stored record's (dense values, sparse values or None), or ``None`` if absent."""
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return None
            row = ns.rows.get(vid)
            return None if row is None else (ns.matrix[row].copy(), ns.sparse[row])

    def query(
        self,
        namespace: str,
        vector: np.ndarray,
        top_k: int,
        node: FilterNode | None,
        include_values: bool,
        include_metadata: bool,
        sparse: SparseVector | None = None,
    ) -> list[Match]:
        """The *top_k* best matches of *vector* (and, on a dotproduct index, *sparse*).

        dotproduct scores are ``dense dot + sparse dot``, the sparse part being 0 for
        records without sparse values (Pinecone scores a sparse-dense vector as one
        vector). *sparse* is ignored by the other metrics; the server refuses such
        queries before they get here.
        """
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None or not len(ns):
                return []
            n = len(ns)
            mask = ns.filter_mask(node)
            candidates = None if mask is None else np.flatnonzero(mask)
            if candidates is not None and candidates.size == 0:
                return []
            if candidates is not None and candidates.size == n:
                candidates = None
            top, scores = rank(ns, self.metric, vector, sparse, candidates, top_k)
            rows = top if candidates is None else candidates[top]
            matches = []
            for local, row in zip(top.tolist(), rows.tolist(), strict=True):
                matches.append(
                    Match(
                        id=ns.ids[row],
                        score=scores[local],
                        values=ns.matrix[row].copy() if include_values else None,
                        metadata=ns.metadata[row] if include_metadata else None,
                        sparse_values=ns.sparse[row] if include_values else None,
                    )
                )
            return matches

    def list_ids(
        self, namespace: str, prefix: str, after: str | None, limit: int
    ) -> tuple[list[str], bool]:
        """Ids with *prefix*, sorted, strictly after *after*; returns (page, has_more)."""
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return [], False
            ordered = ns.sorted_ids()
            start = bisect.bisect_left(ordered, prefix)
            if after is not None and after >= prefix:
                start = max(start, bisect.bisect_right(ordered, after))
            page: list[str] = []
            i = start
            while i < len(ordered) and len(page) < limit:
                vid = ordered[i]
                if not vid.startswith(prefix):
                    return page, False
                page.append(vid)
                i += 1
            has_more = i < len(ordered) and ordered[i].startswith(prefix)
            return page, has_more

    def namespace_bytes(self, namespace: str) -> int:
        """The namespace's size as Pinecone bills queries on it: its records'
        :func:`~devstack.index_server.costs.record_bytes` summed (0 when absent)."""
        with self.lock:
            ns = self.namespaces.get(namespace)
            return 0 if ns is None else ns.bytes

    def record_sizes(self, namespace: str, ids: Sequence[str]) -> dict[str, int]:
        """Each distinct id of *ids* that exists, with its record's size in bytes
        (:func:`~devstack.index_server.costs.record_bytes`)."""
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return {}
            return {vid: ns.sizes[ns.rows[vid]] for vid in dict.fromkeys(ids) if vid in ns.rows}

    def stats(self, node: FilterNode | None = None) -> dict[str, int]:
        with self.lock:
            out = {}
            for name, ns in self.namespaces.items():
                if not len(ns):
                    continue
                if node is None:
                    out[name] = len(ns)
                else:
                    mask = ns.filter_mask(node)
                    assert mask is not None
                    out[name] = int(mask.sum())
            return out

