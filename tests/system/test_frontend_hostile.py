"""The running frontend against hostile input, a throttling index and rows deleted
ahead of the index: every API route and every Gradio event answers with a status
below 500 and a message (never a traceback in the log), a throttled search fails at
once with the index's Retry-After, and a deleted row never ends the paging early.

Its own module (and stack): the hostile edit calls fail logins, which the login
throttle counts, and the paging test deletes a row."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from urllib.parse import quote, urlsplit

import pytest

from devstack.waiting import wait_until
from frontend.services import SEARCH_ATTEMPTS
from tests.e2e import frontend_stack
from tests.e2e.frontend_stack import EDITOR, request
from tests.system.test_reliability import converge

pytestmark = pytest.mark.stack

QUERY = "wireless controller for gaming"
# Values no form sends: out-of-range and non-finite numbers, other scripts' digits,
# NUL characters, huge strings, wrong types.
HOSTILE = [None, -1, 0, 10**30, 1e308, -1e308, "²", "1²", "١٢", "a\x00b", "x" * 100_000, "", [], {}, True,
           {"page": 10**30}, '{"id": 1, "version": "²", "saved_at": 1}', '{"query": "a", "page": 99999999}']
# json.dumps writes these as NaN and Infinity, which a lenient JSON parser accepts.
NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.fixture(scope="module")
def front(stack):
    # A throttle that never trips: hostile saves fail logins by the hundred.
    f = frontend_stack.start(stack, rows=60, frontend_options={"logins.max_failures": 1000,
                                                               "logins.window_seconds": 1})
    yield f
    frontend_stack.stop(f)


def post_raw(url: str, raw: bytes):
    return request(url, "POST", raw=raw, timeout=60)


def events(front) -> list[dict]:
    """Every event of the page (named or not) with its number of inputs, from Gradio's config."""
    config = request(front.url + "/config").body
    return [{"fn_index": d["id"], "api_name": d.get("api_name"), "inputs": len(d["inputs"]),
             "backend": d.get("backend_fn", True)} for d in config["dependencies"]]


def traceback_lines(front) -> list[str]:
    return [line for line in front.stack.log_path("frontend").read_text(errors="replace").splitlines()
            if "Traceback" in line]


def test_every_gradio_event_answers_hostile_input_without_a_500(front):
    found = events(front)
    named = {e["api_name"] for e in found if e["api_name"]}
    assert {"ui_search", "ui_load", "ui_save", "ui_open_result", "ui_result_save", "ui_poll_edit"} <= named
    before = len(traceback_lines(front))
    failures = []
    for event in found:
        if not event["backend"]:  # runs in the browser only: nothing on the server to call
            resp = post_raw(front.url + "/gradio_api/run/predict", json.dumps({"data": [], "fn_index": event["fn_index"]}).encode())
            if resp.status != 404:
                failures.append((event["fn_index"], "browser-only", resp.status, resp.body))
            continue
        calls = [[], [None]]  # too few inputs
        calls += [[value] * event["inputs"] for value in HOSTILE]
        calls += [[*EDITOR, value][-event["inputs"]:] if event["inputs"] >= 3 else [value] * event["inputs"]
                  for value in HOSTILE[:6]]
        for data in calls:
            body = json.dumps({"data": data, "fn_index": event["fn_index"]}).encode()
            resp = post_raw(front.url + "/gradio_api/run/predict", body)
            if resp.status != 200:
                failures.append((event["api_name"] or event["fn_index"], repr(data)[:80], resp.status, resp.body))
        for value in NON_FINITE:
            body = json.dumps({"data": [value] * event["inputs"], "fn_index": event["fn_index"]}).encode()
            resp = post_raw(front.url + "/gradio_api/run/predict", body)
            if resp.status >= 500:
                failures.append((event["api_name"] or event["fn_index"], value, resp.status, resp.body))
    assert failures == []
    assert len(traceback_lines(front)) == before, traceback_lines(front)[-3:]


