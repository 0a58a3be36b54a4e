"""Every relative link in the repository's Markdown resolves: the file exists and, for
a link into a Markdown file with a #fragment, a heading (GitHub's slug) or an explicit
`<a id="...">` anchor of that name is in it. Moving a section from one document to
another without its links following fails here. Also keeps the README and the
benchmarks page to the size that makes them readable in one sitting."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / f for f in out if (REPO / f).exists()]


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than - and _
    dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, in_code = set(), False
    text = path.read_text()
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#+\s+(.*)", line)):
            found.add(github_slug(m.group(1)))
    return found | set(re.findall(r'<a id="([^"]+)"', text))


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...
            continue
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / file_part) if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no such section)")
    return broken


def test_github_slug_matches_githubs_rule():
    assert github_slug("What ordering costs: FIFO against standard queues") == \
        "what-ordering-costs-fifo-against-standard-queues"
    assert github_slug("Current figures (`make bench`)") == "current-figures-make-bench"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    assert not broken_links(path), f"{path.relative_to(REPO)}: broken links {broken_links(path)}"


@pytest.mark.parametrize(("name", "most"), [("README.md", 160), ("docs/benchmarks.md", 250)])
def test_front_documents_stay_short(name, most):
    lines = len((REPO / name).read_text().splitlines())
    assert lines <= most, f"{name} has {lines} lines; move detail to the document it belongs in"
