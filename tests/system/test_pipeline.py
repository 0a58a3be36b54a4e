"""The sync pipeline end to end against real local parts:
Postgres -> pelican -> SQS (moto) -> emu -> index server."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from devstack.waiting import wait_until

pytestmark = pytest.mark.stack

FAST = {"poll_interval_seconds": 1}  # options of `pelican run`


def indexed_text(name: str, description: str) -> str:
    return f"{name} {description}".strip()


def test_insert_update_delete_reach_the_index(parts, stack, embedder):
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")
    pid = parts.insert("Trail Shoe", "A light running shoe for muddy mountain paths", 120)

    v = wait_until(lambda: parts.vector(pid), 90, what="inserted row indexed")
    assert parts.holds_description(pid, "A light running shoe for muddy mountain paths") and v.metadata["price"] == 120.0
    expected = embedder.embed([indexed_text("Trail Shoe", "A light running shoe for muddy mountain paths")])[0]
    assert np.allclose(np.array(v.values), expected, atol=1e-4)

    parts.conn.execute("UPDATE products SET description = %s WHERE id = %s", ("A warm wool winter coat", pid))
    v = wait_until(lambda: parts.holds_description(pid, "A warm wool winter coat") and parts.vector(pid),
                   60, what="updated text indexed")
    expected = embedder.embed([indexed_text("Trail Shoe", "A warm wool winter coat")])[0]
    assert np.allclose(np.array(v.values), expected, atol=1e-4)

    parts.conn.execute("DELETE FROM products WHERE id = %s", (pid,))
    wait_until(lambda: parts.vector(pid) is None, 60, what="deleted row removed from the index")
    wait_until(lambda: parts.pending_changes() == 0, 30, what="change log drained")


def test_update_of_unindexed_column_enqueues_nothing(parts):
    pid = parts.insert("Desk Lamp", "An adjustable reading lamp")
    before = parts.pending_changes()
    parts.conn.execute("UPDATE products SET updated_at = now() - interval '1 day' WHERE id = %s", (pid,))
    parts.conn.execute("UPDATE products SET price = price WHERE id = %s", (pid,))
    assert parts.pending_changes() == before
    parts.conn.execute("UPDATE products SET price = 42 WHERE id = %s", (pid,))
    assert parts.pending_changes() == before + 1


def test_truncate_is_captured_as_deletions(parts):
    ids = parts.insert_many(5, prefix="trunc")
    parts.conn.execute("DELETE FROM product_changes")
    parts.conn.execute("TRUNCATE products")
    rows = parts.conn.execute("SELECT product_id, operation FROM product_changes ORDER BY product_id").fetchall()
    assert [r["product_id"] for r in rows] == ids
    assert {r["operation"] for r in rows} == {"truncate"}


def test_change_made_while_pelican_is_down_arrives_after_restart(parts, stack):
    stack.start_app("emu")
    pid = parts.insert("Camp Stove", "A compact gas stove for backpacking")
    time.sleep(2)
    assert parts.vector(pid) is None  # nobody shipped it yet
    assert parts.pending_changes() == 1
    stack.start_app("pelican", options=FAST)
    wait_until(lambda: parts.vector(pid), 90, what="change captured while pelican was down indexed")


def test_two_pelican_replicas_ship_each_change_exactly_once(parts, stack):
    # No emu: the test reads the queue itself to count deliveries.
    stack.start_app("pelican", options={**FAST, "claim_batch_size": 25}, instance="pelican-a")
    stack.start_app("pelican", options={**FAST, "claim_batch_size": 25}, instance="pelican-b")
    ids = []
    for round_ in range(10):
        ids += parts.insert_many(100, prefix=f"r{round_}")
        time.sleep(0.05)
    wait_until(lambda: parts.pending_changes() == 0, 60, what="both replicas drained the change log")
    bodies = parts.drain_queue(parts.env["SQS_QUEUE_URL"])
    shipped = [c["id"] for body in bodies for c in body["changes"]]
    assert sorted(shipped) == sorted(ids), "a change was duplicated or lost"
    for name in ("pelican-a", "pelican-b"):
        log = stack.log_path(name).read_text()
        assert "shipped changes" in log, f"{name} did no work; the test did not exercise two replicas"


def test_poison_row_is_dead_lettered_with_reason_and_neighbours_indexed(parts, stack):
    topic_watch = parts.sqs.create_queue(QueueName="dead-letter-notifications")["QueueUrl"]
    watch_arn = parts.sqs.get_queue_attributes(QueueUrl=topic_watch, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    parts.sns.subscribe(TopicArn=parts.env["SNS_TOPIC_ARN"], Protocol="sqs", Endpoint=watch_arn)
    parts.sqs.purge_queue(QueueUrl=topic_watch)

    before = parts.insert_many(20, prefix="good")
    poison = parts.insert("Huge Manual", "x" * 50_000)  # text over the 40 KiB the pipeline carries
    after = parts.insert_many(20, prefix="fine")
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")

    wait_until(lambda: all(parts.vector(i) for i in before + after), 120, what="neighbours indexed")
    dead = wait_until(lambda: parts.drain_queue(parts.env["SQS_DLQ_URL"], idle_rounds=1), 60, what="dead letter")
    assert [d["product_id"] for d in dead] == [poison]
    assert "40960-byte limit" in dead[0]["reason"] and "indexed text" in dead[0]["reason"]
    assert parts.vector(poison) is None
    notes = parts.drain_queue(topic_watch, idle_rounds=1)
    assert any(str(poison) in json.dumps(n) for n in notes), notes

    # Fixing the row is itself a change, and it flows through.
    parts.conn.execute("UPDATE products SET description = 'A short manual' WHERE id = %s", (poison,))
    wait_until(lambda: parts.vector(poison), 60, what="fixed row indexed")


@pytest.mark.slow
def test_emu_killed_mid_batch_loses_nothing(parts, stack):
    ids = parts.insert_many(1500, prefix="kill")
    env = {"EMU_VISIBILITY_TIMEOUT_SECONDS": "10", "EMBEDDING_BATCH_SIZE": "32"}
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu", env)
    wait_until(lambda: parts.index.count() >= 100, 120, interval=0.05, what="emu part-way through")
    stack.stop("emu", signal.SIGKILL)
    assert parts.index.count() < len(ids), "emu finished before it was killed; the test proves nothing"
    stack.start_app("emu", env)
    wait_until(lambda: parts.index.count() == len(ids), 240, interval=1, what="every row indexed after the restart")
    found = parts.index.fetch([str(i) for i in ids[:1000]])
    assert len(found) == 1000


def test_emu_sigterm_finishes_or_returns_its_batch(parts, stack):
    ids = parts.insert_many(800, prefix="term")
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu", {"EMBEDDING_BATCH_SIZE": "16"})
    wait_until(lambda: parts.index.count() >= 50, 120, interval=0.05, what="emu part-way through")
    code = stack.stop("emu", signal.SIGTERM, timeout=60)
    assert code == 0
    assert "emu stopped" in stack.log_path("emu").read_text()
    # Whatever it had not finished went back to the queue; a new emu completes the job.
    stack.start_app("emu")
    wait_until(lambda: parts.index.count() == len(ids), 240, interval=1, what="all rows indexed")
