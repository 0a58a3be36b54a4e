"""The browser tests' shared Chromium, launched once for this package (see browser.py), and
a fresh page on the module's frontend (each module's `front` fixture) for every test."""

from __future__ import annotations

import pytest

from tests.e2e.browser import ARGS, CHROMIUM, open_page


# Package scope, not session: sync Playwright keeps an event loop running until it
# stops, and later packages call asyncio.run().
@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, front):
    context, pg = open_page(browser, front.url)
    yield pg
    context.close()
