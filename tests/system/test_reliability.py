"""Fault injection against the real local stack: whatever breaks, the index
converges to the table, and reconcile then reports no drift."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from devstack.waiting import wait_until
from tests import kit

pytestmark = pytest.mark.stack

FAST = {"poll_interval_seconds": 1}  # options of `pelican run`
CLEAN = "missing=0 stale=0 orphaned=0"


def pelican_cli(stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pelican", *args], env=stack.app_env(), capture_output=True, text=True, timeout=timeout)


def reconcile_line(stack, *args: str) -> str:
    done = pelican_cli(stack, "reconcile", *args)
    lines = [l for l in done.stdout.splitlines() if l.startswith("missing=")]
    assert lines, done.stdout + done.stderr
    return lines[-1]


def converge(parts, stack, timeout: float = 180) -> None:
    """Waits until the change log and queue are drained and reconcile is clean."""
    def clean() -> bool:
        if parts.pending_changes():
            return False
        return reconcile_line(stack) == CLEAN
    wait_until(clean, timeout, interval=2, what="index converged to the table")


def without_capture(parts, sql: str, params=()) -> None:
    """A write the triggers do not see: how drift gets in (restores, manual fixes)."""
    with parts.conn.transaction():
        parts.conn.execute("SET LOCAL session_replication_role = replica")
        parts.conn.execute(sql, params)


def test_reconcile_reports_and_repairs_drift(parts, stack):
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")
    ids = parts.insert_many(30, prefix="rec")
    converge(parts, stack)

    without_capture(parts, "INSERT INTO products (name, sku, description, price) VALUES ('Ghost', 'G-1', 'never captured', 5), ('Ghost', 'G-2', 'also not', 6)")
    without_capture(parts, "UPDATE products SET description = 'changed behind the pipeline' WHERE id = %s", (ids[0],))
    without_capture(parts, "DELETE FROM products WHERE id = %s", (ids[1],))

    assert reconcile_line(stack) == "missing=2 stale=1 orphaned=1"
    assert pelican_cli(stack, "reconcile").returncode == 1
    assert reconcile_line(stack, "--repair").startswith("missing=2 stale=1 orphaned=1 repaired=4")
    converge(parts, stack)
    assert parts.vector(ids[1]) is None
    assert parts.holds_description(ids[0], "changed behind the pipeline")


@pytest.mark.slow
def test_pelican_killed_mid_backfill_resumes_and_loses_nothing(parts, stack):
    without_capture(parts, """INSERT INTO products (name, sku, description, price)
                              SELECT 'bf ' || g, 'bf-' || g, 'backfilled row ' || g, 10 FROM generate_series(1, 3000) g""")
    proc = subprocess.Popen([sys.executable, "-m", "pelican", "backfill", "--chunk-size", "50"], env=stack.app_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: (r := parts.conn.execute("SELECT last_id FROM backfill_progress").fetchone()) and r["last_id"] > 0,
               60, interval=0.02, what="backfill under way")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = parts.conn.execute("SELECT last_id FROM backfill_progress").fetchone()["last_id"]
    assert 0 < done_at_kill < 3000 and parts.pending_changes() < 3000
    resumed = pelican_cli(stack, "backfill")
    assert resumed.returncode == 0, resumed.stderr
    assert f"captured {3000 - done_at_kill} products" in resumed.stdout
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu", {"EMBEDDING_BATCH_SIZE": "128"})
    converge(parts, stack, timeout=300)


def test_pelican_killed_mid_stream_then_restarted(parts, stack):
    stack.start_app("emu")
    stack.start_app("pelican", options={**FAST, "claim_batch_size": 20})
    for round_ in range(10):
        parts.insert_many(50, prefix=f"stream{round_}")
    time.sleep(0.3)
    stack.stop("pelican", signal.SIGKILL)
    assert parts.pending_changes() > 0, "pelican drained everything before the kill; the test proves nothing"
    stack.start_app("pelican", options=FAST)
    converge(parts, stack, timeout=240)


def test_two_emus_racing_and_rapid_edits_end_with_the_last_text(parts, stack):
    ids = parts.insert_many(20, prefix="race")
    stack.start_app("pelican", options={**FAST, "claim_batch_size": 5, "changes_per_message": 2})
    stack.start_app("emu", {"EMBEDDING_BATCH_SIZE": "4"}, instance="emu-a")
    stack.start_app("emu", {"EMBEDDING_BATCH_SIZE": "4"}, instance="emu-b")
    target = ids[0]
    started = time.monotonic()
    for i in range(100):
        parts.conn.execute("UPDATE products SET description = %s WHERE id = %s", (f"edit number {i}", target))
        for other in ids[1:4]:
            parts.conn.execute("UPDATE products SET price = %s WHERE id = %s", (100 + i, other))
    assert time.monotonic() - started < 5
    wait_until(lambda: parts.holds_description(target, "edit number 99"), 120,
               what="last of 100 edits indexed")
    converge(parts, stack)
    time.sleep(3)  # any straggling older message must not overwrite it
    assert parts.holds_description(target, "edit number 99")
    assert all(parts.vector(o).metadata["price"] == 199 for o in ids[1:4])


def test_postgres_restart_while_pelican_listens(parts, stack):
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")
    first = parts.insert("Before Restart", "row written before the database restarted")
    wait_until(lambda: parts.vector(first), 60, what="first row indexed")
    parts.conn.close()
    kit.restart_postgres(stack, down_seconds=2)
    from productsearch import db

    parts.conn = db.connect(stack.database_url, autocommit=True, attempts=20)
    second = parts.insert("After Restart", "row written after the database came back")
    wait_until(lambda: parts.vector(second), 90, what="row written after the restart indexed")
    assert "database connection lost" in stack.log_path("pelican").read_text()
    converge(parts, stack)


def test_queue_endpoint_down_for_a_while(parts, stack):
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")
    stack.stop("aws")
    ids = parts.insert_many(40, prefix="sqsdown")
    time.sleep(4)
    assert parts.pending_changes() >= 40, "changes must stay in the database while the queue is down"
    stack.start_aws()  # moto keeps nothing across a restart; start_aws recreates the queues
    wait_until(lambda: all(parts.vector(i) for i in ids), 180, interval=1, what="rows indexed after the queue returned")
    converge(parts, stack)


def test_index_429_and_500_for_a_stretch(parts, stack):
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu", options={"max_index_attempts": 10})
    kit.inject_index_fault(stack, status=429, count=12, paths=["/vectors/upsert"], retry_after_seconds=0)
    kit.inject_index_fault(stack, status=500, count=12, paths=["/vectors/fetch"])
    ids = parts.insert_many(60, prefix="flaky")
    wait_until(lambda: all(parts.vector(i) for i in ids), 180, interval=1, what="rows indexed through 429s and 500s")
    kit.clear_index_faults(stack)
    converge(parts, stack)


def test_slow_index_times_out_and_recovers(parts, stack):
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu", options={"max_index_attempts": 10})
    kit.inject_index_fault(stack, status=None, delay_seconds=12, count=3, paths=["/vectors/upsert"])
    ids = parts.insert_many(10, prefix="slow")
    wait_until(lambda: all(parts.vector(i) for i in ids), 240, interval=1, what="rows indexed after timeouts")
    kit.clear_index_faults(stack)
    converge(parts, stack)


def test_rejected_rows_go_to_the_dlq_and_redrive_replays_them(parts, stack):
    topic_watch = parts.sqs.create_queue(QueueName="redrive-watch")["QueueUrl"]
    arn = parts.sqs.get_queue_attributes(QueueUrl=topic_watch, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    parts.sns.subscribe(TopicArn=parts.env["SNS_TOPIC_ARN"], Protocol="sqs", Endpoint=arn)
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")
    # The index refuses every write for a while (e.g. a misconfigured index): a permanent 400.
    kit.inject_index_fault(stack, status=400, count=1000, paths=["/vectors/upsert"])
    ids = parts.insert_many(5, prefix="refused")
    def dead_letters() -> int:
        attrs = parts.sqs.get_queue_attributes(QueueUrl=parts.env["SQS_DLQ_URL"], AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    try:
        wait_until(lambda: dead_letters() >= 5, 240, what="refused rows dead-lettered")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nemu log tail:\n{stack.log_path('emu').read_text()[-4000:]}") from None
    assert dead_letters() == 5
    assert parts.drain_queue(topic_watch, idle_rounds=1), "no SNS notification published"
    kit.clear_index_faults(stack)
    assert all(parts.vector(i) is None for i in ids)
    done = pelican_cli(stack, "redrive")
    assert done.returncode == 0 and "re-captured 5 products" in done.stdout, done.stdout + done.stderr
    wait_until(lambda: all(parts.vector(i) for i in ids), 120, what="redriven rows indexed")
    converge(parts, stack)


def test_secrets_never_reach_the_logs(parts, stack):
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")
    pid = parts.insert("Log Check", "a row to make every service log something")
    wait_until(lambda: parts.vector(pid), 60, what="row indexed")
    secrets = [parts.env["PINECONE_API_KEY"], "products-local"]  # the index key and the database password
    for log in (stack.root / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{log.name} contains a secret"
