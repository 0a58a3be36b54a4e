"""Pinecone metadata filter language for the local index server.

The grammar follows Pinecone's documented filter language:

* ``{"genre": "drama"}`` -- implicit equality
* ``{"year": {"$gte": 2000, "$lt": 2010}}`` -- several operators on one field are ANDed
* ``{"genre": "drama", "year": 2020}`` -- several fields are ANDed
* ``{"$and": [...]}``, ``{"$or": [...]}`` -- explicit combinators (non-empty lists)
* operators ``$eq $ne $gt $gte $lt $lte $in $nin $exists``

Value semantics (documented here because Pinecone's docs are terse):

* Numbers are compared as float64; booleans are *not* numbers (``True != 1``).
* ``$gt/$gte/$lt/$lte`` accept numbers only and never match non-numeric values.
* ``$eq``/``$in`` against a field holding a list of strings match when any element
  matches; ``$ne``/``$nin`` are their exact negation, so they also match records
  where the field is absent (MongoDB semantics).
* ``$exists: true`` matches records that have the field, ``false`` those that don't.

:func:`compile_filter` validates a raw filter and returns a node tree (or ``None``
for "match everything"). Every node can be evaluated two ways: ``matches(meta)``
on one metadata dict (pure Python, used as the reference semantics) and
``mask(columns)`` over a whole namespace with numpy, using lazily built per-field
:class:`~devstack.index_server.columns.FieldColumn` objects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from devstack.index_server.columns import ColumnGetter, FieldColumn, is_number
from devstack.index_server.limits import MAX_IN_VALUES

__all__ = [
    "MAX_IN_VALUES",
    "FieldColumn",
    "FilterError",
    "FilterNode",
    "compile_filter",
    "matches",
]

_COMPARISON_OPS = ("$gt", "$gte", "$lt", "$lte")
_FIELD_OPS = ("$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISON_OPS)
_LOGICAL_OPS = ("$and", "$or")


class FilterError(ValueError):
    """A filter that does not follow the filter grammar; the server answers 400."""


def _render(value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."



# --------------------------------------------------------------------------- nodes


class FilterNode:
    """A compiled filter expression."""

    def matches(self, meta: dict[str, Any] | None) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def mask(self, columns: ColumnGetter, n: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def fields(self) -> set[str]:  # pragma: no cover
        raise NotImplementedError


class _Logical(FilterNode):
    """``$and`` (every child matches) or ``$or`` (any child does) over compiled filters;
    never empty: the compiler refuses an empty array."""

    def __init__(self, children: list[FilterNode], any_of: bool = False) -> None:
        self.children = children
        self.any_of = any_of

    def matches(self, meta: dict[str, Any] | None) -> bool:
        results = (child.matches(meta) for child in self.children)
        return any(results) if self.any_of else all(results)

    def mask(self, columns: ColumnGetter, n: int) -> np.ndarray:
        combine = np.logical_or if self.any_of else np.logical_and
        result = np.full(n, not self.any_of, dtype=bool)
        for child in self.children:
            combine(result, child.mask(columns, n), out=result)
        return result

    def fields(self) -> set[str]:
        return set().union(*(c.fields() for c in self.children))


def _scalar_equals(stored: Any, wanted: Any) -> bool:
    if is_number(wanted):
        return is_number(stored) and float(stored) == float(wanted)
    if isinstance(wanted, bool):
        return isinstance(stored, bool) and stored is wanted
    return isinstance(stored, str) and stored == wanted


def _value_in(stored: Any, wanted: Sequence[Any]) -> bool:
    if isinstance(stored, list):
        return any(_scalar_equals(el, w) for el in stored for w in wanted)
    return any(_scalar_equals(stored, w) for w in wanted)


class _Cond(FilterNode):
    def __init__(self, field: str, op: str, value: Any) -> None:
        self.field = field
        self.op = op
        self.value = value

    def fields(self) -> set[str]:
        return {self.field}

    def matches(self, meta: dict[str, Any] | None) -> bool:
        stored = meta.get(self.field) if meta else None
        op = self.op
        if op == "$exists":
            return (stored is not None) is self.value
        if op in ("$eq", "$ne"):
            hit = stored is not None and _value_in(stored, (self.value,))
            return hit if op == "$eq" else not hit
        if op in ("$in", "$nin"):
            hit = stored is not None and _value_in(stored, self.value)
            return hit if op == "$in" else not hit
        # numeric comparison
        if not is_number(stored):
            return False
        x = float(stored)
        v = float(self.value)
        if op == "$gt":
            return x > v
        if op == "$gte":
            return x >= v
        if op == "$lt":
            return x < v
        return x <= v

    def mask(self, columns: ColumnGetter, n: int) -> np.ndarray:
        col = columns(self.field)
        op = self.op
        if op == "$exists":
            return col.present.copy() if self.value else ~col.present
        if op == "$eq":
            return col.eq_mask((self.value,))
        if op == "$ne":
            return ~col.eq_mask((self.value,))
        if op == "$in":
            return col.eq_mask(self.value)
        if op == "$nin":
            return ~col.eq_mask(self.value)
        v = float(self.value)
        with np.errstate(invalid="ignore"):
            if op == "$gt":
                return col.num > v
            if op == "$gte":
                return col.num >= v
            if op == "$lt":
                return col.num < v
            return col.num <= v


# --------------------------------------------------------------------------- compiler


def _check_scalar(field: str, op: str, value: Any) -> None:
    if isinstance(value, str) or isinstance(value, bool):
        return
    if is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise FilterError(
                f"Invalid filter: {op} for field '{field}' must be a finite number, "
                f"got {_render(value)}"
            )
        return
    raise FilterError(
        f"Invalid filter: {op} for field '{field}' expects a string, number or boolean, "
        f"got {_render(value)}"
    )


def _compile_operator(field: str, op: str, value: Any) -> FilterNode:
    if op in ("$eq", "$ne"):
        _check_scalar(field, op, value)
        return _Cond(field, op, value)
    if op in ("$in", "$nin"):
        if not isinstance(value, list):
            raise FilterError(
                f"Invalid filter: {op} for field '{field}' expects an array of strings, numbers "
                f"or booleans, got {_render(value)}"
            )
        if len(value) > MAX_IN_VALUES:
            raise FilterError(
                f"Invalid filter: {op} for field '{field}' has {len(value)} values, which exceeds "
                f"the limit of {MAX_IN_VALUES} values per $in/$nin operator"
            )
        for element in value:
            _check_scalar(field, op, element)
        return _Cond(field, op, list(value))
    if op in _COMPARISON_OPS:
        if not is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            raise FilterError(
                f"Invalid filter: {op} for field '{field}' expects a number, got {_render(value)}"
            )
        return _Cond(field, op, value)
    if op == "$exists":
        if not isinstance(value, bool):
            raise FilterError(
                f"Invalid filter: $exists for field '{field}' expects true or false, "
                f"got {_render(value)}"
            )
        return _Cond(field, op, value)
    if op in _LOGICAL_OPS:
        raise FilterError(
            f"Invalid filter: {op} is a logical operator and cannot be applied to field "
            f"'{field}'; use it at the top level, e.g. {{\"{op}\": [{{...}}, {{...}}]}}"
        )
    raise FilterError(
        f"Invalid filter: unknown operator '{op}' for field '{field}'. Supported operators: "
        f"{', '.join(_FIELD_OPS)}, $and, $or"
    )


def _compile_field(field: str, spec: Any) -> FilterNode:
    if not field:
        raise FilterError("Invalid filter: field names must be non-empty strings")
    if isinstance(spec, dict):
        if not spec:
            raise FilterError(
                f"Invalid filter: field '{field}' has an empty operator object; "
                f"expected e.g. {{\"$eq\": value}}"
            )
        nodes = []
        for op, value in spec.items():
            if not isinstance(op, str) or not op.startswith("$"):
                raise FilterError(
                    f"Invalid filter: expected an operator such as $eq for field '{field}', "
                    f"got key {_render(op)} (nested metadata objects are not supported)"
                )
            nodes.append(_compile_operator(field, op, value))
        return nodes[0] if len(nodes) == 1 else _Logical(nodes)
    if isinstance(spec, list):
        raise FilterError(
            f"Invalid filter: field '{field}' is compared to an array {_render(spec)}; "
            f"use {{\"$in\": [...]}} to match any of several values"
        )
    if spec is None:
        raise FilterError(
            f"Invalid filter: field '{field}' is compared to null; "
            f"use {{\"$exists\": false}} to match records without the field"
        )
    _check_scalar(field, "$eq", spec)
    return _Cond(field, "$eq", spec)


def _compile_object(raw: Any, where: str) -> FilterNode | None:
    if not isinstance(raw, dict):
        raise FilterError(f"Invalid filter: {where} must be a JSON object, got {_render(raw)}")
    nodes: list[FilterNode] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            raise FilterError(f"Invalid filter: keys must be strings, got {_render(key)}")
        if key in _LOGICAL_OPS:
            if not isinstance(value, list) or not value:
                raise FilterError(
                    f"Invalid filter: {key} expects a non-empty array of filter objects, "
                    f"got {_render(value)}"
                )
            children = []
            for index, item in enumerate(value):
                child = _compile_object(item, f"{key}[{index}]")
                if child is None:
                    raise FilterError(
                        f"Invalid filter: {key}[{index}] is an empty filter object"
                    )
                children.append(child)
            nodes.append(_Logical(children, any_of=key == "$or"))
        elif key.startswith("$"):
            if key in _FIELD_OPS:
                raise FilterError(
                    f"Invalid filter: operator {key} must be applied to a field, "
                    f"e.g. {{\"genre\": {{\"{key}\": ...}}}}"
                )
            raise FilterError(
                f"Invalid filter: unknown top-level operator '{key}'; only $and and $or "
                f"may appear outside a field"
            )
        else:
            nodes.append(_compile_field(key, value))
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else _Logical(nodes)


def compile_filter(raw: Any) -> FilterNode | None:
    """Validate *raw* and compile it; ``None`` (or ``{}``) compiles to ``None`` (match all).

    Raises:
        FilterError: the filter does not follow the grammar; the message says why.
    """
    if raw is None:
        return None
    return _compile_object(raw, "filter")


def matches(raw_filter: Any, meta: dict[str, Any] | None) -> bool:
    """Convenience: compile *raw_filter* and evaluate it against one metadata dict."""
    node = compile_filter(raw_filter)
    return True if node is None else node.matches(meta)

