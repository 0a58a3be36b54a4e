"""Re-capturing products: a 'repair' change per id sends its current state (or its
deletion) through the normal pipeline. Reconcile and redrive both repair this way,
so there is one path into the index.

A repair must overwrite whatever the index holds, even a version from a database
that was later restored to an earlier point, or from a clock that ran ahead. So each
row's version is raised first: past its own next clock version and past an optional
floor (reconcile's floor is the newest version the index holds for the id, plus 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import psycopg

from productsearch import products

# The UPDATE changes no indexed column, so the trigger that stamps and captures an
# update (schema/current.sql) does not fire: the row keeps the version it is given, and the
# repair rows below are the only capture.
# A row that is gone gets a deletion version past the floor instead.
RECAPTURE_SQL = f"""
WITH wanted AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(floors)s::bigint[]) AS w(id, floor)
), bumped AS (
    {products.BUMP_VERSIONS_OF_WANTED}
)
INSERT INTO product_changes (product_id, operation, version)
SELECT w.id, 'repair', coalesce(b.version, greatest(product_next_version(0), w.floor))
FROM wanted w LEFT JOIN bumped b ON b.id = w.id
"""


def recapture(conn: psycopg.Connection, product_ids: Iterable[int], floors: Mapping[int, int] | None = None) -> int:
    """Queues a 'repair' change for each distinct id, in one transaction (a savepoint
    when the caller already holds one), and returns how many ids it queued.

    floors: optional {product id: lowest version the repair may carry}; ids without
    one get only the clock bump. Raises ValueError (before writing anything) for an id
    or floor that is not an integer."""
    try:
        ids = sorted({int(i) for i in product_ids})
        by_id = {int(k): int(v) for k, v in (floors or {}).items()}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"product ids and floors must be integers: {exc}") from None
    if not ids:
        return 0
    with conn.transaction():
        conn.execute(RECAPTURE_SQL, {"ids": ids, "floors": [by_id.get(i) for i in ids]})
        conn.execute("SELECT pg_notify('product_changes', '')")
    return len(ids)
