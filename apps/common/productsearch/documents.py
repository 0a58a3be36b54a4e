"""What a product becomes in the index: its indexed text, its metadata, its id.

Pinecone's documented limits are checked here, before a request is made, so a row
that can never be indexed is recognised as such (and dead-lettered with the reason)
instead of being retried forever.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

INDEXED_COLUMNS = ("name", "sku", "description", "price", "category")

# Pinecone limits (docs: "Limits" for serverless indexes).
MAX_ID_BYTES = 512
MAX_METADATA_BYTES = 40 * 1024
MAX_VECTORS_PER_UPSERT = 1000
MAX_UPSERT_REQUEST_BYTES = 2 * 1024 * 1024


class UnindexableProduct(ValueError):
    """The row can never be indexed as it stands; the message says why."""


def validate_template(template: str) -> None:
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    if not fields:
        raise ValueError("template names no column, e.g. '{name} {description}'")
    unknown = sorted(set(fields) - set(INDEXED_COLUMNS))
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; allowed: {list(INDEXED_COLUMNS)}")


def indexed_text(product: dict[str, Any], template: str) -> str:
    values = {column: "" if product.get(column) is None else str(product[column]) for column in INDEXED_COLUMNS}
    return template.format(**values).strip()


def vector_id(product_id: int) -> str:
    return str(product_id)


def metadata(product: dict[str, Any], version: int) -> dict[str, Any]:
    """Fields a search may filter on or show without a database round trip.
    `version` is the id of the newest captured change this state reflects."""
    price = product["price"]
    return {
        "name": product["name"],
        "sku": product["sku"],
        "description": product["description"],
        "price": float(price if isinstance(price, (int, float, Decimal)) else Decimal(str(price))),
        "category": product.get("category") or "",
        "version": version,
    }


@dataclass(frozen=True)
class IndexRecord:
    id: str
    text: str
    metadata: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.metadata["version"])


def build_record(product: dict[str, Any], version: int, template: str) -> IndexRecord:
    """Raises UnindexableProduct when the row breaks a limit that retrying cannot fix."""
    record_id = vector_id(product["id"])
    if len(record_id.encode()) > MAX_ID_BYTES:
        raise UnindexableProduct(f"vector id is longer than Pinecone's {MAX_ID_BYTES}-byte limit")
    text = indexed_text(product, template)
    if not text:
        raise UnindexableProduct("indexed text is empty (name and description are blank)")
    meta = metadata(product, version)
    size = len(json.dumps(meta, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise UnindexableProduct(
            f"metadata is {size} bytes, over Pinecone's limit of {MAX_METADATA_BYTES} bytes per record "
            "(shorten the description or name)"
        )
    return IndexRecord(id=record_id, text=text, metadata=meta)
