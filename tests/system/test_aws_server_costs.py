"""System tests: the local SQS/SNS server's added latency and request accounting, with
``python -m devstack.aws_server`` in a subprocess driven by boto3; and the
devstack.costs helpers a benchmark calls, against it and the index server together."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from devstack import costs
from devstack.processes import free_port, http_ok, wait_for
from devstack.stack import DevStack
from tests.system.test_index_server import ServerProcess, held_call, zeroed_stats

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
LATENCY_MS = 8_000  # long enough that the control calls below finish well within it


class AwsServer:
    def __init__(self, *args: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen([sys.executable, "-m", "devstack.aws_server", "--port", self.url.rsplit(":", 1)[1],
                                      *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("aws server", lambda: http_ok(f"{self.url}/moto-api/"), timeout=60, proc=self.proc)

    def client(self, service: str):
        return boto3.client(service, region_name="us-east-1", endpoint_url=self.url,
                            aws_access_key_id="local", aws_secret_access_key="local")

    def http(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", timeout=30, **kwargs)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsServer]:
    server = AwsServer()
    yield server
    server.stop()


@pytest.fixture
def stats(aws):
    """Reads the server's counters, zeroed at the start of the test."""
    return zeroed_stats(aws)


def test_boto3_calls_are_counted_by_action_with_the_requests_sqs_bills(aws, stats):
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url = sqs.create_queue(QueueName="costs.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    # Ten 10,000-byte bodies: a 100,000-byte payload, two 64 KiB chunks.
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": f"{i:05d}" + "x" * 9_995, "MessageGroupId": "g", "MessageDeduplicationId": str(i)}
        for i in range(10)])
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(got) == 10
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
    sqs.change_message_visibility_batch(QueueUrl=url, Entries=[{**e, "VisibilityTimeout": 0} for e in entries[:3]])
    sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    for _ in range(3):
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    sns.publish(TopicArn=sns.create_topic(Name="costs")["TopicArn"], Message="dead letter")

    counted = stats()
    assert {op: row["requests"] for op, row in counted["operations"].items()} == {
        "sqs.CreateQueue": 1, "sqs.SendMessageBatch": 1, "sqs.ReceiveMessage": 2, "sqs.ChangeMessageVisibilityBatch": 1,
        "sqs.DeleteMessageBatch": 1, "sqs.GetQueueAttributes": 3, "sns.CreateTopic": 1, "sns.Publish": 1}
    ops = counted["operations"]
    assert ops["sqs.SendMessageBatch"]["payload_bytes"] == 100_000 and ops["sqs.SendMessageBatch"]["billed_requests"] == 2
    # The full receive carries the same payload; the empty one is still a billed request.
    assert ops["sqs.ReceiveMessage"]["payload_bytes"] == 100_000 and ops["sqs.ReceiveMessage"]["billed_requests"] == 2 + 1
    assert ops["sqs.GetQueueAttributes"]["billed_requests"] == 3
    assert counted["services"]["sqs"]["requests"] == 9 and counted["services"]["sqs"]["billed_requests"] == 11
    assert counted["services"]["sns"] == {**counted["services"]["sns"], "requests": 2, "billed_requests": 2}
    assert counted["totals"]["errors"] == 0
    assert all(row["request_bytes"] > 0 and row["response_bytes"] > 0 for row in ops.values())


def test_a_refused_send_counts_as_an_error(aws, stats):
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="costs-refused")["QueueUrl"]
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=url, MessageBody="a\uffffb")  # a character SQS refuses
    assert stats()["operations"]["sqs.SendMessage"] == {
        **stats()["operations"]["sqs.SendMessage"], "requests": 1, "errors": 1}


def test_latency_is_added_to_api_requests_but_not_to_the_control_paths(aws, stats):
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="costs-latency")["QueueUrl"]
    aws.http("DELETE", "/_stats")

    def control_paths_answer() -> None:
        time.sleep(0.5)  # the call is on its way; the control paths answer while it waits
        assert aws.http("GET", "/_latency").json() == {"latency_ms": LATENCY_MS}
        assert stats()["latency_ms"] == LATENCY_MS
        assert aws.http("GET", "/moto-api/").status_code == 200

    took = held_call(aws, lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]), LATENCY_MS,
                     control_paths_answer)
    assert took >= LATENCY_MS / 1000
    assert {op: row["requests"] for op, row in stats()["operations"].items()} == {"sqs.GetQueueAttributes": 1}
    refused = aws.http("PUT", "/_latency", json={"latency_ms": "fast"})
    assert refused.status_code == 400 and "latency_ms" in refused.json()["message"]


def test_the_helpers_drive_both_servers_of_a_stack(tmp_path):
    aws = AwsServer("--latency-ms", "200")
    index = ServerProcess(tmp_path / "index").start()
    try:
        env = {"AWS_ENDPOINT_URL": aws.url, "PINECONE_HOST": index.url}
        costs.reset_stats(env)
        sqs = aws.client("sqs")
        started = time.perf_counter()
        sqs.list_queues()
        assert time.perf_counter() - started >= 0.2  # --latency-ms applies from the start
        index.index().describe_index_stats()

        costs.set_latency(env, index_ms=150)
        started = time.perf_counter()
        index.index().describe_index_stats()
        assert time.perf_counter() - started >= 0.15
        assert costs.read_stats(env)["aws"]["latency_ms"] == 200  # left as it was
        costs.set_latency(env, index_ms=0, aws_ms=0)
        with pytest.raises(ValueError):
            costs.set_latency(env, aws_ms=-1)

        held = costs.reset_stats(env)
        assert held["aws"]["operations"]["sqs.ListQueues"]["requests"] == 1
        assert held["index"]["operations"]["describe_index_stats"]["requests"] == 2
        now = costs.read_stats(env)
        assert now["aws"]["totals"]["requests"] == now["index"]["totals"]["requests"] == 0
        assert (now["aws"]["latency_ms"], now["index"]["latency_ms"]) == (0, 0)
    finally:
        index.stop()
        aws.stop()


def test_a_devstack_starts_its_servers_with_its_latencies(tmp_path):
    stack = DevStack(root=tmp_path, aws_port=free_port(), index_port=free_port(), index_latency_ms=120, aws_latency_ms=80)
    try:
        stack.start_aws()
        stack.start_index()
        env = stack.env()
        assert {name: s["latency_ms"] for name, s in costs.read_stats(env).items()} == {"index": 120, "aws": 80}
        held = costs.reset_stats(env)  # start_aws created the queues: counted, and delayed
        assert held["aws"]["services"]["sqs"]["requests"] >= 2
    finally:
        stack.stop_all()
