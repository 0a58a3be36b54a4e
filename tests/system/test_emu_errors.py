"""No exception from a dependency ends emu's worker: each call emu makes to SQS, SNS,
the index and the model fails on cue with each kind of error those clients raise
(network trouble, a refusal, a throttle, an arbitrary bug), and emu logs it, backs off
or hands the message back, and goes on until every change is indexed, every dead
letter sent, and reconcile is clean. And when emu's own model process is killed, emu
starts a new one.

In the first test emu runs in this process (its worker threads, the real model)
against the real local moto and index server; its SQS and SNS clients, index handle
and embedder are wrapped to raise the next queued error instead of making the call.
In the second, emu runs as `make up` runs it."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest
import urllib3
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from pinecone.exceptions import PineconeApiException, PineconeProtocolError, RateLimitException, ServiceException

from devstack.waiting import wait_until
from emu.config import EmuSettings
from emu.worker import Emu
from pelican.outbox import ship_batch
from productsearch.index import ProductIndex
from productsearch.settings import EmbeddingSettings, IndexSettings, QueueSettings
from tests.system.test_reliability import CLEAN, FAST, converge, reconcile_line

pytestmark = pytest.mark.stack


def refused(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} (injected)"}}, operation)


# The errors each call emu makes raises, in the order they are raised: the next call
# of that name raises the next one, later calls go through. Four of them hand a
# product's message back to the queue (a failed delete, a write failing for a reason
# that is not an outage, a model run): even if all four hit one message it is
# received five times, which the queue's redrive policy (maxReceiveCount 5, as on AWS)
# allows. The rest cost no receive: an index outage is held through, a failed lookup
# embeds the batch whole, a failed visibility change leaves the message hidden for its
# visibility timeout.
FAILURES: dict[str, dict[str, list[BaseException]]] = {
    "sqs": {
        "receive_message": [EndpointConnectionError(endpoint_url="http://sqs"), refused("RequestThrottled", "ReceiveMessage"),
                            ReadTimeoutError(endpoint_url="http://sqs"), ConnectionClosedError(endpoint_url="http://sqs"),
                            RuntimeError("a bug in the client")],
        "delete_message_batch": [refused("InternalError", "DeleteMessageBatch")],
        "change_message_visibility": [EndpointConnectionError(endpoint_url="http://sqs"),
                                      refused("ReceiptHandleIsInvalid", "ChangeMessageVisibility")],
        "send_message": [refused("AWS.SimpleQueueService.NonExistentQueue", "SendMessage")],  # the dead-letter queue
    },
    "sns": {
        "publish": [refused("AuthorizationError", "Publish"), EndpointConnectionError(endpoint_url="http://sns")],
    },
    "index": {
        "lookup": [ServiceException("Internal server error", 500), urllib3.exceptions.ProtocolError("Connection aborted."),
                   RuntimeError("a bug in the lookup"), KeyError("vectors"), ValueError("unexpected shape")],
        "write_versioned": [PineconeApiException("Service Unavailable", 503), RateLimitException(),
                            ConnectionResetError(104, "Connection reset by peer"), PineconeProtocolError("bad response"),
                            RuntimeError("a bug in the write"), KeyError("written")],
    },
    "embedder": {
        "embed": [RuntimeError("CUDA error: out of memory")],
    },
}


class Failing:
    """`inner`, except that a call to a method named in `failures` raises the next
    error queued for it (and records it in `raised`) while any are left."""

    def __init__(self, inner, failures: dict[str, list[BaseException]], raised: Counter):
        self._inner, self._failures, self._raised = inner, {k: list(v) for k, v in failures.items()}, raised
        self._lock = threading.Lock()

    def left(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._failures.values())

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if name not in self._failures:
            return attr

        def call(*args, **kwargs):
            with self._lock:
                exc = self._failures[name].pop(0) if self._failures[name] else None
            if exc is not None:
                self._raised[name] += 1
                raise exc
            return attr(*args, **kwargs)
        return call


def dead_letters(parts) -> int:
    attributes = parts.sqs.get_queue_attributes(QueueUrl=parts.env["SQS_DLQ_URL"],
                                                AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


@pytest.mark.slow
def test_every_kind_of_dependency_failure_is_survived(parts, embedder, caplog):
    caplog.set_level(logging.INFO, logger="emu")
    env = {**parts.env, "EMU_VISIBILITY_TIMEOUT_SECONDS": "10"}  # a failed hand-back costs 10 s, not 300
    raised: Counter = Counter()
    sqs = Failing(parts.sqs, FAILURES["sqs"], raised)
    sns = Failing(parts.sns, FAILURES["sns"], raised)
    index = Failing(ProductIndex(IndexSettings.from_env(env), attempts=1), FAILURES["index"], raised)
    model = Failing(embedder, FAILURES["embedder"], raised)
    stopping = threading.Event()
    settings = EmuSettings.from_env(env, batch_window_seconds=0.05, retry_base_seconds=0, outage_retry_max_seconds=2)
    emu = Emu(QueueSettings.from_env(env), EmbeddingSettings.from_env(env), settings, index, model, sqs, sns,
              stopping=stopping)
    thread = threading.Thread(target=emu.run, name="emu-under-test", daemon=True)
    thread.start()
    wanted = sum(len(calls) for failures in FAILURES.values() for calls in failures.values())
    ids: list[int] = []
    try:
        # Three jobs no emu can read: each is dead-lettered, through a failing DLQ send and SNS.
        for n in range(3):
            parts.sqs.send_message(QueueUrl=parts.env["SQS_QUEUE_URL"], MessageBody=f"not a job {n}",
                                   MessageGroupId=f"bad-{n}", MessageDeduplicationId=f"bad-{n}")

        def one_more_change() -> bool:
            # A change at a time, so that each failing call is reached while work is in hand.
            if sum(raised.values()) >= wanted:
                return True
            ids.append(parts.insert(f"Sturdy {len(ids)}", f"indexed between failures, number {len(ids)}"))
            while ship_batch(parts.conn, parts.sqs, parts.env["SQS_QUEUE_URL"], claim_limit=100,
                             changes_per_message=10).changes_claimed:
                pass
            return False

        wait_until(one_more_change, 240, interval=1.0, what=f"every failure raised (raised so far: {dict(raised)})")
        assert thread.is_alive(), "emu's worker ended"
        wait_until(lambda: all(parts.vector(i) for i in ids), 120, interval=1.0, what="every change indexed")
        wait_until(lambda: dead_letters(parts) >= 3, 60, interval=0.5, what="three dead letters")
        letters = parts.drain_queue(parts.env["SQS_DLQ_URL"], idle_rounds=1)
        # One each, even if a failed delete made emu read one of them again.
        assert sorted(letter["raw_body"] for letter in letters) == [f"not a job {n}" for n in range(3)]
        assert thread.is_alive(), "emu's worker ended"
    finally:
        stopping.set()
        thread.join(60)
    assert not thread.is_alive(), "emu did not stop when asked"
    assert sqs.left() == sns.left() == index.left() == model.left() == 0
    said = {r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING}
    assert {"cannot receive from the queue", "could not delete finished messages; they will come back and be redone",
            "could not change message visibility", "could not dead-letter; the message will be retried",
            "could not publish dead-letter notification", "could not read the index before embedding; embedding every record",
            "index unavailable; pausing receiving and holding the batch", "index write failed",
            "embedding failed; the batch's messages will be retried"} <= said, said
    assert "emu stopped" in {r.getMessage() for r in caplog.records}
    assert reconcile_line(parts.stack) == CLEAN


def model_process(emu_pid: int) -> int:
    """The pid of emu's model process: its child that multiprocessing's spawn started
    (the other child, multiprocessing's resource tracker, is not)."""
    for task in Path(f"/proc/{emu_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise AssertionError(f"emu (pid {emu_pid}) has no model process")


def test_emu_starts_a_new_model_process_when_its_own_dies(parts, stack):
    stack.start_app("pelican", options=FAST)
    emu = stack.start_app("emu", options={"retry_base_seconds": 1})
    first = parts.insert("Before The Kill", "embedded by the first model process")
    wait_until(lambda: parts.vector(first), 180, interval=0.5, what="a row indexed by the first model process")
    killed = model_process(emu.pid)
    os.kill(killed, signal.SIGKILL)  # as the kernel's OOM killer would
    second = parts.insert("After The Kill", "embedded by the model process started in its place")
    wait_until(lambda: parts.vector(second), 180, interval=0.5, what="a row indexed after the model process died")
    assert emu.poll() is None, stack.log_path("emu").read_text()[-3000:]
    assert model_process(emu.pid) != killed
    said = [json.loads(line).get("msg") for line in stack.log_path("emu").read_text().splitlines()
            if line.startswith("{")]
    assert "the embedding process is gone; starting a new one" in said and "embedding process started again" in said
    converge(parts, stack)
