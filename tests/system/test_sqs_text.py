"""Text that real SQS refuses (AWS docs: SendMessage, MessageBody allows only #x9 | #xA |
#xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF): the local SQS refuses it as
AWS does, and a row holding such text still reaches the index."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from devstack.waiting import wait_until
from productsearch import jobs

pytestmark = pytest.mark.stack

FAST = {"poll_interval_seconds": 1}  # options of `pelican run`
# Valid Postgres text (which refuses only NUL) that SQS refuses raw or JSON must escape.
ODD_TEXT = ("Odd \uffff and \ufffe, controls \x01\x08\x0b\x0c\x1b\x1f\x7f, tab\tCR\rLF\n, "
            "\ufdd0 \u2028 \u202e rtl, astral \U0001f600 \U0010ffff, edges \ud7ff\ue000\ufffd, "
            'quote " backslash \\ and \\uffff as plain text')


@pytest.fixture
def queue(parts):
    url = parts.sqs.create_queue(QueueName=f"sqs-text-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    yield url
    parts.sqs.delete_queue(QueueUrl=url)


def received(parts, url: str) -> list[str]:
    got = parts.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return sorted(m["Body"] for m in got)


@pytest.mark.parametrize("raw", ["a\uffffb", "a\ufffeb", "a\x00b", "a\x1bb", "a\ud800b"],
                         ids=["U+FFFF", "U+FFFE", "NUL", "ESC", "lone surrogate"])
def test_local_sqs_refuses_send_message_with_a_character_aws_refuses(parts, queue, raw):
    with pytest.raises(ClientError) as refused:
        parts.sqs.send_message(QueueUrl=queue, MessageBody=raw)
    assert refused.value.response["Error"]["Code"] == "InvalidMessageContents"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert received(parts, queue) == []

    escaped = jobs.sqs_body({"text": raw})
    parts.sqs.send_message(QueueUrl=queue, MessageBody=escaped)
    (body,) = received(parts, queue)
    assert body == escaped and json.loads(body) == {"text": raw}


def test_local_sqs_fails_only_the_offending_entries_of_a_batch(parts, queue):
    escaped = jobs.sqs_body({"text": "a\uffffb"})
    response = parts.sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": "raw", "MessageBody": "a\uffffb"},
        {"Id": "escaped", "MessageBody": escaped},
        {"Id": "plain", "MessageBody": "plain"},
    ])
    assert sorted(s["Id"] for s in response["Successful"]) == ["escaped", "plain"]
    (failed,) = response["Failed"]
    assert failed["Id"] == "raw" and failed["Code"] == "InvalidMessageContents" and failed["SenderFault"] is True
    assert received(parts, queue) == sorted([escaped, "plain"])

    response = parts.sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "raw", "MessageBody": "\ufffe"}])
    assert response["Successful"] == [] and [f["Code"] for f in response["Failed"]] == ["InvalidMessageContents"]


def test_local_sqs_refuses_a_body_over_the_queues_256_kib(parts, queue):
    # 87,382 characters of three UTF-8 bytes each: under moto's own count, over SQS's.
    too_big = "\u20ac" * (jobs.MAX_SQS_MESSAGE_BYTES // 3 + 1)
    with pytest.raises(ClientError) as refused:
        parts.sqs.send_message(QueueUrl=queue, MessageBody=too_big)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    parts.sqs.send_message(QueueUrl=queue, MessageBody="x" * jobs.MAX_SQS_MESSAGE_BYTES)
    assert len(received(parts, queue)) == 1


def test_row_with_text_sqs_refuses_raw_is_indexed_exactly(parts, stack):
    pid = parts.insert(f"Name {ODD_TEXT[:40]}", ODD_TEXT, sku=f"ODD-{uuid.uuid4().hex[:8]}")
    row = parts.conn.execute("SELECT name, description FROM products WHERE id = %s", (pid,)).fetchone()
    assert row["description"] == ODD_TEXT  # Postgres kept every character
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")

    wait_until(lambda: parts.vector(pid), 120, what="row with odd text indexed")
    assert parts.holds_description(pid, row["description"], name=row["name"])
    wait_until(lambda: parts.pending_changes() == 0, 30, what="outbox drained")
    assert parts.drain_queue(parts.env["SQS_DLQ_URL"], idle_rounds=1) == []
    log = stack.log_path("pelican").read_text()
    assert "shipped changes" in log
    assert "SQS refused" not in log and "queue unavailable" not in log, log[-2000:]
