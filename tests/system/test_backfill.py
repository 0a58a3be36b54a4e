"""A 10,000-row backfill through the real pipeline leaves the index equal to the table."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devstack.waiting import wait_until

pytestmark = pytest.mark.stack

CATALOG = Path(__file__).resolve().parents[2] / "apps" / "pelican" / "catalog" / "products.csv"


@pytest.mark.slow
def test_ten_thousand_row_backfill_makes_the_index_equal_the_table(parts, stack, embedder):
    with parts.conn.transaction():
        parts.conn.execute("SET LOCAL session_replication_role = replica")  # rows that exist before any sync
        loaded = subprocess.run([sys.executable, "-m", "pelican", "load-catalog", str(CATALOG)], env=stack.app_env(),
                                capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and "loaded=9999" in loaded.stdout, loaded.stderr
    parts.conn.execute("DELETE FROM product_changes")  # backfill alone must bring them over
    parts.insert("Extra Widget", "the ten thousandth product", 10)
    total = parts.conn.execute("SELECT count(*) AS n FROM products").fetchone()["n"]
    assert total == 10_000

    stack.start_app("pelican")
    stack.start_app("emu", {"EMBEDDING_BATCH_SIZE": "128"})
    done = subprocess.run([sys.executable, "-m", "pelican", "backfill"], env=stack.app_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: parts.index.count() == 10_000 and parts.pending_changes() == 0, 900, interval=2, what="10,000 vectors")

    deleted = [r["id"] for r in parts.conn.execute("SELECT id FROM products ORDER BY random() LIMIT 25").fetchall()]
    parts.conn.execute("DELETE FROM products WHERE id = ANY(%s)", (deleted,))
    wait_until(lambda: parts.index.count() == 9_975, 120, what="deleted rows removed")

    reconciled = subprocess.run([sys.executable, "-m", "pelican", "reconcile"], env=stack.app_env(), capture_output=True, text=True, timeout=600)
    assert reconciled.stdout.strip().splitlines()[-1] == "missing=0 stale=0 orphaned=0", reconciled.stdout + reconciled.stderr
    assert all(v is None for v in map(parts.vector, deleted))

    # Every id is present (reconcile); the vectors are the current text's embeddings (a random sample).
    rows = parts.conn.execute("SELECT id, name, description FROM products").fetchall()
    sample = random.Random(7).sample(rows, 500)
    found = {}
    for start in range(0, 500, 100):
        found.update(parts.index.fetch([str(r["id"]) for r in sample[start:start + 100]]))
    expected = embedder.embed([f"{r['name']} {r['description']}".strip() for r in sample])
    actual = np.array([found[str(r["id"])].values for r in sample], dtype=np.float32)
    cosine = (expected * actual).sum(axis=1)
    assert cosine.min() > 0.9999, f"worst cosine {cosine.min()}"
