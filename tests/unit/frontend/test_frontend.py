"""The frontend's settings, input validation and refusals, without the stack: the
app is built on stand-in parts (no model, database or index)."""

from __future__ import annotations

import contextlib

import pytest
from pydantic import SecretStr

from productsearch.settings import ConfigError

from frontend import editing
from frontend.bodies import InvalidBody
from frontend.config import EditorCredentials, FrontendSettings, FrontendTuning, LoginThrottling

BASE_ENV = {
    "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/products",
    "PINECONE_HOST": "http://127.0.0.1:2",
    "PINECONE_API_KEY": "k",
    "SQS_QUEUE_URL": "http://127.0.0.1:3/123456789012/q",
    "AWS_REGION": "us-east-1",
}


@pytest.mark.parametrize("change,name", [
    ({"DATABASE_URL": None}, "PGHOST"),
    ({"PINECONE_API_KEY": None}, "PINECONE_API_KEY"),
    ({"SQS_QUEUE_URL": None}, "SQS_QUEUE_URL"),
    ({"FRONTEND_PORT": "70000"}, "FRONTEND_PORT"),
    ({"FRONTEND_PORT": "http"}, "FRONTEND_PORT"),
    ({"FRONTEND_HOST": "0.0.0.0 extra"}, "FRONTEND_HOST"),
    ({"EDITOR_USERNAME": "editor"}, "EDITOR_PASSWORD"),
    ({"EDITOR_PASSWORD": "long-enough-pw"}, "EDITOR_USERNAME"),
    ({"EDITOR_USERNAME": "editor", "EDITOR_PASSWORD": "short"}, "EDITOR_PASSWORD"),
    ({"EMBEDDING_MODEL_PATH": "/nonexistent"}, "EMBEDDING_MODEL_PATH"),
])
def test_bad_settings_name_the_variable(change, name):
    env = {**BASE_ENV, **{k: v for k, v in change.items() if v is not None}}
    for key, value in change.items():
        if value is None:
            env.pop(key)
    with pytest.raises(ConfigError, match=name):
        FrontendSettings.from_env(env)


def test_tuning_is_options_named_when_malformed_and_no_variable():
    for argv, option in ((["--index-timeout-seconds", "0"], "--index-timeout-seconds"),
                         (["--logins.max-failures", "0"], "--logins.max-failures"),
                         (["--logins.window-seconds", "soon"], "--logins.window-seconds")):
        with pytest.raises(ConfigError, match=option):
            FrontendTuning.parse(argv)
    tuned = FrontendTuning.parse(["--index-timeout-seconds", "2", "--logins.max-failures", "1000"])
    assert (tuned.index_timeout_seconds, tuned.logins.max_failures, tuned.logins.window_seconds) == (2, 1000, 300)
    ignored = FrontendSettings.from_env({**BASE_ENV, "FRONTEND_INDEX_TIMEOUT_SECONDS": "9",
                                         "EDITOR_LOGIN_MAX_FAILURES": "9"}).tuning
    assert (ignored.index_timeout_seconds, ignored.logins.max_failures) == (3, 5)


def test_defaults_and_editor_credentials():
    settings = FrontendSettings.from_env(BASE_ENV)
    assert (settings.host, settings.port, settings.page_size) == ("127.0.0.1", 7860, 10)
    assert settings.editor is None and not settings.editing_enabled
    with_editor = FrontendSettings.from_env({**BASE_ENV, "EDITOR_USERNAME": "ed", "EDITOR_PASSWORD": "pw-12345678"})
    assert with_editor.editing_enabled and "pw-12345678" not in repr(with_editor)


def test_authenticate():
    creds = EditorCredentials("editor", SecretStr("right-password"))
    assert editing.authenticate(creds, "editor", "right-password") == "editor"
    for user, password in [("editor", "wrong"), ("Editor", "right-password"), ("", ""), (None, None),
                           ("editor", "right-password\x00"), ("editor\ud800", "x")]:
        with pytest.raises(editing.Unauthorized):
            editing.authenticate(creds, user, password)
    with pytest.raises(editing.EditingDisabled):
        editing.authenticate(None, "editor", "right-password")


