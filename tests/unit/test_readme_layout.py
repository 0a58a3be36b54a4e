"""The README's layout table matches the tree: every path it names exists, and every
top-level folder of the repository is in it (a folder added or moved without the
table following fails here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def layout_rows() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def named_paths(rows: list[str]) -> list[str]:
    # Only the first column names paths; the second may quote file names in prose.
    return [p for row in rows for p in re.findall(r"`([^`]+)`", row.split(" | ", 1)[0])]


def tracked_top_level_folders() -> set[str]:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return {f.split("/", 1)[0] for f in files if "/" in f and not f.startswith(".")}


def test_every_path_in_the_layout_table_exists():
    paths = named_paths(layout_rows())
    assert len(paths) >= 10, paths
    missing = [p for p in paths if not (REPO / p.rstrip("/")).exists()]
    assert not missing, f"README's layout table names paths that do not exist: {missing}"


def test_every_top_level_folder_is_in_the_layout_table():
    listed = {p.rstrip("/").split("/", 1)[0] for p in named_paths(layout_rows())}
    unlisted = sorted(tracked_top_level_folders() - listed)
    assert not unlisted, f"top-level folders missing from README's layout table: {unlisted}"
