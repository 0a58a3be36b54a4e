"""Claims captured changes and ships them to SQS.

One transaction per batch: claim change rows with FOR UPDATE SKIP LOCKED (so
replicas never take the same rows), read each product's current state, send the
jobs, and only then delete the claimed rows. If anything fails before the commit,
the rows stay and are shipped again: delivery is at least once, and emu's version
check makes a repeat harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from productsearch import jobs
from productsearch.jobs import Change

log = logging.getLogger(__name__)

CLAIM_SQL = """
SELECT id, product_id FROM product_changes
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

CURRENT_ROWS_SQL = """
SELECT id, name, sku, description, price, category, updated_at
FROM products WHERE id = ANY(%s)
"""

DELETE_CLAIMED_SQL = "DELETE FROM product_changes WHERE id = ANY(%s)"


class SendFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class ShipResult:
    changes_claimed: int
    products: int
    messages: int


def ship_batch(conn: psycopg.Connection, sqs, queue_url: str, *, claim_limit: int, changes_per_message: int) -> ShipResult:
    with conn.transaction():
        claimed = conn.execute(CLAIM_SQL, (claim_limit,)).fetchall()
        if not claimed:
            return ShipResult(0, 0, 0)
        newest: dict[int, int] = {}
        for row in claimed:
            newest[row["product_id"]] = max(newest.get(row["product_id"], 0), row["id"])
        rows = {r["id"]: r for r in conn.execute(CURRENT_ROWS_SQL, (list(newest),)).fetchall()}
        changes = [
            Change(product_id=pid, version=version, product=jobs.product_payload(rows[pid]) if pid in rows else None)
            for pid, version in sorted(newest.items())
        ]
        bodies = [jobs.encode(batch) for batch in jobs.pack(changes, changes_per_message)]
        for group in jobs.group_for_batch_requests(bodies):
            send_message_batch(sqs, queue_url, group)
        conn.execute(DELETE_CLAIMED_SQL, ([r["id"] for r in claimed],))
    log.info("shipped changes", extra={"changes": len(claimed), "products": len(changes), "messages": len(bodies)})
    return ShipResult(len(claimed), len(changes), len(bodies))


def send_message_batch(sqs, queue_url: str, bodies: list[str]) -> None:
    entries = [{"Id": f"m{i}", "MessageBody": body} for i, body in enumerate(bodies)]
    for attempt in range(3):
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        failed = response.get("Failed", [])
        if not failed:
            return
        retry_ids = {f["Id"] for f in failed if not f.get("SenderFault")}
        if len(retry_ids) != len(failed):
            raise SendFailed(f"SQS refused messages: {[(f['Id'], f.get('Message')) for f in failed]}")
        entries = [e for e in entries if e["Id"] in retry_ids]
    raise SendFailed(f"SQS kept failing {len(entries)} message(s) after 3 attempts")

