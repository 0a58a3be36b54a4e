"""Column views of metadata for the local index server's filters: one
:class:`FieldColumn` per metadata field of a namespace, so a filter condition is
evaluated over every row at once with numpy rather than record by record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import numpy as np


def is_number(value: Any) -> TypeGuard[int | float]:
    """True for ints and floats, False for booleans (a boolean is not a number in filters)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_key(value: Any) -> tuple[str, Any]:
    """Typed key for a string/boolean value (keeps ``True`` apart from ``1``)."""
    if isinstance(value, bool):
        return ("b", value)
    return ("s", value)



class FieldColumn:
    """Vectorised view of one metadata field across the rows of a namespace.

    * ``present``: the record has the field
    * ``num``: float64 value where the field holds a number, NaN elsewhere
    * ``code``: vocabulary code of a scalar string/boolean value, -1 elsewhere
    * ``list_rows`` / ``list_codes``: one entry per element of list-of-strings values
    """

    __slots__ = ("code", "list_codes", "list_rows", "num", "present", "vocab")

    def __init__(self, field: str, metadatas: Sequence[dict[str, Any] | None]) -> None:
        n = len(metadatas)
        present = np.zeros(n, dtype=bool)
        num = np.full(n, np.nan, dtype=np.float64)
        code = np.full(n, -1, dtype=np.int32)
        vocab: dict[tuple[str, Any], int] = {}
        list_rows: list[int] = []
        list_codes: list[int] = []
        for row, meta in enumerate(metadatas):
            if not meta:
                continue
            value = meta.get(field)
            if value is None:
                continue
            present[row] = True
            if isinstance(value, bool) or isinstance(value, str):
                key = value_key(value)
                c = vocab.get(key)
                if c is None:
                    c = vocab[key] = len(vocab)
                code[row] = c
            elif isinstance(value, (int, float)):
                num[row] = value
            elif isinstance(value, list):
                for element in value:
                    key = value_key(element)
                    c = vocab.get(key)
                    if c is None:
                        c = vocab[key] = len(vocab)
                    list_rows.append(row)
                    list_codes.append(c)
        self.present = present
        self.num = num
        self.code = code
        self.vocab = vocab
        self.list_rows = np.asarray(list_rows, dtype=np.int64)
        self.list_codes = np.asarray(list_codes, dtype=np.int32)

    def _code_for(self, value: Any) -> int:
        key = value_key(value)
        c = self.vocab.get(key)
        if c is None:
            c = self.vocab[key] = len(self.vocab)
        return c

    def update_rows(
        self, field: str, rows: Sequence[int], metadatas: Sequence[dict[str, Any] | None], size: int
    ) -> None:
        """Bring the column up to date after *rows* were written (appended or overwritten).

        *metadatas* are the rows' new metadata and *size* the namespace's new row count
        (rows are only ever appended at the end or overwritten in place).
        """
        old = len(self.present)
        if size > old:
            grow = size - old
            self.present = np.concatenate([self.present, np.zeros(grow, dtype=bool)])
            self.num = np.concatenate([self.num, np.full(grow, np.nan, dtype=np.float64)])
            self.code = np.concatenate([self.code, np.full(grow, -1, dtype=np.int32)])
        row_array = np.asarray(rows, dtype=np.int64)
        overwritten = row_array[row_array < old]
        if overwritten.size:
            self.present[overwritten] = False
            self.num[overwritten] = np.nan
            self.code[overwritten] = -1
            if self.list_rows.size:
                keep = ~np.isin(self.list_rows, overwritten)
                self.list_rows = self.list_rows[keep]
                self.list_codes = self.list_codes[keep]
        new_rows: list[int] = []
        new_codes: list[int] = []
        for row, meta in zip(rows, metadatas, strict=True):
            value = meta.get(field) if meta else None
            if value is None:
                continue
            self.present[row] = True
            if isinstance(value, (bool, str)):
                self.code[row] = self._code_for(value)
            elif isinstance(value, (int, float)):
                self.num[row] = value
            elif isinstance(value, list):
                for element in value:
                    new_rows.append(row)
                    new_codes.append(self._code_for(element))
        if new_rows:
            self.list_rows = np.concatenate(
                [self.list_rows, np.asarray(new_rows, dtype=np.int64)]
            )
            self.list_codes = np.concatenate(
                [self.list_codes, np.asarray(new_codes, dtype=np.int32)]
            )

    def eq_mask(self, values: Sequence[Any]) -> np.ndarray:
        """Rows whose value (or any list element) equals one of *values*."""
        mask = np.zeros(len(self.present), dtype=bool)
        numbers = [float(v) for v in values if is_number(v)]
        if numbers:
            if len(numbers) == 1:
                mask |= self.num == numbers[0]
            else:
                mask |= np.isin(self.num, np.asarray(numbers, dtype=np.float64))
        codes = [self.vocab.get(value_key(v)) for v in values if not is_number(v)]
        codes = [c for c in codes if c is not None]
        if codes:
            if len(codes) == 1:
                mask |= self.code == codes[0]
                if self.list_rows.size:
                    mask[self.list_rows[self.list_codes == codes[0]]] = True
            else:
                wanted = np.asarray(codes, dtype=np.int32)
                mask |= np.isin(self.code, wanted)
                if self.list_rows.size:
                    mask[self.list_rows[np.isin(self.list_codes, wanted)]] = True
        return mask


ColumnGetter = Callable[[str], FieldColumn]
