"""Sparse values of the local index server: the :class:`SparseVector` type and
:class:`SparsePostings`, which scores a namespace's sparse values against a query
(the sparse half of a Pinecone sparse-dense, i.e. hybrid, dotproduct score).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

@dataclass(frozen=True)
class SparseVector:
    """The sparse part of a record or query: parallel arrays of term indices and weights.

    indices: uint32, unique, in the order given; values: float32, finite, same length.
    Validation happens where requests are parsed (:func:`devstack.index_server.protocol.parse_sparse`); this
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

    def as_json(self) -> dict[str, Any]:
        """Pinecone's wire shape: ``{"indices": [int], "values": [float]}``."""
        return {"indices": self.indices.tolist(), "values": self.values}


def encode_sparse(sparse: SparseVector | None) -> bytes | None:
    """The SQLite column value: :meth:`SparseVector.to_bytes`, or NULL for no sparse part."""
    return None if sparse is None else sparse.to_bytes()


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
        self.matrix: scipy.sparse.csc_matrix | scipy.sparse.csc_array | None = None
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
            cols = np.concatenate([c for c in self.cols if c is not None])
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
        # scipy 1.17 declares .shape as None to the type checker; it is (rows, columns)
        rows, columns = self.matrix.shape  # pyright: ignore[reportGeneralTypeIssues]
        built = min(rows, n)
        inside = qcols < columns
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

