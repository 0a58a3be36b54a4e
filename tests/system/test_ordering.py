"""An older state never lands after a newer one, whichever emu holds what.

Two emus could each read the index's version of a product, then write: the older
state could land last. The jobs queue is FIFO with a message group per product
partition, so a product's next job is not handed to anyone while an earlier one is
in flight. The test forces the dangerous interleaving instead of hoping for it: emu
A's write of version 1 is held by the index server while version 2 is queued and
emu B is idle and polling."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from devstack.waiting import wait_until
from tests import kit

pytestmark = pytest.mark.stack

FAST = {"poll_interval_seconds": 1}  # options of `pelican run`


def index_faults(stack) -> list:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.index_port}/_faults", timeout=5) as response:
        return json.load(response)["faults"]


def queue_counts(parts) -> tuple[int, int]:
    attrs = parts.sqs.get_queue_attributes(
        QueueUrl=parts.env["SQS_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])




def test_a_newer_state_waits_for_the_older_one_in_flight(parts, stack):
    stack.start_app("pelican", options=FAST)
    # emu A takes one message at a time, so only emu B can take the second job; its
    # request deadline outlasts the hold, so no retry of its own overtakes it.
    stack.start_app("emu", options={"max_changes_in_flight": 1, "index_timeout_seconds": 120}, instance="emu-a")
    warm = parts.insert("Warm Up", "makes sure emu A is running")
    wait_until(lambda: parts.vector(warm), 120, what="emu A running")

    kit.inject_index_fault(stack, status=None, delay_seconds=120, count=1, paths=["/vectors/upsert"])
    pid = parts.insert("Kettle", "version one of the kettle")
    wait_until(lambda: index_faults(stack) == [], 60, interval=0.2, what="emu A's write of version 1 held")
    parts.conn.execute("UPDATE products SET description = 'version two of the kettle' WHERE id = %s", (pid,))
    wait_until(lambda: parts.pending_changes() == 0 and queue_counts(parts) == (1, 1), 30,
               what="version 2 queued behind version 1")

    stack.start_app("emu", instance="emu-b")
    wait_until(lambda: "emu started" in stack.log_path("emu-b").read_text(), 120, what="emu B running")
    time.sleep(7)  # more than one long poll of emu B's
    assert parts.vector(pid) is None, "version 2 was written while version 1 was still in flight"
    assert queue_counts(parts) == (1, 1), "a second emu took the product's next job while the first was in flight"

    kit.clear_index_faults(stack)  # version 1 lands now, then version 2 may go
    wait_until(lambda: parts.holds_description(pid, "version two of the kettle"), 60, what="version 2 indexed")
    time.sleep(3)
    assert parts.holds_description(pid, "version two of the kettle")
