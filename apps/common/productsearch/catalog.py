"""Loads a product catalog CSV (name, sku, description, price[, category]) into Postgres.

Prices may be written as money text ("$1,344.87"). Bad rows are reported with their
line number and skipped. Good rows are inserted; a SKU already in the table is left
as it is (and counted as kept), because the table, edited through the UI since, is
the source of truth: re-running a load must not revert those edits. With
update_existing (`pelican load-catalog --update-existing`) the file's values
overwrite existing SKUs instead.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import psycopg

from productsearch import products

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("name", "sku", "description", "price")
MAX_NAME_CHARS = 500
MAX_SKU_CHARS = 100
MAX_DESCRIPTION_CHARS = 10_000
_PRICE = re.compile(r"^\$?\s*(\d{1,3}(,\d{3})+|\d+)(\.\d{1,2})?$")


@dataclass
class LoadReport:
    """loaded: rows written (inserted, or with update_existing also overwritten);
    kept: rows whose SKU was already in the table and were left untouched;
    skipped: (line number, reason) of each bad row."""

    loaded: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    kept: int = 0

    def summary(self) -> str:
        text = f"loaded={self.loaded} skipped={len(self.skipped)} kept={self.kept}"
        if self.kept:
            text += " (SKUs already in the table were left as they are; --update-existing overwrites them)"
        return text


def parse_price(text: str) -> Decimal:
    cleaned = text.strip()
    if not _PRICE.match(cleaned):
        raise ValueError(f"price {text!r} is not an amount like 344.87 or $1,344.87")
    return Decimal(cleaned.lstrip("$").strip().replace(",", ""))


def parse_rows(lines: io.TextIOBase, report: LoadReport) -> Iterator[dict]:
    reader = csv.DictReader(lines)
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"CSV header lacks column(s) {missing}; found {reader.fieldnames}")
    seen_skus: set[str] = set()
    for row in reader:
        line = reader.line_num
        try:
            if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
                raise ValueError("wrong number of fields")
            name, sku, description = row["name"].strip(), row["sku"].strip(), row["description"].strip()
            if not name:
                raise ValueError("name is empty")
            if not sku:
                raise ValueError("sku is empty")
            if len(name) > MAX_NAME_CHARS or len(sku) > MAX_SKU_CHARS or len(description) > MAX_DESCRIPTION_CHARS:
                raise ValueError(
                    f"a field is too long (name<={MAX_NAME_CHARS}, sku<={MAX_SKU_CHARS}, description<={MAX_DESCRIPTION_CHARS} chars)"
                )
            if "\x00" in name + sku + description:
                raise ValueError("contains a NUL character")
            if sku in seen_skus:
                raise ValueError(f"duplicate sku {sku!r} in this file")
            price = parse_price(row["price"])
        except (ValueError, InvalidOperation) as exc:
            report.skipped.append((line, str(exc)))
            log.warning("skipping bad catalog row", extra={"line": line, "reason": str(exc)})
            continue
        seen_skus.add(sku)
        yield {
            "name": name,
            "sku": sku,
            "description": description,
            "price": price,
            "category": (row.get("category") or "").strip() or infer_category(name),
        }


def infer_category(name: str) -> str:
    """The sample catalog has no category column; its names end in a product kind
    ("Pro System", "Lite Device"), which makes a useful filterable field."""
    words = name.split()
    return words[-1].lower() if words else ""


def load_catalog(conn: psycopg.Connection, path: Path, batch_size: int = 1000, *,
                 update_existing: bool = False) -> LoadReport:
    """Loads the CSV at `path` in transactions of batch_size rows. Existing SKUs are
    kept unless update_existing. Raises ValueError when the header lacks a required
    column, UnicodeDecodeError when the file is not UTF-8."""
    report = LoadReport()
    sql = products.upsert_sql(update_existing)
    with open(path, newline="", encoding="utf-8", errors="strict") as handle:
        batch: list[dict] = []
        for row in parse_rows(handle, report):
            batch.append(row)
            if len(batch) >= batch_size:
                _write(conn, sql, batch, report)
                batch = []
        if batch:
            _write(conn, sql, batch, report)
    return report


def _write(conn: psycopg.Connection, sql: str, batch: list[dict], report: LoadReport) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(sql, batch)
        # psycopg sums executemany's rowcount; DO NOTHING counts only the inserted rows.
        written = cur.rowcount
    report.loaded += written
    report.kept += len(batch) - written