@pytest.mark.parametrize("raw,reason", [
    ({"description": ""}, "description is empty"),
    ({"description": "x" * 51_200}, "limit is 10,000"),
    ({"name": "n" * 501}, "limit is 500"),
    ({"price": float("nan")}, "finite"),
    ({"price": "Infinity"}, "finite"),
    ({"price": True}, "must be a number"),
    ({"price": "12.345"}, "two decimal places"),
    ({"category": "x"}, "read-only"),
    ({"description": None}, "nothing to change"),
    ({}, "nothing to change"),
    ("text", "JSON object"),
    ([{"price": 1}], "JSON object"),
    ({"name": 5}, "name must be a string"),
    ({"name": ["Lamp"]}, "name must be a string"),
    ({"price": ""}, "price is empty"),
    ({"price": {"amount": 5}}, "price must be a number"),
    ({"description": "bad \ud800 text"}, "lone surrogate"),
    ({"name": "a\x00b"}, "NUL character"),
])
def test_an_edit_body_is_refused_with_a_reason_naming_the_field(raw, reason):
    with pytest.raises(InvalidBody, match=reason):
        editing.EditRequest.parse(raw)


def test_an_edit_names_every_unknown_field_before_any_bad_value():
    with pytest.raises(InvalidBody) as caught:
        editing.EditRequest.parse({"sku": "NEW", "name": "", "category": 3})
    assert str(caught.value) == "unknown or read-only field(s): category, sku (editable: name, description, price)"


def test_an_edit_names_the_first_bad_field_in_order():
    with pytest.raises(InvalidBody) as caught:
        editing.EditRequest.parse({"price": "abc", "description": "", "name": "n" * 501})
    assert str(caught.value) == "name is 501 characters; the limit is 500"


@pytest.mark.parametrize("price,reason", [
    ("NaN", "finite"), ("nan", "finite"), ("Infinity", "finite"), ("-Infinity", "finite"), ("sNaN", "finite"),
    (float("inf"), "finite"), (1e400, "finite"), ("1e400", "at most"),
])
def test_non_finite_and_huge_prices_are_refused(price, reason):
    with pytest.raises(InvalidBody, match=reason):
        editing.EditRequest.parse({"price": price})


@pytest.mark.parametrize("price", ["6_0", "1_000.00", "\u0661\u0660\u0660", "1,000", "$5"])
def test_a_price_text_that_is_not_decimal_notation_is_refused_not_reread(price):
    # Decimal() alone reads "6_0" as 60 and Arabic-Indic digits as 100: another price than meant.
    with pytest.raises(InvalidBody, match="price must be a number"):
        editing.EditRequest.parse({"price": price})


def test_a_stored_non_finite_price_is_shown_as_null_in_valid_json():
    import json
    from decimal import Decimal

    row = {"id": 3, "name": "Lamp", "sku": "L-1", "description": "d", "price": Decimal("NaN"), "category": "Outdoor"}
    shown = editing.product_json(row)
    assert shown["price"] is None
    json.dumps(shown, allow_nan=False)
    assert editing.product_json({**row, "price": Decimal("12.50")})["price"] == 12.5


def test_results_page_renders_a_result_without_a_price():
    from productsearch.search import SearchResult

    from frontend.searching import Page
    from frontend.ui_results import results_html

    result = SearchResult(id=3, name="Lamp", sku="L-1", description="d", price=None, category="Outdoor", score=0.5)
    page = Page(results=[result, SearchResult(**{**result.to_json(), "id": 4, "price": 1234.5})], page=1,
                page_size=10, has_more=False, capped=False)
    html = results_html(page)
    assert '<td class="num price">—</td>' in html and '<td class="num price">$1,234.50</td>' in html


def test_category_dropdown_offers_each_category_once_as_first_written():
    from frontend.ui_results import ANY_CATEGORY, category_choices

    assert category_choices(["Outdoor", "device", "outdoor", " OUTDOOR", "  "]) == [
        ("Any category", ANY_CATEGORY), ("Outdoor", "Outdoor"), ("device", "device")]


