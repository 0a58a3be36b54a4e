"""pelican at any change-log length: with millions of changes waiting
and a statement timeout scaled down to what a whole-table scan of them takes, pelican
still ships, puts its metrics and never loops on reconnecting; the frontend's status
figures cost the same as with a handful of rows. Real Postgres, moto, a real pelican."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from devstack.waiting import wait_until
from productsearch import change_log, db
from tests.system.test_pelican_metrics import cloudwatch, metric_statistics

pytestmark = pytest.mark.stack

BACKLOG = 4_000_000
# Scaled down with the backlog: a whole-table scan of it (what the age metric ran
# before) takes longer than this, while an indexed read takes milliseconds.
STATEMENT_TIMEOUT_S = 0.1
SCAN_SQL = "SELECT min(captured_at) FROM product_changes"


def fill_change_log(database_url: str, n: int) -> None:
    """n change rows for products that do not exist (each ships as a deletion). On a
    connection without the statement timeout, as migrations run: this is the test's
    setup, and writing millions of rows on a busy machine may outlast the timeout."""
    with db.connect(database_url, autocommit=True, statement_timeout=False) as conn:
        conn.execute("INSERT INTO product_changes (product_id, operation, version) "
                     "SELECT g, 'backfill', g FROM generate_series(1, %s) g", (n,))
        conn.execute("ANALYZE product_changes")


def head_id(conn) -> int:
    return conn.execute("SELECT id FROM product_changes ORDER BY id LIMIT 1").fetchone()["id"]


def test_pelican_ships_from_a_change_log_of_millions(stack, parts):
    fill_change_log(parts.env["DATABASE_URL"], BACKLOG)
    # The premise: the old whole-table read does not fit in the timeout.
    with parts.conn.transaction():
        parts.conn.execute(f"SET LOCAL statement_timeout = '{int(STATEMENT_TIMEOUT_S * 1000)}ms'")
        started = time.monotonic()
        with pytest.raises(Exception, match="statement timeout"):
            parts.conn.execute(SCAN_SQL)
    assert time.monotonic() - started < 5

    # What pelican and the frontend read now is cheap at this length.
    started = time.monotonic()
    counted = change_log.count_changes(parts.conn)
    age_s = change_log.oldest_change_age(parts.conn)
    assert time.monotonic() - started < STATEMENT_TIMEOUT_S
    assert not counted.exact and counted.n > change_log.COUNT_CAP and age_s >= 0

    cw = cloudwatch(stack)
    namespace, deployment = f"ProductSearchScale{uuid.uuid4().hex[:8]}", "scale-test"
    pelican = stack.start_app("pelican", {
        "CLOUDWATCH_NAMESPACE": namespace, "DEPLOYMENT_NAME": deployment,
    }, options={"metric_interval_seconds": 1, "database.statement_timeout_seconds": STATEMENT_TIMEOUT_S})
    # Shipping starts and goes on: the head of the change log moves on past several batches.
    wait_until(lambda: head_id(parts.conn) > 5_000, 40, interval=0.5, what="pelican shipping from the backlog")
    queued = parts.sqs.get_queue_attributes(QueueUrl=parts.env["SQS_QUEUE_URL"],
                                            AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert int(queued["ApproximateNumberOfMessages"]) > 0
    waiting = wait_until(lambda: (s := metric_statistics(cw, namespace, deployment, "ChangesWaiting"))["SampleCount"] >= 2 and s,
                         30, interval=0.5, what="ChangesWaiting put on two intervals")
    # The statistics' estimate of millions, plus what is on the queue.
    assert waiting["Maximum"] > BACKLOG / 2
    assert metric_statistics(cw, namespace, deployment, "OldestUnshippedChangeAgeSeconds")["SampleCount"] >= 2
    assert pelican.poll() is None
    stack.stop("pelican")

    lines = [json.loads(line) for line in stack.log_path("pelican").read_text().splitlines() if line.startswith("{")]
    trouble = [line for line in lines if line.get("level") in ("warning", "error")]
    assert not trouble, trouble[:5]
