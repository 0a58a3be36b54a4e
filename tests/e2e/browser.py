"""What the browser tests share: Debian's Chromium, its flags, and opening the page.

Playwright drives the system Chromium (`executable_path`), never a downloaded one:
this machine reaches no browser CDN. The `browser` fixture (conftest.py) launches it
once for the e2e package; each test gets its own context, so cookies and storage never
leak between tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Sandboxing needs user namespaces a CI container lacks; a GPU is absent headless; the
# rest stop Chromium from reaching the network or its profile on its own.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-dev-shm-usage", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 20_000
MARKS = [
    pytest.mark.stack,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium "
                       "(scripts/install-system-deps.sh installs it; `apt-get install chromium`)"),
]


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    """(context, page): a fresh context of `width` x `height` px on the page at `url`,
    once its search button is there. The caller closes the context."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url.rstrip("/") + "/")
    page.wait_for_selector("#search-btn")
    return context, page


def field(page, elem_id: str):
    """The input or textarea inside the Gradio component with `elem_id`."""
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def settle(page) -> None:
    """Lets the page render what the last answer changed (two frames and a moment)."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 50))))")


def answered(inputs: int):
    """A predicate for page.expect_response: the answer to a Gradio event posted with
    `inputs` values (so the status panel's timer, which posts too, is not mistaken for it)."""
    def match(response) -> bool:
        if "/gradio_api/run/" not in response.url:
            return False
        try:
            return len(json.loads(response.request.post_data or "{}").get("data") or []) == inputs
        except ValueError:
            return False
    return match
