"""The browser tests' shared Chromium, launched once per session (see browser.py)."""

from __future__ import annotations

import pytest

from tests.e2e.browser import ARGS, CHROMIUM


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()
