"""Claims captured changes and ships them to SQS.

One transaction per batch: claim change rows with FOR UPDATE SKIP LOCKED (so
replicas never take the same rows), read each product's current state, send the
jobs, and only then delete the claimed rows. If anything fails before the commit,
the rows stay and are shipped again: delivery is at least once, and emu's version
check makes a repeat harmless.

Each message also carries the lexical corpus parameters (average document length, k1,
b: productsearch.lexical), read once per batch, which emu weights the BM25 sparse
vectors by: emu has no database access.
"""

from __future__ import annotations

import logging
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg

from productsearch import jobs, lexical, products
from productsearch.jobs import Change
from productsearch.logs import brief

log = logging.getLogger(__name__)

CLAIM_SQL = """
SELECT id, product_id, version FROM product_changes
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

DELETE_CLAIMED_SQL = "DELETE FROM product_changes WHERE id = ANY(%s)"
# SendMessageBatch requests in flight at once: a claim of scattered changes is a
# message per product partition, so sending them one request after another would
# cap pelican at ten messages per round trip to SQS.
SEND_LANES = 4


class SendFailed(RuntimeError):
    """SQS did not take every message of a batch; nothing was deleted from the outbox."""


class SendRefused(SendFailed):
    """SQS refused a message as the sender's fault (e.g. InvalidMessageContents): a
    retry gets the same answer, so the outbox is stuck until the producer is fixed."""


@dataclass(frozen=True)
class ShipResult:
    """What one ship_batch did: change rows claimed (and deleted), distinct products
    among them (one change each in the jobs), and SQS messages sent."""

    changes_claimed: int
    products: int
    messages: int


def ship_batch(conn: psycopg.Connection, sqs, queue_url: str, *, claim_limit: int, changes_per_message: int) -> ShipResult:
    """Claims up to `claim_limit` change rows, ships each product's newest change at
    its current state in messages of up to `changes_per_message` changes, and deletes
    the rows, all in one transaction on `conn` (a dict_row connection). A claim that
    finds nothing returns ShipResult(0, 0, 0). Raises SendFailed (or a boto3 or
    psycopg error) with nothing deleted: the rows are claimed again later."""
    with conn.transaction():
        claimed = conn.execute(CLAIM_SQL, (claim_limit,)).fetchall()
        if not claimed:
            return ShipResult(0, 0, 0)
        newest: dict[int, int] = {}
        for row in claimed:
            # Rows captured before rows had versions carry none: their id was their version.
            captured = row["version"] if row["version"] is not None else row["id"]
            newest[row["product_id"]] = max(newest.get(row["product_id"], 0), captured)
        # One statement reads each row's state and its version together.
        rows = {r["id"]: r for r in conn.execute(products.SHIPPED_ROWS_BY_IDS, (list(newest),)).fetchall()}
        changes = [shipped_change(pid, version, rows.get(pid)) for pid, version in sorted(newest.items())]
        corpus = corpus_parameters(conn)
        packed = list(jobs.pack_by_partition(changes, changes_per_message))
        send_in_lanes(sqs, queue_url, [(group, jobs.encode(batch, corpus)) for group, batch in packed])
        conn.execute(DELETE_CLAIMED_SQL, ([r["id"] for r in claimed],))
    log.info("shipped changes", extra={"changes": len(claimed), "products": len(changes), "messages": len(packed)})
    return ShipResult(len(claimed), len(changes), len(packed))


def send_in_lanes(sqs, queue_url: str, messages: list[tuple[str, str]], lanes: int = SEND_LANES) -> None:
    """Sends (message group, body) pairs in SendMessageBatch requests, up to `lanes`
    requests at once. Every group keeps to one lane, where its messages go in order,
    one request after another, so a group's order holds while other groups' requests
    overlap its round trips. Returns when every request has succeeded; raises the
    first lane's error (SendFailed, a boto3 error) after every lane has ended, so
    nothing is acknowledged while any message may be missing."""
    # A lane of its own only for a full request's worth: fewer, fuller requests cost less.
    lanes = max(1, min(lanes, len(messages) // jobs.MAX_SQS_BATCH_ENTRIES))
    by_lane: dict[int, list[tuple[str, str]]] = {}
    for group, body in messages:
        by_lane.setdefault(zlib.crc32(group.encode()) % lanes, []).append((group, body))

    def send_lane(lane: list[tuple[str, str]]) -> None:
        groups = iter([group for group, _ in lane])
        for request in jobs.group_for_batch_requests([body for _, body in lane]):
            send_message_batch(sqs, queue_url, request, [next(groups) for _ in request])

    if len(by_lane) <= 1:
        for lane in by_lane.values():
            send_lane(lane)
        return
    with ThreadPoolExecutor(len(by_lane), thread_name_prefix="send") as pool:
        futures = [pool.submit(send_lane, lane) for lane in by_lane.values()]
    for future in futures:
        if (exc := future.exception()) is not None:
            raise exc


def corpus_parameters(conn: psycopg.Connection) -> lexical.CorpusStats | None:
    """The lexical statistics' corpus row, or None while the schema lacks it (a pelican
    deployed before `pelican migrate` ran): its messages then go without, and emu
    encodes them unnormalised rather than the outbox stalling."""
    try:
        with conn.transaction():  # a savepoint: a missing table must not abort the batch
            return lexical.read_corpus(conn)
    except (psycopg.errors.UndefinedTable, LookupError) as exc:
        log.warning("no lexical statistics to send; run `pelican migrate`", extra={"error": brief(exc, 200)})
        return None


def shipped_change(product_id: int, newest_captured: int, row: dict | None) -> Change:
    """The job for one product: its current row at the row's own version, or, when the
    row is gone, a deletion at `newest_captured` (the greatest version among its claimed
    change rows, which for a delete outranks the row's last state).

    A row still at version 0 has not been written since rows had versions, so the change
    ids it was captured under are the versions an existing index knows its state by;
    shipping it at 0 would be refused as older than that same state."""
    if row is None:
        return Change(product_id=product_id, version=newest_captured, product=None)
    state = {k: v for k, v in row.items() if k != "version"}
    return Change(product_id=product_id, version=row["version"] or newest_captured, product=jobs.product_payload(state))


def send_message_batch(sqs, queue_url: str, bodies: list[str], groups: list[str]) -> None:
    """Sends up to ten bodies in one request, retrying entries SQS failed on its side.
    On a FIFO queue each body goes to its message group (groups[i]) with its content
    hash as the deduplication id. Raises SendFailed when SQS refuses an entry."""
    entries = []
    for i, (body, group) in enumerate(zip(bodies, groups, strict=True)):
        entry = {"Id": f"m{i}", "MessageBody": body}
        if jobs.is_fifo(queue_url):
            entry |= {"MessageGroupId": group, "MessageDeduplicationId": jobs.deduplication_id(body)}
        entries.append(entry)
    for attempt in range(3):
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        failed = response.get("Failed", [])
        if not failed:
            return
        retry_ids = {f["Id"] for f in failed if not f.get("SenderFault")}
        if len(retry_ids) != len(failed):
            raise SendRefused(f"SQS refused messages: {[(f['Id'], f.get('Message')) for f in failed]}")
        entries = [e for e in entries if e["Id"] in retry_ids]
    raise SendFailed(f"SQS kept failing {len(entries)} message(s) after 3 attempts")

