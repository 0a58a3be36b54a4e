"""Storage for the local index server: in-memory numpy matrices backed by SQLite.

Every namespace keeps a contiguous float32 matrix of its vectors (grown by
doubling), their squared norms, their ids and their metadata dicts. Queries are
exact (brute force) over that matrix. Metadata filters are evaluated with
lazily built per-field :class:`~devstack.index_filters.FieldColumn` objects that
are dropped whenever the namespace changes.

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

from devstack.index_filters import FieldColumn, FilterNode

logger = logging.getLogger("devstack.index_store")

METRICS = ("cosine", "dotproduct", "euclidean")


@dataclass
class Match:
    id: str
    score: float  # numpy float32 scalar, serialised with its float32 repr
    values: np.ndarray | None
    metadata: dict[str, Any] | None


class Namespace:
    """One namespace's vectors, held row-wise in a growable float32 matrix."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.metadata: list[dict[str, Any] | None] = []
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
    ) -> None:
        """Insert or overwrite rows. *ids* must be unique within the call."""
        self._reserve(len(ids))
        targets = np.empty(len(ids), dtype=np.int64)
        added = False
        for i, (vid, meta) in enumerate(zip(ids, metadatas, strict=True)):
            row = self.rows.get(vid)
            if row is None:
                row = len(self.ids)
                self.rows[vid] = row
                self.ids.append(vid)
                self.metadata.append(meta)
                added = True
            else:
                self.metadata[row] = meta
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
                self._matrix[row] = self._matrix[last]
                self._sqnorm[row] = self._sqnorm[last]
                self.rows[moved] = row
            self.ids.pop()
            self.metadata.pop()
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
            " PRIMARY KEY (namespace, id))"
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

        def flush() -> None:
            if current_ns is None or not batch_ids:
                return
            ns = self.namespaces.setdefault(current_ns, Namespace(self.dimension))
            values = np.frombuffer(b"".join(batch_vals), dtype=np.float32).reshape(
                len(batch_ids), self.dimension
            )
            ns.put(batch_ids, values, batch_meta)

        cursor = self._db.execute(
            "SELECT namespace, id, vals, metadata FROM vectors ORDER BY namespace"
        )
        for namespace, vid, vals, meta in cursor:
            if namespace != current_ns or len(batch_ids) >= 10_000:
                flush()
                batch_ids, batch_vals, batch_meta = [], [], []
                current_ns = namespace
            batch_ids.append(vid)
            batch_vals.append(vals)
            batch_meta.append(json.loads(meta) if meta else None)
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
    ) -> int:
        """Insert or overwrite records; a later duplicate id in the batch wins."""
        last: dict[str, int] = {}
        for i, vid in enumerate(ids):
            last[vid] = i
        if len(last) != len(ids):
            keep = sorted(last.values())
            ids = [ids[i] for i in keep]
            values = values[keep]
            metadatas = [metadatas[i] for i in keep]
        rows = [
            (namespace, vid, values[i].tobytes(), _encode_meta(metadatas[i]))
            for i, vid in enumerate(ids)
        ]
        with self.lock:
            self._write(
                [
                    (
                        "INSERT OR REPLACE INTO vectors (namespace, id, vals, metadata) "
                        "VALUES (?, ?, ?, ?)",
                        rows,
                    )
                ]
            )
            ns = self.namespaces.setdefault(namespace, Namespace(self.dimension))
            ns.put(ids, values, metadatas)
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
    ) -> int:
        """Overwrite values and/or merge *set_metadata* into existing records.

        Returns how many of *ids* exist. Keys in *set_metadata* whose value is
        ``None`` are removed from the record's metadata. *check_metadata* is
        called with each merged result before anything is written and may raise
        to refuse the whole update.
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
                sql_rows.append((namespace, vid, np.asarray(vec, np.float32).tobytes(),
                                 _encode_meta(meta)))
            self._write(
                [
                    (
                        "INSERT OR REPLACE INTO vectors (namespace, id, vals, metadata) "
                        "VALUES (?, ?, ?, ?)",
                        sql_rows,
                    )
                ]
            )
            for _vid, row in targets:
                if values is not None:
                    ns.set_values(row, values)
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
    ) -> list[tuple[str, np.ndarray, dict[str, Any] | None]]:
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return []
            out = []
            for vid in dict.fromkeys(ids):
                row = ns.rows.get(vid)
                if row is not None:
                    out.append((vid, ns.matrix[row].copy(), ns.metadata[row]))
            return out

    def get_vector(self, namespace: str, vid: str) -> np.ndarray | None:
        with self.lock:
            ns = self.namespaces.get(namespace)
            if ns is None:
                return None
            row = ns.rows.get(vid)
            return None if row is None else ns.matrix[row].copy()

    def query(
        self,
        namespace: str,
        vector: np.ndarray,
        top_k: int,
        node: FilterNode | None,
        include_values: bool,
        include_metadata: bool,
    ) -> list[Match]:
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
