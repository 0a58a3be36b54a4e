"""Loads a product catalog CSV (name, sku, description, price[, category]) into Postgres.

The file must be UTF-8; a byte order mark (which spreadsheets write when saving "CSV
UTF-8") is skipped, and header names match whatever their case and surrounding
spaces ("Name", " SKU "). A file that cannot be read as a catalog raises
CatalogError, whose message names the line and the problem.

SKUs are stored in their normal form (products.normal_sku: NFC), so one typed
precomposed in one file and decomposed in another is one product.

Prices may be written as money text ("$1,344.87"). Bad rows are reported with their
line number and skipped. Good rows are inserted; a SKU already in the table is left
as it is (and counted as kept), because the table, edited through the UI since, is
the source of truth: re-running a load must not revert those edits. With
update_existing (`pelican load-catalog --update-existing`) the file's values
overwrite existing SKUs instead.
"""

from __future__ import annotations

import codecs
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


# Read this much of the file at a time when checking its encoding.
ENCODING_CHECK_CHUNK_BYTES = 1 << 20


class CatalogError(ValueError):
    """The file cannot be read as a catalog at all (its encoding, its header, its CSV
    structure); the message names the line and the problem."""


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


def header_names(raw: list[str]) -> list[str]:
    """The header's column names as the loader matches them: byte order mark and
    surrounding spaces dropped, case folded. Raises CatalogError when two columns
    then share a name or a required column is missing."""
    names = [name.lstrip("\ufeff").strip().casefold() for name in raw]
    for name in set(names):
        if name and names.count(name) > 1:
            columns = [str(n + 1) for n, other in enumerate(names) if other == name]
            raise CatalogError(f"line 1: the header names column {name!r} more than once (columns {', '.join(columns)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing and len(names) == 1:
        # Spreadsheets set to a locale whose decimal mark is a comma save "CSV" with
        # semicolons, and tab-separated text is the other common export. Read with
        # their separator, a decimal-comma price ("1,500", one and a half) would pass
        # as money text (1500), so such a file is refused with the separator named.
        separator = next((label for mark, label in ((";", "semicolons"), ("\t", "tabs")) if mark in raw[0]), None)
        if separator:
            raise CatalogError(f"line 1: the columns are separated by {separator}, not commas; save the file as "
                               f"\"CSV UTF-8 (comma delimited)\" with a point as the decimal mark")
    if missing:
        raise CatalogError(f"line 1: the header lacks column(s) {missing}; found {raw} "
                           f"(names match whatever their case; required: {list(REQUIRED_COLUMNS)})")
    return names


def parse_rows(lines: io.TextIOBase, report: LoadReport) -> Iterator[dict]:
    """The good rows of a catalog CSV as dicts (name, sku, description, price,
    category), each bad row recorded in `report` with its line number and skipped.
    Raises CatalogError for a file that is not a catalog (see header_names) or whose
    CSV structure breaks (a NUL byte, a field over the csv module's limit)."""
    try:
        raw = next(csv.reader([next(iter(lines), "")]), [])
    except csv.Error as exc:
        raise CatalogError(f"line 1: {exc}") from exc
    reader = csv.DictReader(lines, fieldnames=header_names(raw))
    seen_skus: set[str] = set()
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            # The record that broke starts after the lines read so far (and the header).
            raise CatalogError(f"line {reader.line_num + 2}: {exc}") from exc
        line = reader.line_num + 1  # the header was read apart
        try:
            if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
                raise ValueError("wrong number of fields")
            # The SKU is an identity key: one normal form, so the same SKU typed
            # precomposed or decomposed is one product (products.normal_sku).
            name, sku, description = row["name"].strip(), products.normal_sku(row["sku"]), row["description"].strip()
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
    kept unless update_existing. Raises CatalogError, before anything is written,
    when the file is not UTF-8 or its header is not a catalog's, and when its CSV
    structure breaks (the rows before that line are then loaded)."""
    check_utf8(path)
    report = LoadReport()
    sql = products.upsert_sql(update_existing)
    with open(path, newline="", encoding="utf-8-sig", errors="strict") as handle:
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


def check_utf8(path: Path) -> None:
    """Raises CatalogError naming the line and byte when the file at `path` is not
    UTF-8 (a spreadsheet's "CSV" in a Windows code page, say), reading it a chunk at a
    time."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    line, offset = 1, 0
    with open(path, "rb") as handle:
        while chunk := handle.read(ENCODING_CHECK_CHUNK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = offset + exc.start
                line += chunk[: exc.start].count(b"\n")
                raise CatalogError(f"line {line}: the file is not UTF-8 (byte 0x{exc.object[exc.start]:02x} near offset {bad}); "
                                   "save it as \"CSV UTF-8\"") from None
            line += chunk.count(b"\n")
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise CatalogError(f"line {line}: the file is not UTF-8 (it ends inside a character); "
                               "save it as \"CSV UTF-8\"") from None
