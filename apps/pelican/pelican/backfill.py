"""Backfill: capture every existing product as a change, so the running pelican
service ships it like any other. Progress is committed with each chunk, so a
crashed backfill resumes where it stopped."""

from __future__ import annotations

import logging

import psycopg
from tqdm import tqdm

from productsearch import products

log = logging.getLogger(__name__)
NAME = "products"

CAPTURE_CHUNK_SQL = f"""
WITH chunk AS (
    {products.IDS_AFTER}
), captured AS (
    INSERT INTO product_changes (product_id, operation)
    SELECT id, 'backfill' FROM chunk
    RETURNING product_id
)
SELECT count(*) AS n, max(product_id) AS last_id FROM captured
"""


def backfill(conn: psycopg.Connection, *, chunk_size: int = 1000, restart: bool = False, progress: bool = True) -> int:
    """Returns how many products this call captured."""
    with conn.transaction():
        state = conn.execute("SELECT last_id, finished_at FROM backfill_progress WHERE name = %s FOR UPDATE", (NAME,)).fetchone()
        total = conn.execute(products.COUNT).fetchone()["n"]
        if state is None or restart or state["finished_at"] is not None:
            conn.execute(
                """INSERT INTO backfill_progress (name, last_id, total) VALUES (%s, 0, %s)
                   ON CONFLICT (name) DO UPDATE SET last_id = 0, total = EXCLUDED.total, started_at = now(), finished_at = NULL""",
                (NAME, total),
            )
            after = 0
        else:
            after = state["last_id"]
            log.info("resuming backfill", extra={"after_id": after})
        done_before = conn.execute(products.COUNT_UP_TO, (after,)).fetchone()["n"]
    captured = 0
    bar = tqdm(total=total, initial=done_before, unit="rows", desc="backfill", disable=not progress)
    while True:
        with conn.transaction():
            row = conn.execute(CAPTURE_CHUNK_SQL, {"after": after, "size": chunk_size}).fetchone()
            if row["n"] == 0:
                conn.execute("UPDATE backfill_progress SET finished_at = now() WHERE name = %s", (NAME,))
                break
            after = row["last_id"]
            conn.execute("UPDATE backfill_progress SET last_id = %s WHERE name = %s", (after, NAME))
            conn.execute("SELECT pg_notify('product_changes', '')")
        captured += row["n"]
        bar.update(row["n"])
    bar.close()
    log.info("backfill captured", extra={"products": captured})
    return captured
