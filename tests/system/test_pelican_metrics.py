"""pelican puts the age of the oldest unshipped change to CloudWatch, so an
alarm fires when changes stop leaving the table: moto's CloudWatch on the local stack,
a real pelican process, and a queue that refuses every batch to hold a change back."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from devstack.waiting import wait_until

pytestmark = pytest.mark.stack

METRIC = "OldestUnshippedChangeAgeSeconds"


def cloudwatch(stack):
    return stack.aws_client("cloudwatch")


def age_statistics(cw, namespace: str, deployment: str) -> dict:
    return metric_statistics(cw, namespace, deployment, METRIC)


def metric_statistics(cw, namespace: str, deployment: str, metric: str) -> dict:
    """Minimum, Maximum and SampleCount of one metric over the last ten minutes."""
    now = datetime.now(timezone.utc)
    points = cw.get_metric_statistics(
        Namespace=namespace, MetricName=metric, Dimensions=[{"Name": "Deployment", "Value": deployment}],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1), Period=600,
        Statistics=["Minimum", "Maximum", "SampleCount"])["Datapoints"]
    if not points:
        return {"Minimum": None, "Maximum": None, "SampleCount": 0}
    return {"Minimum": min(p["Minimum"] for p in points), "Maximum": max(p["Maximum"] for p in points),
            "SampleCount": sum(p["SampleCount"] for p in points)}


def test_pelican_publishes_the_age_of_the_oldest_unshipped_change(stack, parts):
    cw = cloudwatch(stack)
    namespace, deployment = f"ProductSearchTest{uuid.uuid4().hex[:8]}", "test-deployment"
    metrics_env = {"CLOUDWATCH_NAMESPACE": namespace, "DEPLOYMENT_NAME": deployment}
    scaled = {"metric_interval_seconds": 1, "poll_interval_seconds": 0.5}
    parts.insert("Held Back", "a change the queue will not take")

    # A queue that does not exist refuses every batch: the change stays, and ages.
    stuck = stack.start_app("pelican", {**metrics_env, "SQS_QUEUE_URL": stack.queue_url("no-such-queue.fifo")},
                            options=scaled)
    held = wait_until(lambda: (s := age_statistics(cw, namespace, deployment))["Maximum"] and s["Maximum"] >= 3 and s,
                      60, interval=0.5, what="an age of 3 s or more for the held-back change")
    assert held["SampleCount"] >= 2, "put on every interval, not once"
    assert stuck.poll() is None
    listed = cw.list_metrics(Namespace=namespace)["Metrics"]
    # No ChangesWaiting without the queue's depth; what holds vacuum back goes out too.
    assert sorted((m["MetricName"], str(m["Dimensions"])) for m in listed) == sorted(
        (name, str([{"Name": "Deployment", "Value": deployment}]))
        for name in (METRIC, "OldestTransactionAgeSeconds", "OutboxDeadTuples"))
    stack.stop("pelican")
    assert parts.pending_changes() == 1

    # Shipping again empties the change log, and the age goes back to 0.
    stack.start_app("pelican", metrics_env, options=scaled)
    wait_until(lambda: parts.pending_changes() == 0, 60, what="the held-back change shipped")
    wait_until(lambda: age_statistics(cw, namespace, deployment)["Minimum"] == 0, 30, interval=0.5,
               what="an age of 0 once nothing waits")


def test_without_a_namespace_pelican_puts_no_metric(stack, parts):
    cw = cloudwatch(stack)
    before = {m["Namespace"] for m in cw.list_metrics()["Metrics"]}
    stack.start_app("pelican", options={"poll_interval_seconds": 0.5, "metric_interval_seconds": 1})
    parts.insert("Plain", "no metrics configured")
    wait_until(lambda: parts.pending_changes() == 0, 60, what="the change shipped")
    assert {m["Namespace"] for m in cw.list_metrics()["Metrics"]} == before


def test_changes_waiting_counts_the_change_log_and_the_queue(stack, parts):
    """ChangesWaiting, for scaling emu on: the change log's rows plus the queue's messages
    times the changes per message. Backpressure holds most of the backlog in the
    change log, so both parts count; no emu runs, so only the test's drain empties them."""
    cw = cloudwatch(stack)
    namespace, deployment = f"ProductSearchTest{uuid.uuid4().hex[:8]}", "test-waiting"
    parts.insert_many(50, prefix="waiting")
    stack.start_app("pelican", {"CLOUDWATCH_NAMESPACE": namespace, "DEPLOYMENT_NAME": deployment}, options={
        "metric_interval_seconds": 1, "poll_interval_seconds": 0.2, "queue_check_interval_seconds": 0.2,
        "max_queued_messages": 4, "changes_per_message": 5, "claim_batch_size": 10})
    queue = parts.env["SQS_QUEUE_URL"]
    wait_until(lambda: 0 < parts.pending_changes() < 50, 30, interval=0.2, what="part of the backlog shipped")
    waiting = wait_until(lambda: (s := metric_statistics(cw, namespace, deployment, "ChangesWaiting"))["SampleCount"] >= 3 and s,
                         30, interval=0.5, what="ChangesWaiting put three times")
    # 50 changes in all, wherever they wait: 5 a message, on the queue or not yet claimed.
    assert waiting["Minimum"] == waiting["Maximum"] == 50
    assert parts.pending_changes() > 0  # some were held in the change log meanwhile
    listed = cw.list_metrics(Namespace=namespace)["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == sorted(["ChangesWaiting", METRIC, "OldestTransactionAgeSeconds",
                                                              "OutboxDeadTuples"])

    # Taking the messages off the queue (what emu does) lets pelican ship the rest; then none waits.
    wait_until(lambda: parts.drain_queue(queue, idle_rounds=1) is not None and parts.pending_changes() == 0, 60,
               interval=0.2, what="the change log drained")
    parts.drain_queue(queue, idle_rounds=1)
    wait_until(lambda: metric_statistics(cw, namespace, deployment, "ChangesWaiting")["Minimum"] == 0, 30, interval=0.5,
               what="ChangesWaiting back to 0")
