"""Failed editor logins are throttled per client, so passwords cannot be guessed at speed: after
--logins.max-failures wrong passwords the frontend answers 429 with Retry-After,
even to the right password, until --logins.window-seconds (scaled down here)
has passed; other clients are unaffected. The frontend runs as a real process
against the local Postgres; the second client is a second loopback address."""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from devstack.waiting import wait_until
from tests.e2e.frontend_stack import request

pytestmark = pytest.mark.stack

EDITOR = ("editor", "correct-horse-battery")
WRONG = ("editor", "wrong-guess-0001")
MAX_FAILURES, WINDOW_S = 3, 3


def put(stack, product_id: int, auth: tuple[str, str], *, source: str = "127.0.0.1",
        headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    """PUT /api/products/{id} from the loopback address `source`; (status, body, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.frontend_port, timeout=30, source_address=(source, 0))
    try:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        conn.request("PUT", f"/api/products/{product_id}", body=json.dumps({"price": 12.5}),
                     headers={"content-type": "application/json", "authorization": f"Basic {token}",
                              "if-match": "*", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}"), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def start_frontend(stack, parts, extra: dict[str, str] | None = None) -> int:
    pid = parts.insert("Throttle Target", "a product to edit")
    stack.start_app("frontend", {"EDITOR_USERNAME": EDITOR[0], "EDITOR_PASSWORD": EDITOR[1], **(extra or {})},
                    options={"logins.max_failures": MAX_FAILURES, "logins.window_seconds": WINDOW_S})

    def answers() -> bool:
        try:
            return request(f"{stack.env()['FRONTEND_URL']}/api/products/{pid}", timeout=5).status == 200
        except OSError:
            return False  # not listening yet

    wait_until(answers, 120, interval=0.3, what="the frontend answering")
    return pid


def test_wrong_passwords_are_throttled_per_client_until_the_window_passes(stack, parts):
    pid = start_frontend(stack, parts)
    for _ in range(MAX_FAILURES):
        assert put(stack, pid, WRONG)[0] == 401

    status, body, headers = put(stack, pid, WRONG)
    assert status == 429 and "too many failed logins" in body["error"]
    assert 1 <= int(headers["retry-after"]) <= WINDOW_S
    status, _, headers = put(stack, pid, EDITOR)
    assert status == 429, "the right password must wait out the window too"
    # Anyone can write X-Forwarded-For; without FRONTEND_TRUSTED_PROXIES it names no client.
    assert put(stack, pid, EDITOR, headers={"X-Forwarded-For": "203.0.113.9"})[0] == 429

    # Another client is not held back by the first one's failures.
    assert put(stack, pid, EDITOR, source="127.0.0.2")[0] == 200

    wait_until(lambda: put(stack, pid, EDITOR)[0] == 200, WINDOW_S + 10, interval=0.5,
               what="the right password accepted once the window has passed")
    log = stack.log_path("frontend").read_text(errors="replace")
    failed = [json.loads(line) for line in log.splitlines() if '"editor login failed"' in line]
    assert len(failed) == MAX_FAILURES and {f["client"] for f in failed} == {"127.0.0.1"}
    assert failed[-1]["failures_in_window"] == MAX_FAILURES
    assert WRONG[1] not in log and EDITOR[1] not in log


def test_behind_a_trusted_proxy_the_client_is_the_right_most_untrusted_forwarded_address(stack, parts):
    pid = start_frontend(stack, parts, {"FRONTEND_TRUSTED_PROXIES": "127.0.0.1"})

    def via_proxy(chain: str, auth=WRONG) -> int:
        return put(stack, pid, auth, headers={"X-Forwarded-For": chain})[0]

    # The left-most entries are whatever the caller wrote; the proxy appends the real peer.
    for forged in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        assert via_proxy(f"{forged}, 203.0.113.7") == 401
    assert via_proxy("198.51.100.4, 203.0.113.7") == 429
    assert via_proxy("203.0.113.8", EDITOR) == 200  # a different client behind the same proxy
