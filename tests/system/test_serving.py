"""Serving under ECS and an ALB, on the local stack: emu finishes or hands back its
work before the SIGKILL that follows SIGTERM; the frontend keeps idle connections
open longer than the load balancer does; /healthz answers while the index hangs;
request bodies and uploads are bounded before anything reads or stores them."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
import urllib.parse

import pytest

from devstack.waiting import wait_until
from tests import kit
from tests.e2e import frontend_stack

pytestmark = pytest.mark.stack

LB_IDLE_SECONDS = 6  # the load balancer's idle timeout, scaled down from ALB's 60-120 s


def in_flight(parts) -> int:
    attrs = parts.sqs.get_queue_attributes(QueueUrl=parts.env["SQS_QUEUE_URL"],
                                           AttributeNames=["ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessagesNotVisible"])


# -- emu: SIGTERM to exit within the stop timeout ----------------------------------------
def test_emu_stops_within_its_stop_timeout_and_hands_everything_back(parts, stack):
    stop_timeout = 12
    ids = parts.insert_many(1200, prefix="drain")
    stack.start_app("pelican", options={"poll_interval_seconds": 1, "changes_per_message": 60})
    # Every upsert request takes 4 s, one at a time: the work in hand (600 changes or
    # more, at least three requests) takes longer to write than the deadline allows.
    kit.inject_index_fault(stack, status=None, delay_seconds=4, count=100_000, paths=["/vectors/upsert"])
    stack.start_app("emu", {"EMU_STOP_TIMEOUT_SECONDS": str(stop_timeout)},
                    options={"index_timeout_seconds": 5, "index_requests_in_flight": 1})
    wait_until(lambda: in_flight(parts) >= 10, 120, what="emu holding 10 messages of 60 changes")

    started = time.monotonic()
    proc = stack.processes["emu"]
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=stop_timeout)
    except Exception:
        pytest.fail(f"emu outlived its {stop_timeout} s stop timeout:\n{stack.log_path('emu').read_text()[-3000:]}")
    took = time.monotonic() - started
    assert code == 0, stack.log_path("emu").read_text()[-3000:]
    assert in_flight(parts) == 0, "emu left messages hidden; each kill would use up one of their receives"
    assert parts.index.count() < len(ids), "emu finished the backlog; the test proves nothing"
    log = stack.log_path("emu").read_text()
    assert "emu stopped" in log and "returned unfinished messages to the queue" in log
    print(f"emu exited {took:.1f} s after SIGTERM")

    kit.clear_index_faults(stack)
    stack.start_app("emu")
    wait_until(lambda: parts.index.count() == len(ids), 300, interval=1, what="the rest indexed by a new emu")


# -- the frontend under a load balancer ----------------------------------------------------
@pytest.fixture(scope="module")
def front(stack, tmp_path_factory):
    temp = tmp_path_factory.mktemp("gradio-temp")
    f = frontend_stack.start(stack, rows=50, frontend_env={
        "LOAD_BALANCER_IDLE_TIMEOUT_SECONDS": str(LB_IDLE_SECONDS), "GRADIO_TEMP_DIR": str(temp)},
        frontend_options={"index_timeout_seconds": 2})
    f.gradio_temp = temp
    yield f
    kit.clear_index_faults(f.stack)
    frontend_stack.stop(f)


def _address(front) -> tuple[str, int]:
    url = urllib.parse.urlparse(front.url)
    return url.hostname, url.port


def test_idle_keep_alive_outlasts_the_load_balancers(front):
    host, port = _address(front)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/healthz")
    first = conn.getresponse()
    first.read()
    assert first.status == 200 and first.getheader("connection", "").lower() != "close"
    sock = conn.sock
    time.sleep(LB_IDLE_SECONDS + 1)  # the balancer would reuse the connection up to here
    conn.request("GET", "/healthz")
    again = conn.getresponse()
    again.read()
    assert again.status == 200
    assert conn.sock is sock, "the connection was not kept open"


def test_healthz_answers_while_the_index_hangs(front):
    kit.inject_index_fault(front.stack, status=None, delay_seconds=60, count=100_000,
                                   paths=["/query", "/describe_index_stats"])
    stop = threading.Event()
    outcomes: list[int] = []

    def user(kind: str) -> None:
        while not stop.is_set():
            try:
                if kind == "search":
                    resp = front.api("/api/search", "POST", {"query": "wireless headphones"}, timeout=30)
                else:
                    resp = front.api("/api/status", timeout=30)
                outcomes.append(resp.status)
            except OSError:
                outcomes.append(-1)

    users = [threading.Thread(target=user, args=(k,), daemon=True) for k in ["search"] * 6 + ["status"] * 6]
    for t in users:
        t.start()
    try:
        time.sleep(4)  # searches and status reads are now waiting on the index
        for _ in range(5):
            started = time.monotonic()
            resp = front.api("/healthz", timeout=1.0)
            assert resp.status == 200, resp.body
            assert time.monotonic() - started < 1.0
            time.sleep(0.5)
        status = front.api("/api/status", timeout=2.0)
        assert status.status == 200  # a cached reading, never a queue behind the hung index
    finally:
        stop.set()
        kit.clear_index_faults(front.stack)
        for t in users:
            t.join(timeout=30)
    assert 500 not in outcomes, outcomes


def _post_streaming(front, path: str, declared: int | None, send_bytes: int, content_type: str) -> tuple[int, bytes]:
    """Sends headers (with Content-Length `declared`, or chunked), then up to send_bytes
    of body, and returns the response that arrives, without finishing the body."""
    host, port = _address(front)
    sock = socket.create_connection((host, port), timeout=20)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: {content_type}"]
        head.append(f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < send_bytes:
                data = chunk if declared is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
                sock.sendall(data)
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed while we were still sending
        reply = b""
        while b"\r\n\r\n" not in reply:
            part = sock.recv(65536)
            if not part:
                break
            reply += part
        status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else -1
        return status, reply
    finally:
        sock.close()


def test_uploads_and_huge_bodies_are_refused_unread_and_unstored(front):
    big = 50 * 1024 * 1024
    # A declared 50 MB is answered before a byte of it is sent.
    status, _ = _post_streaming(front, "/gradio_api/upload", big, 0, "multipart/form-data; boundary=x")
    assert status == 403
    status, _ = _post_streaming(front, "/api/search", big, 0, "application/json")
    assert status == 413
    # Without a length: counted as it streams and stopped just past the 1 MiB cap.
    status, _ = _post_streaming(front, "/gradio_api/queue/join", None, 1024 * 1024 + 128 * 1024, "application/json")
    assert status == 413
    stored = [p for p in front.gradio_temp.rglob("*") if p.is_file()]
    assert stored == [], stored
    # Ordinary requests still work.
    assert front.api("/api/search", "POST", {"query": "lamp"}).status == 200