@pytest.mark.parametrize("path,body", [
    ("/gradio_api/run/predict", {"data": [], "fn_index": 10**30}),
    ("/gradio_api/run/predict", {"data": [], "fn_index": -1}),
    ("/gradio_api/run/no_such_event", {"data": []}),
    ("/gradio_api/call/no_such_event", {"data": []}),
    ("/gradio_api/queue/join", {"data": [], "fn_index": 10**30, "session_hash": "hostile"}),
    ("/gradio_api/queue/join", {"data": [], "session_hash": "hostile"}),
])
def test_a_call_to_an_event_that_does_not_exist_is_a_404(front, path, body):
    resp = post_raw(front.url + path, json.dumps(body).encode())
    assert resp.status == 404 and "no such event" in resp.body["error"], resp.body


def test_a_queued_call_with_too_few_inputs_ends_with_a_message(front):
    """The other way in: /gradio_api/call/<name> queues the event and streams its answer."""
    started = post_raw(front.url + "/gradio_api/call/ui_search", json.dumps({"data": []}).encode())
    assert started.status == 200, started.body
    url = f"{front.url}/gradio_api/call/ui_search/{started.body['event_id']}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        stream = resp.read().decode()
    assert "event: complete" in stream and "query must be a string" in stream, stream


@pytest.mark.parametrize("value", [v for v in HOSTILE if isinstance(v, str) and v] + ["-5", "9" * 40, "%00"])
def test_every_api_route_answers_a_hostile_id_or_version_with_a_4xx(front, value):
    pid = front.product_ids[0]
    before = len(traceback_lines(front))
    raw = quote(value, safe="%")
    for method, path in (("GET", f"/api/products/{raw}"), ("PUT", f"/api/products/{raw}"),
                         ("GET", f"/api/products/{raw}/sync"), ("GET", f"/api/products/{pid}/sync?version={raw}")):
        resp = front.api(path, method, {"price": 5} if method == "PUT" else None, auth=EDITOR,
                         headers={"If-Match": "*"})
        assert 400 <= resp.status < 500, (method, path[:80], resp.status, resp.body)
        assert "error" in resp.body
    assert len(traceback_lines(front)) == before, traceback_lines(front)[-3:]


