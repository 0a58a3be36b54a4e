"""Backpressure instead of expiry, so no change ages out of SQS: pelican ships no more while the jobs
queue holds --max-queued-messages, so a backlog many times what the queue may
hold waits in the change log, and drains, every change indexed, once emu runs. Scaled
down: a limit of 4 messages of 5 changes, a backlog of 40 messages' worth, the queue's
retention at SQS's minimum of 60 s.

moto honours the retention in its own way (moto/sqs/models.py, receive_message): a
message older than MessageRetentionPeriod is never delivered, although it still
counts in the queue's depth. So a change that waited on the queue longer than the
retention would never be indexed, and this test would time out waiting for it."""

from __future__ import annotations

import json
import threading
import time

import pytest

from devstack.waiting import wait_until

pytestmark = pytest.mark.stack

LIMIT = 4
PER_MESSAGE = 5
CLAIM = 10  # at most 2 messages a batch (consecutive ids share a message group)
BACKLOG = LIMIT * PER_MESSAGE * 10
PAUSED = "the jobs queue is full; changes wait in the change log until emu catches up"
RESUMED = "the jobs queue has room again; shipping"


@pytest.fixture
def short_retention(stack, parts):
    stack.job_retention_seconds = 60  # AWS docs (SQS quotas): the least retention
    parts.reset()
    yield
    stack.job_retention_seconds = None  # the next test's reset recreates the queues as usual


class DepthSampler:
    """Reads the jobs queue's depth (waiting plus in flight) every few tenths of a second."""

    def __init__(self, parts):
        self.parts, self.samples, self.done = parts, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.wait(0.2):
            attrs = self.parts.sqs.get_queue_attributes(
                QueueUrl=self.parts.env["SQS_QUEUE_URL"],
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            self.samples.append(int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]))

    def stop(self) -> list[int]:
        self.done.set()
        self.thread.join(5)
        return self.samples


def pelican_messages(stack) -> list[str]:
    return [json.loads(line)["msg"] for line in stack.log_path("pelican").read_text().splitlines() if line.startswith("{")]


def test_a_backlog_larger_than_the_queue_waits_in_the_change_log_and_is_all_indexed(stack, parts, short_retention):
    ids = parts.insert_many(BACKLOG, prefix="bp")
    sampler = DepthSampler(parts)
    try:
        stack.start_app("pelican", options={
            "max_queued_messages": LIMIT, "changes_per_message": PER_MESSAGE, "claim_batch_size": CLAIM,
            "queue_check_interval_seconds": 0.2, "poll_interval_seconds": 0.2})
        # No emu yet: pelican fills the queue to the limit, then pauses, saying so once.
        wait_until(lambda: PAUSED in pelican_messages(stack), 30, interval=0.2, what="pelican pausing")
        time.sleep(3)  # some fifteen reads of the depth while paused
        assert pelican_messages(stack).count(PAUSED) == 1
        assert parts.pending_changes() >= BACKLOG - (LIMIT + 1) * PER_MESSAGE
        stack.start_app("emu")
        wait_until(lambda: parts.pending_changes() == 0, 120, interval=0.5, what="the change log drained")
        wait_until(lambda: sampler.samples and sampler.samples[-1] == 0, 60, interval=0.5, what="the queue drained")
    finally:
        samples = sampler.stop()
    indexed = set()
    for start in range(0, len(ids), 100):
        indexed |= set(parts.index.fetch([str(pid) for pid in ids[start:start + 100]]))
    missing = [pid for pid in ids if str(pid) not in indexed]
    assert not missing, f"{len(missing)} changes never indexed, e.g. {missing[:5]}"
    # Never more than the limit plus one batch's messages (the batch that crossed it).
    assert max(samples) <= LIMIT + CLAIM // PER_MESSAGE, samples
    assert max(samples) >= LIMIT - 1, samples  # the queue was kept full, not trickled
    said = pelican_messages(stack)
    assert RESUMED in said and said.count(RESUMED) <= said.count(PAUSED)
