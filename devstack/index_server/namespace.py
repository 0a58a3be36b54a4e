"""One namespace of the local index in memory: a growable float32 matrix of its
dense vectors with their squared norms, ids, metadata (with lazily built filter
columns), sparse values (with their postings) and each record's size as Pinecone
bills it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from devstack.index_server.columns import FieldColumn
from devstack.index_server.costs import record_bytes
from devstack.index_server.filters import FilterNode
from devstack.index_server.sparse import SparsePostings, SparseVector

class Namespace:
    """One namespace's vectors, held row-wise in a growable float32 matrix."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.metadata: list[dict[str, Any] | None] = []
        self.sparse: list[SparseVector | None] = []
        self.postings = SparsePostings()
        # Each row's costs.record_bytes, and their sum: a query's read units follow it.
        self.sizes: list[int] = []
        self.bytes = 0
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
                self.sizes.append(0)
                added = True
            else:
                self.metadata[row] = meta
                self.sparse[row] = sv
            self._resize(row)
            self.postings.set_row(row, sv)
            targets[i] = row
        self._matrix[targets] = values
        self._sqnorm[targets] = np.einsum("ij,ij->i", values, values)
        if added:
            self._sorted_ids = None
        self._update_columns(targets.tolist(), metadatas)

    def _resize(self, row: int) -> None:
        size = record_bytes(self.ids[row], self.dimension, self.metadata[row], self.sparse[row])
        self.bytes += size - self.sizes[row]
        self.sizes[row] = size

    def _update_columns(self, rows: list[int], metadatas: Sequence[dict[str, Any] | None]) -> None:
        """Keep cached filter columns current, so a write does not force a full rebuild."""
        for field, column in self._columns.items():
            column.update_rows(field, rows, metadatas, len(self.ids))

    def set_metadata(self, row: int, meta: dict[str, Any] | None) -> None:
        self.metadata[row] = meta
        self._resize(row)
        self._update_columns([row], [meta])

    def set_values(self, row: int, values: np.ndarray) -> None:
        self._matrix[row] = values
        self._sqnorm[row] = float(np.dot(values, values))

    def set_sparse(self, row: int, sparse: SparseVector | None) -> None:
        self.sparse[row] = sparse
        self._resize(row)
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
            self.bytes -= self.sizes[row]
            last = len(self.ids) - 1
            if row != last:
                moved = self.ids[last]
                self.ids[row] = moved
                self.metadata[row] = self.metadata[last]
                self.sparse[row] = self.sparse[last]
                self.sizes[row] = self.sizes[last]
                self._matrix[row] = self._matrix[last]
                self._sqnorm[row] = self._sqnorm[last]
                self.rows[moved] = row
                self.postings.move_row(last, row)
            else:
                self.postings.drop_last()
            self.ids.pop()
            self.metadata.pop()
            self.sparse.pop()
            self.sizes.pop()
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

