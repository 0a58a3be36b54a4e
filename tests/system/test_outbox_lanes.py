"""pelican's sends in lanes, against the local SQS: several SendMessageBatch requests
overlap, each message group keeps to one lane, so a group's messages arrive in the
order they were packed; a failed lane fails the whole send."""

from __future__ import annotations

import json

import pytest

from pelican.outbox import SendRefused, send_in_lanes
from productsearch import jobs


def test_each_groups_messages_arrive_in_order_across_lanes(parts):
    queue = parts.env["SQS_QUEUE_URL"]
    # 6 groups of 25 messages: more than one request per group, groups spread over lanes.
    messages = [(f"products-{g}", jobs.sqs_body({"group": g, "n": n})) for n in range(25) for g in range(6)]
    send_in_lanes(parts.sqs, queue, messages, lanes=4)
    received = parts.drain_queue(queue)
    assert len(received) == len(messages)
    for g in range(6):
        assert [m["n"] for m in received if m["group"] == g] == list(range(25))


def test_a_refused_message_in_one_lane_fails_the_send(parts):
    queue = parts.env["SQS_QUEUE_URL"]
    messages = [(f"products-{g}", jobs.sqs_body({"group": g})) for g in range(8)]
    # A body SQS refuses (a character outside its set), written raw as a broken producer would.
    messages.append(("products-99", json.dumps({"bad": "\ufffe"}, ensure_ascii=False)))
    with pytest.raises(SendRefused):
        send_in_lanes(parts.sqs, queue, messages, lanes=4)
