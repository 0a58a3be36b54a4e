"""Storage for the local index server: in-memory numpy matrices backed by SQLite.

Every namespace keeps a contiguous float32 matrix of its vectors (grown by
doubling), their squared norms, their ids, their metadata dicts and their
optional sparse values. Queries are exact (brute force) over that matrix. Metadata
filters are evaluated with lazily built per-field
:class:`~devstack.index_filters.FieldColumn` objects that are dropped whenever the
namespace changes. Sparse values are scored through :class:`SparsePostings`, a
scipy CSC matrix (records x terms) kept current by rescoring the few rows written
since it was built.

Durability: every mutation is written to SQLite (WAL, ``synchronous=FULL``) and
committed *before* the in-memory state changes and before the HTTP response is
sent. At start-up the whole table is loaded back into memory.

Thread safety: one re-entrant lock guards all state; callers take it through
the public methods only.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

from devstack.index_filters import FieldColumn, FilterNode

logger = logging.getLogger("devstack.index_store")

METRICS = ("cosine", "dotproduct", "euclidean")


@dataclass(frozen=True)
class SparseVector:
    """The sparse part of a record or query: parallel arrays of term indices and weights.

    indices: uint32, unique, in the order given; values: float32, finite, same length.
    Validation happens where requests are parsed (``index_server.parse_sparse``); this
    type only carries a valid vector. An empty sparse vector is represented by ``None``.
    """

    indices: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def to_bytes(self) -> bytes:
        """On-disk form: n little-endian uint32 indices, then n little-endian float32 values."""
        return self.indices.astype("<u4").tobytes() + self.values.astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> SparseVector:
        n = len(blob) // 8
        indices = np.frombuffer(blob, dtype="<u4", count=n).astype(np.uint32)
        values = np.frombuffer(blob, dtype="<f4", count=n, offset=4 * n).astype(np.float32)
        return cls(indices, values)

    def as_json(self) -> dict[str, list]:
        """Pinecone's wire shape: ``{"indices": [int], "values": [float]}``."""
        return {"indices": self.indices.tolist(), "values": self.values}


def _encode_sparse(sparse: SparseVector | None) -> bytes | None:
    return None if sparse is None else sparse.to_bytes()


@dataclass
class Match:
    id: str
    score: float  # numpy float32 scalar, serialised with its float32 repr
    values: np.ndarray | None
    metadata: dict[str, Any] | None
    sparse_values: SparseVector | None = None