def test_an_edit_body_is_trimmed_and_normalised():
    from decimal import Decimal

    edit = editing.EditRequest.parse({"name": "  Lamp ", "price": " 12.5", "description": None})
    assert edit.changes == {"name": "Lamp", "price": Decimal("12.50")}
    assert editing.validate_product_id("42") == 42
    for bad in ("0", "-1", "1.5", "abc", str(2**63), True):
        with pytest.raises(editing.InvalidEdit):
            editing.validate_product_id(bad)


# -- the app on stand-in parts ---------------------------------------------------------------
class FakePool:
    def __init__(self, up: bool = True):
        self.up = up

    @contextlib.contextmanager
    def connection(self, timeout=None):
        if not self.up:
            raise TimeoutError("pool timeout")
        yield type("C", (), {"execute": lambda self, sql, *a: None})()


class FakeServices:
    def __init__(self, settings, model=(True, "loaded"), db_up=True):
        from frontend.services import login_throttle

        self.settings = settings
        self.model_state = model
        self.pool = FakePool(db_up)
        self.login_throttle = login_throttle(settings)
        self.index = None
        self.status = None

    @property
    def search(self):
        from frontend.services import NotReady

        if not self.model_state[0]:
            raise NotReady(f"the embedding model is {self.model_state[1]}")
        raise AssertionError("no index in these tests")

    def categories(self):
        return ["device"]

    def close(self):
        pass


@pytest.fixture
def client_for():
    from fastapi.testclient import TestClient

    from frontend.app import create_app

    def make(env=None, tuning=None, **kw):
        settings = FrontendSettings.from_env({**BASE_ENV, **(env or {})}, **(tuning or {}))
        return TestClient(create_app(FakeServices(settings, **kw)))

    return make


def test_editing_disabled_without_credentials(client_for):
    client = client_for()
    resp = client.put("/api/products/1", json={"description": "x"}, auth=("editor", "anything"))
    assert resp.status_code == 403 and "editing is disabled" in resp.json()["error"]
    assert "Editing is disabled" in client.get("/config").text


def test_edit_needs_credentials_before_anything_else(client_for):
    client = client_for({"EDITOR_USERNAME": "editor", "EDITOR_PASSWORD": "right-password"})
    resp = client.put("/api/products/abc", content=b"not json")
    assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Basic")
    resp = client.put("/api/products/abc", content=b"not json", auth=("editor", "wrong"))
    assert resp.status_code == 401 and resp.json() == {"error": "wrong username or password"}
    resp = client.put("/api/products/abc", content=b"{}", auth=("editor", "right-password"))
    assert resp.status_code == 400 and "product id" in resp.json()["error"]


@pytest.mark.parametrize("body,status,reason", [
    ({"sku": "NEW"}, 400, "unknown or read-only field(s): sku (editable: name, description, price)"),
    ({"price": "NaN"}, 400, "price must be a finite number"),
    ({"price": "\u0661\u0660\u0660"}, 400, "price must be a number, got '\u0661\u0660\u0660'"),
    ({"description": "x" * 20_000}, 400, "description is 20,000 characters; the limit is 10,000"),
    ({"name": True}, 400, "name must be a string"),
    ([], 400, "the edit must be a JSON object with name, description and/or price"),
    ({"price": "5"}, 428, "If-Match is required"),
])
def test_an_edit_body_is_read_before_its_precondition_and_refused_by_name(client_for, body, status, reason):
    client = client_for({"EDITOR_USERNAME": "editor", "EDITOR_PASSWORD": "right-password"})
    resp = client.put("/api/products/1", json=body, auth=("editor", "right-password"))
    assert resp.status_code == status and resp.json()["error"].startswith(reason), resp.json()


def test_healthz_waits_for_the_model_and_the_database(client_for):
    assert client_for().get("/healthz").json() == {"status": "ok", "model": "loaded", "database": "reachable"}
    loading = client_for(model=(False, "loading")).get("/healthz")
    assert loading.status_code == 503 and loading.json()["model"] == "loading"
    down = client_for(db_up=False).get("/healthz")
    assert down.status_code == 503 and down.json()["database"].startswith("unreachable")


