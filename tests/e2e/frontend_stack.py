"""The frontend against the real local parts, started once per test module (model
loads cost seconds per process on two cores): the first rows of the sample catalog
loaded into Postgres, pelican and emu syncing them into the index, the frontend
serving with editor credentials. Used by tests/system/test_frontend_api.py and the
browser tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack.waiting import wait_until
from tests.conftest import REPO

CATALOG = REPO / "apps" / "pelican" / "catalog" / "products.csv"
EDITOR = ("editor", "correct-horse-battery")
FAST = {"poll_interval_seconds": 1}  # options of `pelican run`


@dataclass
class Http:
    status: int
    body: dict
    headers: dict


def request(url: str, method: str = "GET", body: object = None, *, raw: bytes | None = None,
            auth: tuple[str, str] | None = None, timeout: float = 30.0, headers: dict[str, str] | None = None) -> Http:
    import base64

    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    if auth is not None:
        req.add_header("authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Http(resp.status, json.loads(resp.read() or b"{}"), {k.lower(): v for k, v in resp.headers.items()})
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = {"_raw": text.decode(errors="replace")}
        return Http(exc.code, parsed, {k.lower(): v for k, v in exc.headers.items()})


class FrontendStack:
    def __init__(self, stack, parts, product_ids: list[int]):
        self.stack, self.parts, self.product_ids = stack, parts, product_ids
        self.url = stack.env()["FRONTEND_URL"]

    def api(self, path: str, method: str = "GET", body: object = None, **kw) -> Http:
        return request(self.url + path, method, body, **kw)

    def search(self, query: str, top_k: int = 10, filters: dict | None = None, mode: str | None = None) -> list[dict]:
        body = {"query": query, "top_k": top_k}
        if filters is not None:
            body["filters"] = filters
        if mode is not None:
            body["mode"] = mode
        resp = self.api("/api/search", "POST", body)
        assert resp.status == 200, resp.body
        return resp.body["results"]

    def edit(self, product_id: int, changes: dict, auth: tuple[str, str] = EDITOR) -> Http:
        """PUT the changes as an editor does: bound to the state a GET just read (its ETag in If-Match)."""
        read = self.api(f"/api/products/{product_id}")
        assert read.status == 200, read.body
        return self.api(f"/api/products/{product_id}", "PUT", changes, auth=auth, headers={"If-Match": read.headers["etag"]})

    def wait_searchable(self, product_id: int, version: int, timeout: float = 90.0) -> None:
        wait_until(lambda: self.api(f"/api/products/{product_id}/sync?version={version}").body.get("searchable"),
                   timeout, interval=0.5, what=f"product {product_id} searchable at version {version}")


def start(stack, rows: int = 200, editor: tuple[str, str] | None = EDITOR,
          frontend_env: dict[str, str] | None = None, frontend_options: dict[str, object] | None = None
          ) -> FrontendStack:
    """Resets the parts, loads `rows` catalog rows and starts pelican, emu and the
    frontend; returns when every row is in the index and /healthz answers 200."""
    from productsearch.catalog import load_catalog
    from tests.system.conftest import Parts

    parts = Parts(stack)
    parts.reset()
    lines = CATALOG.read_text(encoding="utf-8").splitlines()[: rows + 1]
    subset = Path(stack.root) / f"catalog-{rows}.csv"
    subset.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = load_catalog(parts.conn, subset)
    assert report.loaded == rows, report.summary()
    ids = [r["id"] for r in parts.conn.execute("SELECT id FROM products ORDER BY id").fetchall()]
    stack.refit_lexical()  # as `make up` does: keyword statistics fitted before pelican ships

    env = {"EDITOR_USERNAME": editor[0], "EDITOR_PASSWORD": editor[1]} if editor else {}
    env.update(frontend_env or {})
    stack.start_app("frontend", env, options=frontend_options)  # first: its model load overlaps emu's
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")
    started = time.monotonic()
    front = FrontendStack(stack, parts, ids)
    try:
        wait_until(lambda: parts.index.count() == rows, 180, interval=0.5, what=f"{rows} catalog rows indexed")
        wait_until(lambda: parts.pending_changes() == 0, 60, what="change log drained")
        wait_until(lambda: _healthy(front), 120, interval=0.3, what="frontend /healthz 200")
    except TimeoutError as exc:
        stop(front)
        raise AssertionError(f"{exc}\n{_log_tails(stack)}") from None
    print(f"frontend stack ready in {time.monotonic() - started:.1f}s")
    return front


def _healthy(front: FrontendStack) -> bool:
    proc = front.stack.processes.get("frontend")
    if proc is not None and proc.poll() is not None:
        raise AssertionError("frontend exited:\n" + front.stack.log_path("frontend").read_text()[-3000:])
    try:
        return front.api("/healthz", timeout=3).status == 200
    except OSError:
        return False


def _log_tails(stack, names=("pelican", "emu", "frontend", "index")) -> str:
    out = []
    for name in names:
        path = stack.log_path(name)
        if path.exists():
            out.append(f"--- {name}.log (tail) ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(out)


def stop(front: FrontendStack) -> None:
    for name in ("frontend", "emu", "pelican"):
        front.stack.stop(name, timeout=20)
    front.parts.conn.close()


@contextmanager
def running(stack, rows: int = 200, **options) -> Iterator[FrontendStack]:
    """start() for the length of a with block (options as start takes them), then stop()."""
    front = start(stack, rows, **options)
    try:
        yield front
    finally:
        stop(front)


@contextmanager
def on_document_index(stack, rows: int = 80) -> Iterator[FrontendStack]:
    """running() on a document index (PINECONE_INDEX_API=documents) that the session's
    index server creates beside its legacy one; the stack points back at the legacy
    index afterwards, whatever happened."""
    from devstack.stack import PRODUCTS_INDEX

    stack.index_api = "documents"
    try:
        stack.create_document_index(PRODUCTS_INDEX)
        with running(stack, rows) as front:
            yield front
    finally:
        stack.index_api = "vectors"
