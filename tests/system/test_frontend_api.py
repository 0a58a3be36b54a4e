"""The frontend's JSON API and /healthz against the running local stack: Postgres,
moto's SQS, the index server, pelican and emu syncing the first rows of the sample
catalog, and the frontend itself as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from devstack.waiting import wait_until
from productsearch.embedding import Embedder
from productsearch.settings import EmbeddingSettings
from tests.conftest import REPO
from tests.e2e import frontend_stack
from tests.e2e.frontend_stack import EDITOR, request

pytestmark = pytest.mark.stack

QUERY = "wireless controller for gaming"


@pytest.fixture(scope="module")
def front(stack):
    with frontend_stack.running(stack, rows=200) as f:
        yield f


@pytest.fixture(scope="module")
def query_embedder(front):
    """Queries embedded as the frontend embeds them (EmbeddingSettings.for_queries), so an
    expected ranking is computed from the very vectors the frontend searched with."""
    return Embedder(EmbeddingSettings.for_queries(dict(os.environ)))


def index_order(front, query_embedder, query: str, top_k: int, index_filter=None) -> list[tuple[int, float]]:
    vector = query_embedder.embed([query])[0]
    return [(int(m.id), m.score) for m in front.parts.index.query(vector, top_k=top_k, filter=index_filter)]


# -- search ------------------------------------------------------------------------------
def test_the_frontend_embeds_queries_with_onnx_runtime_unless_told_otherwise(front, stack, query_embedder):
    """frontend.__main__ defaults EMBEDDING_RUNTIME to auto, which is ONNX Runtime on a CPU
    (the export was verified against torch when it loaded); the fixture sets no runtime."""
    if "EMBEDDING_RUNTIME" in stack.app_env({}):
        pytest.skip("EMBEDDING_RUNTIME is set in this environment")
    if str(query_embedder.device).startswith("cuda"):
        pytest.skip("auto takes torch on a GPU")
    lines = stack.log_path("frontend").read_text(encoding="utf-8").splitlines()
    loaded = [json.loads(line) for line in lines if '"embedding model loaded"' in line]
    assert loaded, "the frontend logged no model load"
    assert loaded[-1]["runtime"] == "onnx", loaded[-1]
    assert "onnxruntime" in loaded[-1]["description"] and "(fp32, 1 thread)" in loaded[-1]["description"]


def test_results_are_in_the_index_rank_order_with_scores(front, query_embedder):
    results = front.search(QUERY, top_k=15, mode="semantic")
    expected = index_order(front, query_embedder, QUERY, 15)
    assert [r["id"] for r in results] == [i for i, _ in expected]
    assert [r["score"] for r in results] == pytest.approx([s for _, s in expected], abs=1e-4)
    assert all(a["score"] >= b["score"] for a, b in zip(results, results[1:]))
    row = front.parts.conn.execute("SELECT * FROM products WHERE id = %s", (results[0]["id"],)).fetchone()
    assert {k: results[0][k] for k in ("name", "sku", "description")} == {k: row[k] for k in ("name", "sku", "description")}
    assert results[0]["price"] == float(row["price"])
    assert set(results[0]) >= {"id", "name", "sku", "description", "price", "score"}


def test_price_filter_is_pushed_down_to_the_index(front, query_embedder):
    prices = sorted(float(r["price"]) for r in front.parts.conn.execute("SELECT price FROM products").fetchall())
    low, high = prices[40], prices[54]  # 15 of the 200 rows
    unfiltered = front.search(QUERY, top_k=10, mode="semantic")
    assert sum(low <= r["price"] <= high for r in unfiltered) < 10, "range too wide to tell push-down from post-filtering"

    results = front.search(QUERY, top_k=10, filters={"price_min": low, "price_max": high}, mode="semantic")
    # Post-filtering the unfiltered top 10 would leave fewer than 10; the index filtered before ranking.
    assert len(results) == 10
    assert all(low <= r["price"] <= high for r in results)
    expected = index_order(front, query_embedder, QUERY, 10, {"price": {"$gte": low, "$lte": high}})
    assert [r["id"] for r in results] == [i for i, _ in expected]
    # Bounds as strings, as the page's text boxes send them, read the same (docs/frontend.md);
    # an empty string is no bound.
    as_text = front.search(QUERY, top_k=10, filters={"price_min": str(low), "price_max": str(high)}, mode="semantic")
    assert [r["id"] for r in as_text] == [r["id"] for r in results]
    no_bound = front.search(QUERY, top_k=10, filters={"price_min": "", "price_max": None}, mode="semantic")
    assert [r["id"] for r in no_bound] == [r["id"] for r in unfiltered]


def test_category_filter_narrows_results(front, query_embedder):
    results = front.search(QUERY, top_k=20, filters={"category": "Device"}, mode="semantic")
    assert results and all(r["category"] == "device" for r in results)
    expected = index_order(front, query_embedder, QUERY, 20, {"category_key": {"$eq": "device"}})
    assert [r["id"] for r in results] == [i for i, _ in expected]
    both = front.search(QUERY, top_k=20, filters={"category": "device", "price_max": 300})
    assert both and all(r["category"] == "device" and r["price"] <= 300 for r in both)
    assert len(both) < len(results)


def test_empty_result_says_so(front):
    assert front.search(QUERY, filters={"price_min": 999_999}) == []
    assert front.search(QUERY, filters={"category": "no-such-category"}) == []


def test_pages_cover_the_ranking_and_know_where_it_ends(front, query_embedder):
    from productsearch.search import ProductSearch, SearchFilters
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    from frontend.searching import search_page

    with ConnectionPool(front.stack.database_url, min_size=1, max_size=2,
                        kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        search = ProductSearch(query_embedder, front.parts.index, pool)
        top = [r.id for r in search.search(QUERY, top_k=30)]
        pages = [search_page(search, QUERY, SearchFilters(), n, 10) for n in (1, 2, 3)]
        assert [r.id for p in pages for r in p.results] == top
        assert all(p.has_more for p in pages)

        prices = sorted(float(r["price"]) for r in front.parts.conn.execute("SELECT price FROM products").fetchall())
        narrow = SearchFilters(price_min=prices[100], price_max=prices[111])  # 12 rows
        first = search_page(search, QUERY, narrow, 1, 10)
        second = search_page(search, QUERY, narrow, 2, 10)
        assert len(first.results) == 10 and first.has_more
        assert len(second.results) == 2 and not second.has_more
        assert second.first_rank == 11
        beyond = search_page(search, QUERY, narrow, 3, 10)
        assert beyond.results == [] and not beyond.has_more


BAD_SEARCHES = [
    ({"query": ""}, "query is empty"),
    ({"query": "   \t\n "}, "query is empty"),
    ({"query": "x" * 10_000}, "10000 characters"),
    ({"query": "abc \ud800 def"}, "not valid unicode"),
    ({"query": "tea\x00pot"}, "nul"),
    ({"query": 42}, "query must be a string"),
    ({}, "query is missing"),
    ({"query": "lamp", "top_k": 0}, "top_k must be between 1 and 100"),
    ({"query": "lamp", "top_k": 100_000}, "top_k must be between 1 and 100"),
    ({"query": "lamp", "top_k": "ten"}, "top_k must be an integer"),
    ({"query": "lamp", "filters": {"price_min": -5}}, "non-negative"),
    ({"query": "lamp", "filters": {"price_max": -0.01}}, "non-negative"),
    ({"query": "lamp", "filters": {"price_min": 500, "price_max": 100}}, "greater than price_max"),
    ({"query": "lamp", "filters": {"price_min": "cheap"}}, "must be a number"),
    ({"query": "lamp", "filters": {"colour": "red"}}, "unknown filter"),
    ({"query": "lamp", "filters": {"price_min": "6_0"}}, "must be a number"),  # not read as 60
    ({"query": "lamp", "filters": [1, 2]}, "filters must be an object"),
    ({"query": "lamp", "page": 2}, "unknown field"),
]


@pytest.mark.parametrize("body,reason", BAD_SEARCHES, ids=[str(i) for i in range(len(BAD_SEARCHES))])
def test_bad_search_input_is_a_4xx_with_a_reason(front, body, reason):
    resp = front.api("/api/search", "POST", raw=json.dumps(body).encode())
    assert resp.status == 400, resp.body
    assert reason.lower() in resp.body["error"].lower()


@pytest.mark.parametrize("raw,reason", [
    (b"", "empty"),
    (b"not json", "not valid json"),
    (b'{"query": "lamp", "filters": {"price_min": NaN}}', "not valid json"),
    (b'["lamp"]', "json object"),
    ('{"query": "caf\u00e9"}'.encode("latin-1"), "not valid utf-8"),
    (b'{"query": "lamp", "filters": {"price_min": 1' + b"0" * 400 + b"}}", "must be a number"),
    pytest.param(b'{"query": "a", "top_k": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply", id="deep-nesting"),
])
def test_malformed_bodies_are_refused(front, raw, reason):
    resp = front.api("/api/search", "POST", raw=raw)
    assert resp.status == 400, resp.body
    assert reason in resp.body["error"].lower()


def test_oversized_body_is_refused(front):
    resp = front.api("/api/search", "POST", raw=json.dumps({"query": "x" * (2 * 1024 * 1024)}).encode())
    assert resp.status == 413 and "error" in resp.body


@pytest.mark.parametrize("query", ["🔦🔋 flashlight that lasts", "'; DROP TABLE products; --", "Ã©tÃ© mojibake cafÃ©",
                                   "<script>alert(1)</script>"])
def test_odd_but_valid_queries_search_safely(front, query):
    results = front.search(query, top_k=5)
    assert len(results) == 5
    assert front.parts.conn.execute("SELECT count(*) AS n FROM products").fetchone()["n"] == 200


# -- editing -------------------------------------------------------------------------------
def _row(front, pid):
    return front.parts.conn.execute("SELECT name, description, price, updated_at FROM products WHERE id = %s", (pid,)).fetchone()


def _captured(front, pid) -> int:
    return front.parts.conn.execute("SELECT count(*) AS n FROM product_changes WHERE product_id = %s", (pid,)).fetchone()["n"]


@pytest.mark.parametrize("auth", [None, ("editor", "wrong-password"), ("someone", EDITOR[1]), ("", "")],
                         ids=["none", "wrong-password", "wrong-user", "empty"])
def test_unauthenticated_edit_is_401_and_writes_nothing(front, auth):
    pid = front.product_ids[3]
    before = _row(front, pid)
    resp = front.api(f"/api/products/{pid}", "PUT", {"description": "defaced"}, auth=auth)
    assert resp.status == 401, resp.body
    assert "error" in resp.body and "basic" in resp.headers.get("www-authenticate", "").lower()
    assert _row(front, pid) == before
    assert _captured(front, pid) == 0


def test_malformed_basic_auth_header_is_401(front):
    pid = front.product_ids[3]
    req_headers = {"authorization": "Basic !!!not-base64!!!"}
    import urllib.request

    r = urllib.request.Request(f"{front.url}/api/products/{pid}", data=b'{"price": 1}', method="PUT", headers=req_headers)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(r, timeout=10)
    assert err.value.code == 401


BAD_EDITS = [
    ({"description": ""}, "description is empty"),
    ({"description": "   "}, "description is empty"),
    ({"description": "x" * 50 * 1024}, "51,200 characters; the limit is 10,000"),
    ({"description": "x" * 10_001}, "the limit is 10,000"),
    ({"name": ""}, "name is empty"),
    ({"price": -1}, "must not be negative"),
    ({"price": "abc"}, "must be a number"),
    ({"price": 1.234}, "two decimal places"),
    ({"price": 1e13}, "at most"),
    ({"price": "6_0"}, "must be a number"),  # Decimal() alone would save 60
    ({"price": "\u0661\u0660\u0660"}, "must be a number"),  # Arabic-Indic digits, 100 to Decimal()
    ({"sku": "NEW-SKU"}, "read-only"),
    ({"description": "bad \ud800 text"}, "lone surrogate"),
    ({}, "nothing to change"),
    ([1], "json object"),
]


@pytest.mark.parametrize("body,reason", BAD_EDITS, ids=[str(i) for i in range(len(BAD_EDITS))])
def test_bad_edits_are_refused_and_write_nothing(front, body, reason):
    pid = front.product_ids[4]
    before = _row(front, pid)
    resp = front.api(f"/api/products/{pid}", "PUT", body, auth=EDITOR)
    assert resp.status == 400, resp.body
    assert reason.lower() in resp.body["error"].lower()
    assert _row(front, pid) == before
    assert _captured(front, pid) == 0


def test_a_deeply_nested_edit_is_refused_and_writes_nothing(front):
    pid = front.product_ids[4]
    before = _row(front, pid)
    resp = front.api(f"/api/products/{pid}", "PUT", raw=b'{"price": ' + b"[" * 5000 + b"]" * 5000 + b"}", auth=EDITOR)
    assert resp.status == 400 and "nested too deeply" in resp.body["error"], resp.body
    assert _row(front, pid) == before


def test_edit_of_a_missing_or_malformed_id(front):
    assert front.api("/api/products/99999999", "PUT", {"price": 5}, auth=EDITOR, headers={"If-Match": "*"}).status == 404
    assert front.api("/api/products/abc", "PUT", {"price": 5}, auth=EDITOR).status == 400
    assert front.api("/api/products/-3", "PUT", {"price": 5}, auth=EDITOR).status == 400
    assert front.api("/api/products/99999999999999999999999", "PUT", {"price": 5}, auth=EDITOR).status == 400


# Digits str.isdigit() takes that are not ASCII: a superscript (int() refuses it) and
# Arabic-Indic and full-width digits (int() reads them as another number).
OTHER_DIGITS = ["\u00b2", "1\u00b2", "\u0661\u0662", "\uff11\uff12"]


@pytest.mark.parametrize("raw", OTHER_DIGITS)
def test_ids_and_versions_are_ascii_digits_only(front, raw):
    from urllib.parse import quote

    pid = front.product_ids[0]
    for method, path, body in (("GET", f"/api/products/{quote(raw)}", None),
                               ("PUT", f"/api/products/{quote(raw)}", {"price": 5}),
                               ("GET", f"/api/products/{quote(raw)}/sync", None),
                               ("GET", f"/api/products/{pid}/sync?version={quote(raw)}", None)):
        resp = front.api(path, method, body, auth=EDITOR) if method == "PUT" else front.api(path)
        assert resp.status == 400, (method, path, resp.status, resp.body)
        assert "integer" in resp.body["error"], resp.body


def test_authenticated_edit_becomes_searchable(front):
    pid = front.product_ids[7]
    text = "A hand-stitched leather saddlebag for touring bicycles"
    assert all(r["id"] != pid for r in front.search("leather saddlebag for a bicycle", top_k=3))

    resp = front.edit(pid, {"description": text, "price": "123.45"})
    assert resp.status == 200, resp.body
    assert resp.body["changed"] == ["description", "price"] and resp.body["version"]
    assert resp.body["description"] == text and resp.body["price"] == 123.45
    row = front.api(f"/api/products/{pid}").body
    assert row["description"] == text

    front.wait_searchable(pid, resp.body["version"])
    top = front.search("leather saddlebag for a bicycle", top_k=3)
    assert top[0]["id"] == pid and top[0]["description"] == text and top[0]["price"] == 123.45
    sync = front.api(f"/api/products/{pid}/sync").body
    assert sync["searchable"] is True and sync["indexed_version"] >= resp.body["version"]

    again = front.edit(pid, {"description": text})
    assert again.status == 200 and again.body["changed"] == [] and again.body["version"] is None


def _version(front, pid) -> int:
    return front.parts.conn.execute("SELECT version FROM products WHERE id = %s", (pid,)).fetchone()["version"]


def test_an_edit_is_bound_to_the_state_it_was_read_from(front):
    pid = front.product_ids[12]
    read = front.api(f"/api/products/{pid}")
    assert read.status == 200 and read.headers["etag"] == f'"{_version(front, pid)}"'
    assert read.body["version"] == _version(front, pid)

    # Another editor saves in between: the first editor's tag is stale.
    other = front.api(f"/api/products/{pid}", "PUT", {"name": "Second Editor's Name"}, auth=EDITOR,
                      headers={"If-Match": read.headers["etag"]})
    assert other.status == 200 and other.headers["etag"] == f'"{other.body["version"]}"'
    before = _row(front, pid)
    stale = front.api(f"/api/products/{pid}", "PUT", {"description": "first editor's text"}, auth=EDITOR,
                      headers={"If-Match": read.headers["etag"]})
    assert stale.status == 412, stale.body
    assert stale.body["current"]["name"] == "Second Editor's Name"
    assert stale.body["current"]["version"] == other.body["version"]
    assert stale.headers["etag"] == other.headers["etag"]
    assert _row(front, pid) == before

    # Reading again and sending the new tag applies the edit.
    fresh = front.api(f"/api/products/{pid}", "PUT", {"description": "first editor's text"}, auth=EDITOR,
                      headers={"If-Match": stale.headers["etag"]})
    assert fresh.status == 200 and fresh.body["description"] == "first editor's text"
    front.wait_searchable(pid, fresh.body["version"])


@pytest.mark.parametrize("if_match,status,reason", [
    (None, 428, "if-match is required"),
    ('W/"1"', 400, "weak"),
    ("1", 400, "entity tag"),
    ('"1", "2"', 400, "entity tag"),
    ('"\u00b2"', 400, "entity tag"),
    ('"' + "9" * 40 + '"', 400, "entity tag"),
    ('"0"', 412, "changed since it was read"),
])
def test_an_edit_without_a_usable_if_match_is_refused_and_writes_nothing(front, if_match, status, reason):
    pid = front.product_ids[13]
    before = _row(front, pid)
    headers = {} if if_match is None else {"If-Match": if_match}
    resp = front.api(f"/api/products/{pid}", "PUT", {"price": "7.00"}, auth=EDITOR, headers=headers)
    assert resp.status == status, resp.body
    assert reason in resp.body["error"].lower()
    assert _row(front, pid) == before and _captured(front, pid) == 0


# -- operations ----------------------------------------------------------------------------
def test_healthz_is_fast_and_reports_its_parts(front):
    started = time.monotonic()
    for _ in range(20):
        resp = front.api("/healthz")
        assert resp.status == 200
    assert (time.monotonic() - started) / 20 < 0.25
    # "index": which configured index serves (docs/index-migration.md); no row: PINECONE_HOST.
    assert resp.body == {"status": "ok", "model": "loaded", "database": "reachable", "index": "primary"}


def test_status_reports_table_index_log_and_queues(front):
    status = front.api("/api/status").body
    assert status["rows"] == 200 and status["vectors"] == 200
    assert status["changes_pending"] == 0 and status["oldest_unsynced_age_s"] == 0
    assert set(status["queue"]) == {"visible", "in_flight"} and status["dead_letters"] == {"visible": 0, "in_flight": 0}
    assert status["errors"] == {}
    assert status["in_sync"] is True
    # make status prints the same reading
    lines = front.stack.sync_lines()
    assert lines[0] == f"UI: http://127.0.0.1:{front.stack.frontend_port}/  (index: legacy Vectors API)"
    assert lines[1].startswith("sync: in sync (read at ")
    assert lines[2] == "  rows 200, vectors 200, changes waiting 0"
    assert lines[3].startswith("  jobs queue: ") and lines[3].endswith("; dead-letter queue: 0 waiting, 0 in flight")
    assert lines[4].startswith("  oldest open transaction: ")
    assert len(lines) == 5


def test_status_shows_the_age_of_an_unsynced_change(front):
    front.stack.stop("pelican", timeout=20)
    try:
        pid = front.product_ids[9]
        changed_at = datetime.now(timezone.utc).replace(microsecond=0)
        front.parts.conn.execute("UPDATE products SET price = price + 1 WHERE id = %s", (pid,))
        front.parts.conn.execute("UPDATE product_changes SET captured_at = now() - interval '90 seconds'")
        # Readings are refreshed in the background once 2 s old: a read may return the
        # previous one while the next is taken.
        status = wait_until(lambda: (s := front.api("/api/status").body)["changes_pending"] == 1 and s, 15,
                            interval=0.5, what="a status reading after the change")
        assert 90 <= status["oldest_unsynced_age_s"] < 120
        assert status["in_sync"] is False
        lines = wait_until(lambda: len(ls := front.stack.sync_lines()) > 1 and ls[1].startswith("sync: catching up") and ls, 15,
                           interval=0.5, what="make status catching up")
        assert "changes waiting 1" in lines[2]
        # read_at says when the figures were read (docs/frontend.md): after the change, for this one.
        read_at = datetime.strptime(status["read_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert changed_at <= read_at <= datetime.now(timezone.utc)
    finally:
        front.stack.start_app("pelican", options=frontend_stack.FAST)
    wait_until(lambda: front.parts.pending_changes() == 0, 60, what="pelican caught up")


def test_unknown_api_path_is_a_json_404(front):
    resp = front.api("/api/nothing-here")
    assert resp.status == 404 and "error" in resp.body


@pytest.mark.parametrize(("method", "path", "allow"), [("GET", "/api/search", "POST"),
                                                       ("DELETE", "/api/products/1", "GET, PUT"),
                                                       ("POST", "/api/status", "GET")])
def test_a_known_path_asked_with_another_method_is_a_405_naming_the_allowed_ones(front, method, path, allow):
    resp = front.api(path, method, {} if method != "GET" else None)
    assert (resp.status, resp.headers.get("allow")) == (405, allow)
    assert method in resp.body["error"] and allow in resp.body["error"]


def test_logs_are_json_without_secrets(front):
    front.search(QUERY)  # its own search line, whatever ran before
    front.api("/api/products/1", "PUT", {"price": 5}, auth=("editor", "a-wrong-guess"))
    log = front.stack.log_path("frontend").read_text()
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    assert EDITOR[1] not in log and "a-wrong-guess" not in log
    assert any(json.loads(line).get("msg") == "search" for line in lines)
    assert "editor login failed" in log


@pytest.mark.parametrize("env,name", [
    ({"PINECONE_HOST": ""}, "PINECONE_HOST"),
    ({"FRONTEND_PORT": "eighty"}, "FRONTEND_PORT"),
    ({"EDITOR_USERNAME": "editor", "EDITOR_PASSWORD": ""}, "EDITOR_PASSWORD"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
])
def test_bad_setting_stops_the_app_at_start_naming_it(stack, env, name):
    full = stack.app_env(env)
    for key, value in env.items():
        if value == "":
            full.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "frontend"], env=full, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert name in proc.stderr and "configuration error" in proc.stderr


def test_any_replica_answers_any_click(front, stack):
    """The page keeps no server-side session: a search run on one replica pages on
    another, and an edit saved through one is seen as searchable through the other."""
    import re

    from devstack.stack import free_port

    port = free_port()
    stack.start_app("frontend", {"FRONTEND_PORT": str(port), "EDITOR_USERNAME": EDITOR[0],
                                 "EDITOR_PASSWORD": EDITOR[1]}, instance="frontend-b")
    other = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(other + "/healthz"), 120, interval=0.3, what="second replica healthy")
        first = request(front.url + "/gradio_api/run/ui_search", "POST", {"data": [QUERY, "", "", "", "semantic", False]})
        assert first.status == 200, first.body
        state = first.body["data"][5]
        second = request(other + "/gradio_api/run/ui_next_page", "POST", {"data": [state, False]})
        assert second.status == 200, second.body
        assert second.body["data"][0].startswith("Results 11–20 (semantic)")  # the mode travels with the page
        ids = [int(i) for i in re.findall(r'data-id="(\d+)"', first.body["data"][1] + second.body["data"][1])]
        assert ids == [r["id"] for r in front.search(QUERY, top_k=20, mode="semantic")]

        pid = front.product_ids[11]
        read = request(f"{other}/api/products/{pid}")
        edit = request(f"{other}/api/products/{pid}", "PUT", {"name": "Replica Lantern"}, auth=EDITOR,
                       headers={"If-Match": read.headers["etag"]})
        assert edit.status == 200, edit.body
        front.wait_searchable(pid, edit.body["version"])
    finally:
        stack.stop("frontend-b", timeout=20)


@pytest.mark.parametrize("mode", ["bogus", None, {"mode": "keyword"}, 3])
def test_the_ui_search_event_answers_a_tampered_mode_with_a_message(front, mode):
    resp = request(front.url + "/gradio_api/run/ui_search", "POST", {"data": [QUERY, "", "", "", mode, False]})
    assert resp.status == 200, resp.body
    assert resp.body["data"][0].startswith("⚠️ mode must be one of hybrid, semantic, keyword"), resp.body["data"][0]
    assert resp.body["data"][1] == ""


def _answers(url: str) -> bool:
    try:
        return request(url, timeout=3).status == 200
    except OSError:
        return False