def test_search_before_the_model_loads_is_503(client_for):
    resp = client_for(model=(False, "loading")).post("/api/search", json={"query": "lamp"})
    assert resp.status_code == 503 and "model is loading" in resp.json()["error"]


def test_login_throttle_is_a_sliding_window_per_client_and_bounded():
    from frontend.throttle import LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(max_failures=3, window_s=10, max_clients=2, clock=lambda: now[0])
    for t in (0, 4, 8):
        now[0] = t
        assert throttle.retry_after("a") is None
        throttle.failed("a")
    assert throttle.retry_after("a") == 2  # the failure at 0 leaves the window at 10
    assert throttle.retry_after("b") is None
    now[0] = 10.0
    assert throttle.retry_after("a") is None  # one slot free again
    throttle.failed("a")
    assert throttle.retry_after("a") == 4  # now the failure at 4 is the oldest
    throttle.succeeded("a")
    assert throttle.retry_after("a") is None
    for client in ("x", "y", "z"):
        throttle.failed(client)
    assert len(throttle._failures) == 2 and throttle.failures_total == 7


def test_too_many_wrong_passwords_get_429_with_retry_after(client_for, caplog):
    client = client_for({"EDITOR_USERNAME": "editor", "EDITOR_PASSWORD": "right-password"},
                        tuning={"logins": LoginThrottling(max_failures=2, window_seconds=60)})
    for _ in range(2):
        assert client.put("/api/products/1", json={"price": 1}, auth=("editor", "guess-123")).status_code == 401
    for auth in (("editor", "guess-123"), ("editor", "right-password")):
        resp = client.put("/api/products/1", json={"price": 1}, auth=auth)
        assert resp.status_code == 429 and "too many failed logins" in resp.json()["error"]
        assert 1 <= int(resp.headers["retry-after"]) <= 60
    failed = [r for r in caplog.records if r.getMessage() == "editor login failed"]
    assert len(failed) == 2 and failed[-1].client == "testclient" and failed[-1].failures_in_window == 2
    assert "guess-123" not in caplog.text


@pytest.mark.parametrize("value", ["10.0.0.0/33", "alb", "10.0.0.1;rm"])
def test_trusted_proxies_must_be_addresses_or_networks(value):
    with pytest.raises(ConfigError, match="FRONTEND_TRUSTED_PROXIES"):
        FrontendSettings.from_env({**BASE_ENV, "FRONTEND_TRUSTED_PROXIES": value})
    settings = FrontendSettings.from_env({**BASE_ENV, "FRONTEND_TRUSTED_PROXIES": "10.0.0.0/16, 192.168.1.7"})
    assert settings.uvicorn_options() == {"proxy_headers": True, "forwarded_allow_ips": "10.0.0.0/16,192.168.1.7/32"}
    assert FrontendSettings.from_env(BASE_ENV).uvicorn_options() == {"proxy_headers": False}


@pytest.mark.parametrize("name,description,price,reason", [
    (None, "d", "5", "name is empty"),
    ("Lamp", "   ", "5", "description is empty"),
    ("Lamp", "d", "", "price is empty"),
    ("Lamp", "d", "\u0661\u0660\u0660", "price must be a number"),
    ("Lamp", "d", "Infinity", "price must be a finite number"),
    ("n" * 501, "d", "5", "name is 501 characters; the limit is 500"),
])
def test_the_pages_save_refuses_with_the_api_edit_models_reason(name, description, price, reason):
    import json

    from frontend.ui_edit import EditHandlers

    settings = FrontendSettings.from_env({**BASE_ENV, "EDITOR_USERNAME": "editor", "EDITOR_PASSWORD": "right-password"})
    handlers = EditHandlers(FakeServices(settings))  # its pool answers no query: the refusal comes first
    loaded = json.dumps({"id": 3, "version": 7})
    message = handlers.save_bound(loaded, name, description, price, "editor", "right-password", None)[0]
    assert message.startswith(f"⚠️ {reason}") and message.endswith(". Nothing was saved."), message
