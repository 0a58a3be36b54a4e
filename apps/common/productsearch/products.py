"""The `products` table in Python: its columns and every query the apps run on it.

The table itself (DDL, constraints, the capture triggers that fill the outbox) is
defined in productsearch/schema/: the baseline migration and current.sql (its README).
This module is the one place that spells a query on it; every column list is built
from the tuples below, so a column added to what reaches the index is added once.

A row, as every caller reads it, is a dict keyed by column name (db.connect uses
psycopg's dict_row): `id` and CONTENT_COLUMNS, plus `updated_at` and `version` where
the outbox ships it. documents.build_record turns such a row into the record the
index stores (documents.IndexRecord), and documents.is_current says whether the index
still holds a row's current content.

The constants are SQL text with psycopg placeholders; each one's docstring-comment
names its parameters. The two builders (upsert_sql, update_sql) validate the column
names they splice in against the tuples here, so no caller-supplied name reaches SQL.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

TABLE = "products"
KEY = "id"

# What reaches the index: its text (documents.indexed_text) or its metadata
# (documents.metadata). The WHEN clause of the trigger that stamps and captures an
# update (schema/current.sql) compares the same columns, plus id: an UPDATE of any other
# column is not a change worth a job.
CONTENT_COLUMNS = ("name", "sku", "description", "price", "category")

# A product as the apps read and show it.
ROW_COLUMNS = (KEY, *CONTENT_COLUMNS)

# A product as the outbox ships it: its content plus the version the row's triggers
# stamped (schema/current.sql) and when it last changed.
SHIPPED_COLUMNS = (*ROW_COLUMNS, "updated_at", "version")

# The unique key the catalog loader upserts by.
NATURAL_KEY = "sku"

# The one Unicode normal form a stored SKU is in (Unicode Standard Annex #15). NFC,
# not NFKC: canonical equivalents (a precomposed "é" and "e" + U+0301) are one key,
# while compatibility variants (full-width letters) stay what was typed; search
# matches those through lexical.match_form. The database refuses any other form
# (products_sku_nfc in schema/000_baseline.sql), so no writer can bypass it.
SKU_NORMAL_FORM = "NFC"


def normal_sku(text: str) -> str:
    """`text` as a stored SKU: surrounding whitespace dropped, then SKU_NORMAL_FORM.
    Two strings that display alike because they are canonically equivalent give the
    same result."""
    return unicodedata.normalize(SKU_NORMAL_FORM, text.strip())


def _select(columns: Iterable[str], tail: str = "") -> str:
    """SELECT <columns> FROM products [tail]."""
    text = f"SELECT {', '.join(columns)} FROM {TABLE}"
    return f"{text} {tail}" if tail else text


# -- Reading rows ---------------------------------------------------------------------

# One row by primary key with the version its triggers stamped: the state an editor
# reads and the version an edit's precondition names. Parameter: (id,).
VERSIONED_ROW_BY_ID = _select((*ROW_COLUMNS, "version"), f"WHERE {KEY} = %s")
# The same, locking the row until the transaction ends (a conditional edit).
VERSIONED_ROW_BY_ID_FOR_UPDATE = VERSIONED_ROW_BY_ID + " FOR UPDATE"
# The rows of a list of ids, in no order; absent ids are simply missing. Parameter: (ids,).
ROWS_BY_IDS = _select(ROW_COLUMNS, f"WHERE {KEY} = ANY(%s)")
# As ROWS_BY_IDS, with each row's version and updated_at read in the same statement,
# so a shipped state and its version always belong together. Parameter: (ids,).
SHIPPED_ROWS_BY_IDS = _select(SHIPPED_COLUMNS, f"WHERE {KEY} = ANY(%s)")
# Keyset pagination: the next `limit` rows after id `after`, by id. Parameters: (after, limit).
ROWS_AFTER = _select(ROW_COLUMNS, f"WHERE {KEY} > %s ORDER BY {KEY} LIMIT %s")
# The ids among a list that still have a row. Parameter: (ids,).
PRESENT_IDS = _select((KEY,), f"WHERE {KEY} = ANY(%s)")
# Keyset pagination over ids only (the backfill's chunk). Named parameters: after, size.
IDS_AFTER = _select((KEY,), f"WHERE {KEY} > %(after)s ORDER BY {KEY} LIMIT %(size)s")
# Every row's content, for a full scan through a server-side cursor (lexical refit).
ALL_CONTENT = _select(CONTENT_COLUMNS)

# -- Counting and listing -------------------------------------------------------------

# How many rows, as column `n`.
COUNT = _select(("count(*) AS n",))
# How many rows up to and including id %s (a resumed backfill's progress), as `n`.
COUNT_UP_TO = COUNT + f" WHERE {KEY} <= %s"
# The distinct non-empty categories, sorted, at most 200 (the filter's choices).
CATEGORIES = _select(("category",), "WHERE category <> '' GROUP BY category ORDER BY category LIMIT 200")

# -- Writing --------------------------------------------------------------------------

# Raises each listed row's version past its next clock version (product_next_version,
# schema/current.sql) and past the row's floor, for the ids in a CTE named `wanted` with
# columns (id, floor); RETURNING id, version. Changes no indexed column, so the
# trigger that stamps and captures an update does not fire and the row keeps the
# version given. Meant to be a CTE
# of the statement that writes the matching outbox rows (pelican.recapture).
BUMP_VERSIONS_OF_WANTED = f"""UPDATE {TABLE} p SET version = greatest(product_next_version(p.version), w.floor)
    FROM wanted w WHERE p.{KEY} = w.id
    RETURNING p.{KEY}, p.version"""


def upsert_sql(update_existing: bool) -> str:
    """INSERT of one product's content with named parameters (one per CONTENT_COLUMNS
    entry), for executemany. On a SKU that already exists the row is kept as it is
    (ON CONFLICT DO NOTHING, so rowcount counts only inserted rows) or, with
    update_existing, its other content columns are overwritten."""
    columns = ", ".join(CONTENT_COLUMNS)
    values = ", ".join(f"%({c})s" for c in CONTENT_COLUMNS)
    insert = f"INSERT INTO {TABLE} ({columns})\nVALUES ({values})\n"
    if not update_existing:
        return insert + f"ON CONFLICT ({NATURAL_KEY}) DO NOTHING"
    assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in CONTENT_COLUMNS if c != NATURAL_KEY)
    return insert + f"ON CONFLICT ({NATURAL_KEY}) DO UPDATE SET {assignments}"


def update_sql(columns: Iterable[str]) -> str:
    """UPDATE of the given content columns of the row with named parameter `id`, one
    named parameter per column, RETURNING the row (ROW_COLUMNS) and the version its
    trigger stamped. Raises ValueError for an empty list or a name that is not one of
    CONTENT_COLUMNS (the names are spliced into the SQL, so only known ones pass)."""
    names = list(columns)
    unknown = [c for c in names if c not in CONTENT_COLUMNS]
    if not names or unknown:
        raise ValueError(f"columns to update must be a non-empty subset of {CONTENT_COLUMNS}, got {names}")
    assignments = ", ".join(f"{c} = %({c})s" for c in names)
    returning = ", ".join((*ROW_COLUMNS, "version"))
    return f"UPDATE {TABLE} SET {assignments} WHERE {KEY} = %({KEY})s RETURNING {returning}"