def test_a_long_url_arriving_in_pieces_still_gets_the_routes_json_400(front):
    """Under load a long request line reaches the server in several reads. Each piece
    must be buffered (frontend.__main__.MAX_REQUEST_HEAD_BYTES), not answered with a bare
    400 and a close while the client is still sending: the route's own check answers.
    The pause only makes the split happen every time."""
    url = urlsplit(front.url)
    head = f"GET /api/products/{'x' * 100_000} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        conn.sendall(head[:20_000])
        time.sleep(0.5)
        conn.sendall(head[20_000:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 4"), answer[:200]
    assert "error" in json.loads(rest.partition(b"\r\n\r\n")[2]), answer[:400]


@pytest.mark.parametrize("body", [{"query": v} for v in HOSTILE] + [{"query": "a", "top_k": v} for v in HOSTILE]
                         + [{"query": "a", "mode": v} for v in HOSTILE]
                         + [{"query": "a", "filters": {"price_min": v}} for v in HOSTILE])
def test_search_answers_hostile_values_with_a_400(front, body):
    resp = front.api("/api/search", "POST", body)
    assert resp.status in (200, 400), (resp.status, resp.body)
    assert resp.status == 200 or "error" in resp.body


def _valid_name(value) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "\x00" not in value and len(value) <= 500


@pytest.mark.parametrize("body", [{"name": v} for v in HOSTILE if v is not None and not _valid_name(v)]
                         + [{"price": v} for v in HOSTILE if v is not None and v != 0]
                         + [{"price": "NaN"}, {"price": "Infinity"}, {"price": "1e400"}])
def test_edits_answer_hostile_values_with_a_400_and_write_nothing(front, body):
    pid = front.product_ids[1]
    before = front.parts.conn.execute("SELECT name, price, version FROM products WHERE id = %s", (pid,)).fetchone()
    resp = front.api(f"/api/products/{pid}", "PUT", body, auth=EDITOR, headers={"If-Match": "*"})
    assert resp.status == 400, (resp.status, resp.body)
    after = front.parts.conn.execute("SELECT name, price, version FROM products WHERE id = %s", (pid,)).fetchone()
    assert after == before


# -- a throttling index ------------------------------------------------------------------
def _faults(front, method: str, rule: dict | None = None) -> dict:
    url = front.stack.env()["PINECONE_HOST"].rstrip("/") + "/_faults"
    data = json.dumps(rule).encode() if rule is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def test_a_throttled_search_fails_at_once_with_the_index_retry_after(front):
    many = 50
    _faults(front, "POST", {"status": 429, "count": many, "paths": ["/query"], "retry_after_seconds": 7})
    try:
        resp = front.api("/api/search", "POST", {"query": QUERY, "mode": "semantic"})
        left = _faults(front, "GET")["faults"]
    finally:
        _faults(front, "DELETE")
    assert resp.status == 503, resp.body
    assert resp.headers.get("retry-after") == "7" and "try again in 7 s" in resp.body["error"]
    # The search's whole retry budget: our attempts, none inside the SDK (which would
    # make up to four requests per attempt, each after waiting out Retry-After).
    used = many - (left[0]["count"] if left else 0)
    assert used == SEARCH_ATTEMPTS, left
    assert front.search(QUERY, top_k=3)  # and it searches again once the index answers


def test_a_search_the_index_fails_without_retry_after_says_so_without_one(front):
    _faults(front, "POST", {"status": 503, "count": 50, "paths": ["/query"]})
    try:
        resp = front.api("/api/search", "POST", {"query": QUERY, "mode": "semantic"})
    finally:
        _faults(front, "DELETE")
    assert resp.status == 503 and "retry-after" not in resp.headers, (resp.headers, resp.body)


# -- paging past a deleted row -------------------------------------------------------------
def ui_page(front, query: str, page_turns: int = 0) -> tuple[str, list[int], str]:
    import re

    resp = request(front.url + "/gradio_api/run/ui_search", "POST", {"data": [query, "", "", "", "semantic"]})
    for _ in range(page_turns):
        resp = request(front.url + "/gradio_api/run/ui_next_page", "POST", {"data": [resp.body["data"][5]]})
    assert resp.status == 200, resp.body
    message, html, *_ = resp.body["data"]
    return message, [int(i) for i in re.findall(r'data-id="(\d+)"', html)], resp.body["data"][5]


def test_a_row_deleted_ahead_of_the_index_does_not_end_the_paging(front):
    first_message, first_ids, _ = ui_page(front, QUERY)
    assert len(first_ids) == 10 and "last page" not in first_message
    front.stack.stop("pelican", timeout=20)  # the deletion stays on its way to the index
    try:
        front.parts.conn.execute("DELETE FROM products WHERE id = %s", (first_ids[3],))
        message, ids, _ = ui_page(front, QUERY)
        assert first_ids[3] not in ids and ids == [i for i in first_ids if i != first_ids[3]] + ids[9:]
        assert "last page" not in message, message
        second_message, second_ids, _ = ui_page(front, QUERY, page_turns=1)
        assert second_ids and not set(second_ids) & set(ids), second_message
    finally:
        front.stack.start_app("pelican", options=frontend_stack.FAST)
    wait_until(lambda: front.parts.pending_changes() == 0, 60, what="pelican shipped the deletion")


def test_the_index_ends_equal_to_the_table(front):
    """Runs last: no call of this module left a traceback in the frontend's log, and
    the deletion the index learnt of late leaves no drift."""
    assert traceback_lines(front) == []
    converge(front.parts, front.stack)
