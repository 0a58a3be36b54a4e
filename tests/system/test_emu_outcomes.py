"""emu against the real queue and index: whatever a job holds, emu keeps running;
what can never succeed goes to the DLQ with its reason, its neighbours are indexed,
and an index outage ends with every change indexed and nothing dead-lettered."""

from __future__ import annotations

import json
import time

import pytest

from devstack.waiting import wait_until
from productsearch import jobs
from tests import kit

pytestmark = pytest.mark.stack


def row(n: int, **overrides) -> dict:
    return {"name": f"Lamp {n}", "sku": f"L-{n}", "description": f"a desk lamp number {n}", "price": "12.50",
            "category": "Home", **overrides}


def send(parts, body, group: str = "products-0") -> None:
    """Sends a job as pelican would (FIFO group and deduplication id), whatever it holds."""
    text = body if isinstance(body, str) else json.dumps(body)
    parts.sqs.send_message(QueueUrl=parts.env["SQS_QUEUE_URL"], MessageBody=text, MessageGroupId=group,
                           MessageDeduplicationId=jobs.deduplication_id(text))


def dead_letters(parts, expected: int) -> list[dict]:
    got: list[dict] = []

    def enough():
        got.extend(parts.drain_queue(parts.env["SQS_DLQ_URL"], idle_rounds=1))
        return len(got) >= expected
    wait_until(enough, 120, what=f"{expected} dead letters")
    return got


def queue_empty(parts, url: str) -> bool:
    attrs = parts.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_malformed_jobs_are_dead_lettered_with_reasons_and_emu_keeps_running(parts, stack):
    stack.start_app("emu")
    # One message mixing good changes with every kind of bad one ...
    send(parts, {"format": 1, "changes": [
        {"id": 1, "v": 1, "row": row(1)},
        {"id": 2, "v": 1, "row": row(2, price=None)},   # killed emu before: decimal.InvalidOperation
        {"id": 3, "v": 1e400, "row": row(3)},            # a version out of range
        {"id": 4, "v": 1, "row": row(4, price="NaN")},
        {"id": 5, "v": 1, "row": {"name": "no sku"}},
        {"id": 6, "v": 1, "row": row(6)},
    ]})
    # ... and messages that cannot be read at all.
    send(parts, "this is not JSON")
    send(parts, {"format": 7, "changes": []})
    send(parts, {"format": 1, "changes": [{"id": 7, "v": 1, "row": row(7)}, ["nonsense"]]})

    wait_until(lambda: all(parts.vector(i) for i in (1, 6, 7)), 120, what="the good neighbours indexed")
    dead = dead_letters(parts, 7)
    assert len(dead) == 7  # four refused changes, three unreadable messages
    by_product = {d["product_id"]: d["reason"] for d in dead if d["product_id"] is not None}
    assert "price has type NoneType" in by_product[2]
    assert "version must be a JSON integer" in by_product[3]
    assert "finite" in by_product[4]
    assert "lacks sku" in by_product[5]
    whole = [d for d in dead if d["product_id"] is None]
    reasons = " | ".join(d["reason"] for d in whole)
    assert "not JSON" in reasons and "unknown job format" in reasons and "must be an object" in reasons
    assert any(d["raw_body"] == "this is not JSON" for d in whole)
    assert all(parts.vector(i) is None for i in (2, 3, 4, 5))

    # emu survived all of it and still indexes what comes next.
    assert stack.processes["emu"].poll() is None, stack.log_path("emu").read_text()[-3000:]
    send(parts, {"format": 1, "changes": [{"id": 8, "v": 1, "row": row(8)}]})
    wait_until(lambda: parts.vector(8), 60, what="a later job indexed")
    wait_until(lambda: queue_empty(parts, parts.env["SQS_QUEUE_URL"]), 30, what="every message settled and deleted")


@pytest.mark.slow
def test_an_index_outage_heals_without_dead_letters(parts, stack):
    # The outage outlasts what five receives of a failing message used to cover
    # (about a minute at the old 10 s retry), with time scaled down by settings.
    stack.start_app("pelican", options={"poll_interval_seconds": 1})
    stack.start_app("emu", {"EMU_VISIBILITY_TIMEOUT_SECONDS": "10"},
                    options={"max_index_attempts": 2, "outage_retry_max_seconds": 2})
    first = parts.insert_many(5, prefix="before")
    wait_until(lambda: all(parts.vector(i) for i in first), 90, what="rows indexed before the outage")

    for path in ("/vectors/upsert", "/vectors/fetch", "/vectors/delete"):
        kit.inject_index_fault(stack, status=503, count=100_000, paths=[path])
    during = parts.insert_many(20, prefix="during")
    parts.conn.execute("DELETE FROM products WHERE id = %s", (first[0],))
    wait_until(lambda: "index unavailable; pausing receiving" in stack.log_path("emu").read_text(), 60,
               what="emu noticed the outage")
    time.sleep(75)
    assert all(parts.vector(i) is None for i in during), "the outage did not hold writes back; the test proves nothing"
    kit.clear_index_faults(stack)

    wait_until(lambda: all(parts.vector(i) for i in during) and parts.vector(first[0]) is None, 120,
               what="every change made during the outage indexed")
    assert queue_empty(parts, parts.env["SQS_DLQ_URL"]), "an outage must not dead-letter anything"
    wait_until(lambda: queue_empty(parts, parts.env["SQS_QUEUE_URL"]), 30, what="jobs queue drained")
    assert "index available again" in stack.log_path("emu").read_text()
