"""`make up`'s own logic (devstack.up.up) on a small catalog, with a stack of its
own: the first start loads and indexes the catalog; a restart keeps the table and
its edits and re-embeds only the rows the index lacks or holds stale."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from devstack.stack import DevStack, free_port, started_index_api
from devstack.up import prepare_query_model, up
from productsearch import db
from productsearch.index import ProductIndex
from productsearch.documents import indexed_text, text_hash
from productsearch.settings import DEFAULT_TEXT_TEMPLATE, IndexSettings
from tests.conftest import REPO

pytestmark = pytest.mark.stack


def small_catalog(path: Path, rows: int = 12) -> Path:
    with open(REPO / "apps" / "pelican" / "catalog" / "products.csv", newline="", encoding="utf-8") as src, \
            open(path, "w", newline="", encoding="utf-8") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        for i, row in enumerate(reader):
            if i > rows:
                break
            writer.writerow(row)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("index_api", ["vectors", "documents"])
def test_up_indexes_the_catalog_then_a_restart_resyncs_only_the_drift(capfd, index_api):
    """On either Pinecone API (`PINECONE_INDEX_API=documents make up` runs on a document index)."""
    root = Path(tempfile.mkdtemp(prefix="productsearch-up-"))
    os.chmod(root, 0o755)  # PostgreSQL runs as the postgres user when the tests run as root
    stack = DevStack(root=root / "stack", pg_port=free_port(), aws_port=free_port(), index_port=free_port(),
                     frontend_port=free_port(), index_api=index_api)
    catalog = small_catalog(root / "catalog.csv")
    with open(catalog, "a", encoding="utf-8") as handle:  # line 14: a price that is not one, skipped with a warning
        handle.write("Broken Row,SKU-BROKEN-1,no price,not-a-price,2023-09-20 22:51:32\n")
    settings_dir = root / "settings"
    try:
        up(stack, catalog, with_frontend=False, settings_dir=settings_dir)
        first = "".join(capfd.readouterr())  # its own lines and its commands' (stdout and stderr)
        assert "loading the sample catalog" in first and "no backfill needed" in first
        # The commands it runs log in text for the terminal; the services it starts keep JSON in their log files.
        # Each prints its result once: no INFO log line repeats it, and nothing is JSON.
        assert "lexical statistics refitted: 12 products" in first and "statistics refitted  documents=" not in first
        assert "schema migrated (applied now: 000_baseline.sql)" in first
        assert not [line for line in first.splitlines() if line.startswith("{")]
        assert "warning productsearch.catalog: skipping bad catalog row  line=14 reason=" in first
        service_lines = stack.log_path("pelican").read_text().splitlines()
        assert service_lines and all(json.loads(line)["logger"] for line in service_lines if line.startswith("{"))
        assert any(line.startswith("{") for line in service_lines)
        assert stat.S_IMODE((settings_dir / "editor.env").stat().st_mode) == 0o600
        written = (settings_dir / "stack.env").read_text()
        assert f"PINECONE_HOST={stack.index_host}\n" in written and f"PINECONE_INDEX_API={index_api}\n" in written
        assert started_index_api(settings_dir / "stack.env") == index_api  # what `make status` reads back
        index = ProductIndex(IndexSettings.from_env(stack.env()), attempts=3)
        assert index.count() == 12
        with db.connect(stack.database_url) as conn:
            ids = [r["id"] for r in conn.execute("SELECT id FROM products ORDER BY id").fetchall()]
        versions = {i: v.metadata["version"] for i, v in index.fetch([str(i) for i in ids]).items()}
        stack.stop_all()  # make down

        # Drift while the apps are down: a row edited behind the triggers, a vector lost.
        stack.start_postgres()
        stack.start_index()
        with db.connect(stack.database_url) as conn, conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("UPDATE products SET description = 'edited while the stack was down' WHERE id = %s", (ids[0],))
        index.delete_ids([str(ids[1])])
        stack.stop_all()

        up(stack, catalog, with_frontend=False, settings_dir=settings_dir)
        second = "".join(capfd.readouterr())
        assert "keeping the 12 products already in the database" in second
        assert "re-syncing only the drift" in second and "backfilling" not in second
        index = ProductIndex(IndexSettings.from_env(stack.env()), attempts=3)
        assert index.count() == 12
        after = index.fetch([str(i) for i in ids])
        with db.connect(stack.database_url) as conn:
            edited = conn.execute("SELECT * FROM products WHERE id = %s", (ids[0],)).fetchone()
        assert edited["description"] == "edited while the stack was down"
        assert after[str(ids[0])].metadata["text_hash"] == text_hash(indexed_text(edited, DEFAULT_TEXT_TEMPLATE))
        assert str(ids[1]) in after
        untouched = {i: after[i].metadata["version"] for i in versions if i not in (str(ids[0]), str(ids[1]))}
        assert untouched == {i: versions[i] for i in untouched}, "a restart re-embedded rows that had not changed"
    finally:
        stack.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def test_the_query_model_is_exported_for_onnx_only_and_a_failed_export_is_reported(tmp_path):
    cache = tmp_path / "cache"
    assert prepare_query_model({"EMBEDDING_RUNTIME": "torch", "EMBEDDING_CACHE_DIR": str(cache)}) is None
    assert not cache.exists(), "a torch runtime needs no export"
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    problem = prepare_query_model({"EMBEDDING_CACHE_DIR": str(cache), "EMBEDDING_MODEL_PATH": str(broken)})
    assert problem is not None and "the ONNX export of" in problem and "failed" in problem
