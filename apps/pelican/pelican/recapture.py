"""Re-capturing products: a 'repair' change per id sends its current state (or its
deletion) through the normal pipeline. Reconcile and redrive both repair this way,
so there is one path into the index."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

RECAPTURE_SQL = """
INSERT INTO product_changes (product_id, operation)
SELECT unnest(%s::bigint[]), 'repair'
"""


def recapture(conn: psycopg.Connection, product_ids: Iterable[int]) -> int:
    ids = sorted({int(i) for i in product_ids})
    if ids:
        conn.execute(RECAPTURE_SQL, (ids,))
        conn.execute("SELECT pg_notify('product_changes', '')")
    return len(ids)
