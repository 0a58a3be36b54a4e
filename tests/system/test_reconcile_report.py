"""What `make reconcile` prints and how it exits, against the real local parts: drift
is named plainly, with the first ids, and fails the command without make's
"Error" line (which reads as a crash); a clean comparison passes quietly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.stack


def make_reconcile(stack, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env_file = tmp_path / "stack.env"
    stack.write_env_file(env_file)
    return subprocess.run(["make", "--no-print-directory", "reconcile", f"STACK_ENV={env_file}", f"PY={sys.executable}",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def without_capture(parts, sql: str, params=()) -> None:
    """A write the triggers do not see: how drift gets in (restores, manual fixes)."""
    with parts.conn.transaction():
        parts.conn.execute("SET LOCAL session_replication_role = replica")
        parts.conn.execute(sql, params)


def test_make_reconcile_names_the_drift_and_fails_without_an_error_line(parts, stack, tmp_path):
    without_capture(parts, """INSERT INTO products (name, sku, description, price)
                              SELECT 'Ghost ' || g, 'ghost-' || g, 'never captured ' || g, 5
                              FROM generate_series(1, 25) g""")
    ids = [r["id"] for r in parts.conn.execute("SELECT id FROM products ORDER BY id").fetchall()]
    assert len(ids) == 25

    done = make_reconcile(stack, tmp_path)

    assert done.returncode != 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("drift found: 25 products differ between the table and the index"), done.stdout
    assert f"  missing (a row with no vector): 25: ids {', '.join(map(str, ids[:20]))} and 5 more" in lines
    assert lines[-1] == "missing=25 stale=0 orphaned=0"  # scripts read the last line
    assert "Error" not in done.stdout + done.stderr
    assert "drift found" in done.stderr and "make reconcile REPAIR=1" in done.stderr


def test_make_reconcile_passes_when_the_index_matches_the_table(parts, stack, tmp_path):
    (tmp_path / "reconcile.drift").write_text("")  # left by an earlier run with drift

    done = make_reconcile(stack, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["no drift: the index matches the table (0 rows, 0 vectors)",
                                        "missing=0 stale=0 orphaned=0"]
    assert "Error" not in done.stderr and "drift" not in done.stderr


def test_make_reconcile_reports_a_failure_as_make_does(stack, tmp_path):
    env_file = tmp_path / "stack.env"
    env_file.write_text("DATABASE_URL=postgresql://nobody@127.0.0.1:1/none\n")

    done = subprocess.run(["make", "--no-print-directory", "reconcile", f"STACK_ENV={env_file}",
                           f"PY={sys.executable}"], cwd=REPO, capture_output=True, text=True, timeout=300)

    assert done.returncode != 0
    assert "drift found" not in done.stdout + done.stderr
    assert "Error" in done.stderr  # a failure that is not drift is not dressed up as one
