"""`make up`: the flow that starts the whole local stack, loads the sample catalog
once, brings the index level with the table (a backfill, a reconcile or nothing,
depending on what was kept from before) and waits until search is complete.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import LiteralString

import psycopg
from tqdm import tqdm

from devstack.processes import REPO, http_ok, wait_for
from devstack.stack import DevStack
from productsearch import aws, onnx_export
from productsearch.index import ProductIndex
from productsearch.settings import EmbeddingSettings, IndexSettings



def up(stack: DevStack, catalog: Path, with_frontend: bool, settings_dir: Path = REPO / ".local") -> None:
    """Starts everything and returns when search is complete. settings_dir receives
    stack.env (every endpoint, for scripts and `make reconcile`) and editor.env."""
    stack.stop_all()
    stack.start_infrastructure()
    env = stack.app_env()
    existing = product_count(stack)
    if existing:
        # Reloading would overwrite edits made through the UI since the first `make up`.
        print(f"keeping the {existing} products already in the database", flush=True)
    else:
        print("loading the sample catalog ...", flush=True)
        stack.run_pelican("load-catalog", str(catalog))
    # Before pelican ships anything: every job then carries statistics fitted on the
    # whole table, so keyword and hybrid search weigh terms as BM25 does.
    print("fitting the keyword-search statistics ...", flush=True)
    stack.refit_lexical()
    if with_frontend:
        # The frontend embeds queries with ONNX Runtime. On a fresh machine the model is
        # exported (and checked against torch) once, here, before emu's backfill takes
        # the cores, rather than inside the frontend's start; later runs find it cached.
        print("preparing the frontend's query model (exported to ONNX on the first run only) ...", flush=True)
        problem = prepare_query_model(env)
        if not problem:
            print("the query model is ready", flush=True)
        else:
            print(f"{problem}\nwith EMBEDDING_RUNTIME=auto, the frontend's default, it embeds queries with torch "
                  "instead", flush=True)
    stack.start_app("pelican")
    stack.start_app("emu")
    editor = editor_credentials(settings_dir / "editor.env")
    if with_frontend:
        stack.start_app("frontend", editor)
    if uncaptured_rows(stack):
        if index_is_empty(stack):
            print("backfilling existing rows into the index ...", flush=True)
            stack.run_pelican("backfill")
        else:
            # The index kept its vectors across the restart: re-embed only rows it lacks or
            # holds stale, not the whole table.
            print("comparing the index with the table; re-syncing only the drift ...", flush=True)
            stack.run_pelican("reconcile", "--repair")
    else:
        # A fresh load is captured row by row by the triggers; a backfill would embed it all twice.
        print("every row is already waiting in the change log for pelican to ship; no backfill needed", flush=True)
    stack.write_env_file(settings_dir / "stack.env")
    wait_for_index(stack, timeout=1800)
    print(f"\nlogs: {stack.root / 'logs'}   settings: {settings_dir / 'stack.env'}")
    if with_frontend:
        wait_for("frontend", lambda: http_ok(f"http://127.0.0.1:{stack.frontend_port}/healthz"), timeout=180,
                  proc=stack.processes["frontend"], log=stack.log_path("frontend"))
        print(f"editor login (for edits in the UI): {editor['EDITOR_USERNAME']} / {editor['EDITOR_PASSWORD']}  ({settings_dir / 'editor.env'})")
        print(f"UI: http://127.0.0.1:{stack.frontend_port}/")
    else:
        print("frontend not started (apps/frontend not present)")


def prepare_query_model(env: Mapping[str, str]) -> str | None:
    """Makes sure the model the frontend embeds queries with is ready: for an ONNX
    runtime (EmbeddingSettings.for_queries), a verified export in the cache,
    made now if missing (productsearch.onnx_export.ensure_export: a child process, about
    a minute on 2 cores, once per model and versions). Returns None when ready (or
    when the runtime is torch: nothing to export), or why the export failed (the
    frontend's auto then falls back to torch). Raises ConfigError for a malformed
    EMBEDDING_* setting, which would stop the frontend too."""
    settings = EmbeddingSettings.for_queries(env)
    if settings.runtime == "torch":
        return None
    try:
        onnx_export.ensure_export(settings)
    except onnx_export.ExportError as exc:
        return str(exc)
    return None


def editor_credentials(path: Path) -> dict[str, str]:
    """A random local editor login, made once and kept, so edits are never unauthenticated."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"EDITOR_USERNAME=editor\nEDITOR_PASSWORD={secrets.token_urlsafe(12)}\n")
        path.chmod(0o600)
    return dict(line.split("=", 1) for line in path.read_text().split())


def _count(stack: DevStack, query: LiteralString) -> int:
    """The one number a ``SELECT count(*) ...`` *query* answers."""
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None  # an aggregate without GROUP BY answers one row
    return row[0]


def product_count(stack: DevStack) -> int:
    """Rows in the products table."""
    return _count(stack, "SELECT count(*) FROM products")


def uncaptured_rows(stack: DevStack) -> int:
    """Rows with no pending change: they reach the index only through a backfill
    (e.g. state kept under .local while the index was wiped)."""
    return _count(stack, "SELECT count(*) FROM products p WHERE NOT EXISTS "
                         "(SELECT 1 FROM product_changes c WHERE c.product_id = p.id)")


def index_is_empty(stack: DevStack) -> bool:
    """True when the index holds no product vectors."""
    return ProductIndex(IndexSettings.from_env(stack.env()), attempts=3).count() == 0


def wait_for_index(stack: DevStack, timeout: float) -> None:
    """Shows the index catching up with the table, so `make up` returns when search is complete."""
    rows = product_count(stack)
    index = ProductIndex(IndexSettings.from_env(stack.env()), attempts=3)
    sqs = stack.aws_client("sqs")
    deadline = time.monotonic() + timeout
    with tqdm(total=rows, unit="vectors", desc="indexing") as bar:
        while time.monotonic() < deadline:
            count = index.count()
            bar.update(max(0, min(count, rows) - bar.n))
            if count >= rows:
                pending = _count(stack, "SELECT count(*) FROM product_changes")
                depth = aws.queue_depth(sqs, stack.env()["SQS_QUEUE_URL"])
                if pending == 0 and depth["visible"] == 0 and depth["in_flight"] == 0:
                    return
            for name in ("pelican", "emu"):
                if stack.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited; see {stack.log_path(name)}")
            time.sleep(1)
    print("indexing is still going on in the background; the UI's status panel shows progress")