class SparsePostings:
    """Sparse dot products of one namespace's records against a query, without a Python loop.

    Term indices (uint32, up to 4.2 billion) are mapped to compact column numbers in a
    vocabulary that only grows. ``matrix`` is a CSC matrix of shape (rows built, terms)
    so a query touches only the postings of its own terms. Writes do not rebuild it:
    the written rows are marked *dirty* and rescored one by one at query time, and the
    matrix is rebuilt (O(non-zeros)) only once the dirty rows exceed ``max(256, rows/32)``.
    """

    def __init__(self) -> None:
        self.vocab: dict[int, int] = {}
        self.cols: list[np.ndarray | None] = []  # per row: compact column of each index
        self.matrix: scipy.sparse.csc_matrix | None = None
        self.dirty: set[int] = set()
        self.with_sparse = 0  # rows that have sparse values

    def columns_for(self, indices: np.ndarray, grow: bool) -> np.ndarray:
        """Compact columns for *indices*; unknown terms get new columns or, without
        *grow*, -1 (no record has them)."""
        vocab = self.vocab
        out = np.empty(indices.shape[0], dtype=np.int64)
        for i, term in enumerate(indices.tolist()):
            col = vocab.get(term)
            if col is None:
                if grow:
                    col = vocab[term] = len(vocab)
                else:
                    col = -1
            out[i] = col
        return out

    def set_row(self, row: int, sparse: SparseVector | None) -> None:
        while len(self.cols) <= row:
            self.cols.append(None)
        if self.cols[row] is not None:
            self.with_sparse -= 1
        self.cols[row] = None if sparse is None else self.columns_for(sparse.indices, grow=True)
        if sparse is not None:
            self.with_sparse += 1
        self.dirty.add(row)

    def move_row(self, src: int, dst: int) -> None:
        """Row *src* (the last one) now lives at *dst*; *dst*'s old content is gone."""
        if self.cols[dst] is not None:
            self.with_sparse -= 1
        self.cols[dst] = self.cols[src]
        self.cols.pop()
        self.dirty.discard(src)
        self.dirty.add(dst)

    def drop_last(self) -> None:
        last = len(self.cols) - 1
        if self.cols[last] is not None:
            self.with_sparse -= 1
        self.cols.pop()
        self.dirty.discard(last)

    def _rebuild(self, sparse: list[SparseVector | None]) -> None:
        n = len(self.cols)
        lengths = np.fromiter(
            (0 if c is None else c.shape[0] for c in self.cols), dtype=np.int64, count=n
        )
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        present = [i for i, c in enumerate(self.cols) if c is not None]
        if present:
            cols = np.concatenate([self.cols[i] for i in present])
            data = np.concatenate([sparse[i].values for i in present])  # type: ignore[union-attr]
        else:
            cols = np.empty(0, dtype=np.int64)
            data = np.empty(0, dtype=np.float32)
        csr = scipy.sparse.csr_matrix(
            (data, cols, indptr), shape=(n, max(len(self.vocab), 1)), dtype=np.float32
        )
        self.matrix = csr.tocsc()
        self.dirty.clear()

    def scores(self, query: SparseVector, sparse: list[SparseVector | None]) -> np.ndarray | None:
        """float32 array (rows,) of each record's sparse dot product with *query*, or
        ``None`` when every product is zero (no record has sparse values, or the query
        shares no term with any record). Records without sparse values score 0."""
        n = len(self.cols)
        if not self.with_sparse or not len(query):
            return None
        qcols = self.columns_for(query.indices, grow=False)
        known = qcols >= 0
        if not known.any():
            return None
        qcols, qvals = qcols[known], query.values[known]
        if self.matrix is None or len(self.dirty) > max(256, n // 32):
            self._rebuild(sparse)
        assert self.matrix is not None
        out = np.zeros(n, dtype=np.float32)
        built = min(self.matrix.shape[0], n)
        inside = qcols < self.matrix.shape[1]
        if built and inside.any():
            part = self.matrix[:, qcols[inside]] @ qvals[inside]
            out[:built] = np.asarray(part, dtype=np.float32).ravel()[:built]
        if self.dirty:
            rows = np.fromiter(self.dirty, dtype=np.int64, count=len(self.dirty))
            out[rows] = 0.0
            present = [r for r in rows.tolist() if self.cols[r] is not None]
            if present:
                weights = np.zeros(len(self.vocab), dtype=np.float32)
                weights[qcols] = qvals
                cols = np.concatenate([self.cols[r] for r in present])
                vals = np.concatenate([sparse[r].values for r in present])  # type: ignore
                lengths = [self.cols[r].shape[0] for r in present]  # type: ignore[union-attr]
                owner = np.repeat(np.arange(len(present)), lengths)
                sums = np.bincount(owner, weights=weights[cols] * vals, minlength=len(present))
                out[present] = sums.astype(np.float32)
        return out


class Namespace:
    """One namespace's vectors, held row-wise in a growable float32 matrix."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.metadata: list[dict[str, Any] | None] = []
        self.sparse: list[SparseVector | None] = []
        self.postings = SparsePostings()
        self._matrix = np.empty((0, dimension), dtype=np.float32)
        self._sqnorm = np.empty(0, dtype=np.float32)
        self._columns: dict[str, FieldColumn] = {}
        self._sorted_ids: list[str] | None = None

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix[: len(self.ids)]

    @property
    def sqnorm(self) -> np.ndarray:
        return self._sqnorm[: len(self.ids)]

    def _invalidate(self) -> None:
        self._columns.clear()
        self._sorted_ids = None

    def _reserve(self, extra: int) -> None:
        need = len(self.ids) + extra
        capacity = self._matrix.shape[0]
        if need <= capacity:
            return
        new_capacity = max(need, capacity * 2, 64)
        matrix = np.empty((new_capacity, self.dimension), dtype=np.float32)
        sqnorm = np.empty(new_capacity, dtype=np.float32)
        n = len(self.ids)
        matrix[:n] = self._matrix[:n]
        sqnorm[:n] = self._sqnorm[:n]
        self._matrix = matrix
        self._sqnorm = sqnorm

    # ------------------------------------------------------------------ mutation
    def put(
        self,
        ids: Sequence[str],
        values: np.ndarray,
        metadatas: Sequence[dict[str, Any] | None],
        sparse: Sequence[SparseVector | None] | None = None,
    ) -> None:
        """Insert or overwrite rows (a whole record each: an overwrite without *sparse*
        drops the old sparse values, as Pinecone's upsert does). *ids* must be unique
        within the call."""
        self._reserve(len(ids))
        targets = np.empty(len(ids), dtype=np.int64)
        added = False
        sparse = sparse if sparse is not None else [None] * len(ids)
        for i, (vid, meta, sv) in enumerate(zip(ids, metadatas, sparse, strict=True)):
            row = self.rows.get(vid)
            if row is None:
                row = len(self.ids)
                self.rows[vid] = row
                self.ids.append(vid)
                self.metadata.append(meta)
                self.sparse.append(sv)
                added = True
            else:
                self.metadata[row] = meta
                self.sparse[row] = sv
            self.postings.set_row(row, sv)
            targets[i] = row
        self._matrix[targets] = values
        self._sqnorm[targets] = np.einsum("ij,ij->i", values, values)
        if added:
            self._sorted_ids = None
        self._update_columns(targets.tolist(), metadatas)

    def _update_columns(self, rows: list[int], metadatas: Sequence[dict[str, Any] | None]) -> None:
        """Keep cached filter columns current, so a write does not force a full rebuild."""
        for field, column in self._columns.items():
            column.update_rows(field, rows, metadatas, len(self.ids))

    def set_metadata(self, row: int, meta: dict[str, Any] | None) -> None:
        self.metadata[row] = meta
        self._update_columns([row], [meta])

    def set_values(self, row: int, values: np.ndarray) -> None:
        self._matrix[row] = values
        self._sqnorm[row] = float(np.dot(values, values))

    def set_sparse(self, row: int, sparse: SparseVector | None) -> None:
        self.sparse[row] = sparse
        self.postings.set_row(row, sparse)

    def sparse_scores(self, query: SparseVector) -> np.ndarray | None:
        """Sparse dot product of every row with *query* (float32, shape (rows,)), or
        ``None`` when all are zero."""
        return self.postings.scores(query, self.sparse)

    def remove(self, ids: Iterable[str]) -> int:
        """Delete rows by id (swap-with-last); returns how many existed."""
        removed = 0
        for vid in ids:
            row = self.rows.pop(vid, None)
            if row is None:
                continue
            removed += 1
            last = len(self.ids) - 1
            if row != last:
                moved = self.ids[last]
                self.ids[row] = moved
                self.metadata[row] = self.metadata[last]
                self.sparse[row] = self.sparse[last]
                self._matrix[row] = self._matrix[last]
                self._sqnorm[row] = self._sqnorm[last]
                self.rows[moved] = row
                self.postings.move_row(last, row)
            else:
                self.postings.drop_last()
            self.ids.pop()
            self.metadata.pop()
            self.sparse.pop()
        if removed:
            self._invalidate()
        return removed

    # ------------------------------------------------------------------ reads
    def column(self, field: str) -> FieldColumn:
        col = self._columns.get(field)
        if col is None:
            col = self._columns[field] = FieldColumn(field, self.metadata)
        return col

    def filter_mask(self, node: FilterNode | None) -> np.ndarray | None:
        """Boolean mask of rows matching *node*, or ``None`` when there is no filter."""
        if node is None:
            return None
        return node.mask(self.column, len(self.ids))

    def sorted_ids(self) -> list[str]:
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self.ids)
        return self._sorted_ids


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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(vectors)")}
        if "sparse" not in columns:
            # Data directories written before sparse values existed: their records simply
            # have none (NULL), so adding the column is the whole migration.
            self._db.execute("ALTER TABLE vectors ADD COLUMN sparse BLOB")
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
             _encode_sparse(sparse[i]))
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

    def delete_where(self, namespace: str, node: FilterNode) -> int:
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return 0
            mask = ns.filter_mask(node)
            assert mask is not None
            doomed = [ns.ids[i] for i in np.flatnonzero(mask)]
            return self.delete_ids(namespace, doomed)

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
                                 _encode_meta(meta), _encode_sparse(sv)))
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
            q = np.asarray(vector, dtype=np.float32)
            if candidates is None:
                dots = ns.matrix @ q
                sqnorm = ns.sqnorm
            elif candidates.size * 5 > n:
                # Scoring is memory-bound: past ~20% of rows, one pass over the whole
                # matrix is cheaper than gathering the candidate rows first.
                dots = (ns.matrix @ q)[candidates]
                sqnorm = ns.sqnorm[candidates]
            else:
                dots = ns.matrix[candidates] @ q
                sqnorm = ns.sqnorm[candidates]
            if self.metric == "cosine":
                denom = np.sqrt(sqnorm) * np.float32(np.sqrt(np.dot(q, q)))
                with np.errstate(divide="ignore", invalid="ignore"):
                    scores = np.where(denom > 0, dots / denom, np.float32(0.0))
                ranking = -scores
            elif self.metric == "dotproduct":
                scores = dots
                sparse_scores = None if sparse is None else ns.sparse_scores(sparse)
                if sparse_scores is not None:
                    scores = dots + (
                        sparse_scores if candidates is None else sparse_scores[candidates]
                    )
                ranking = -scores
            else:  # euclidean: squared distance, smaller is closer
                scores = np.maximum(sqnorm + np.float32(np.dot(q, q)) - 2 * dots, 0)
                ranking = scores
            k = min(top_k, scores.shape[0])
            if k < scores.shape[0]:
                top = np.argpartition(ranking, k - 1)[:k]
                top = top[np.argsort(ranking[top], kind="stable")]
            else:
                top = np.argsort(ranking, kind="stable")
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
        import bisect

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
