"""Takes docs/images/search.png: the search page with results, in headless Debian
Chromium, against a running frontend. tests/e2e/test_search_page.py retakes it from
the test stack (the catalog's first 200 rows) and fails when the committed image
differs materially from the page; `UPDATE_SCREENSHOT=1` makes that test write it. By
hand, against any frontend (e.g. `make up`'s, whose full catalog ranks other rows):

    .venv/bin/python -m tests.e2e.take_screenshot http://127.0.0.1:7860 docs/images/search.png
"""

from __future__ import annotations

import sys

from playwright.sync_api import sync_playwright

from tests.e2e.browser import ARGS, CHROMIUM



def take(url: str, out: str, query: str = "wireless controller", price_max: str = "600") -> None:
    """Searches `query` under `price_max` on the page at `url` and writes a full-page
    PNG of 1280 px width to `out`, in a Chromium of its own."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        take_with(browser, url, out, query, price_max)
        browser.close()


def take_with(browser, url: str, out: str, query: str = "wireless controller", price_max: str = "600") -> None:
    """take() in a Playwright browser the caller has launched (a test's)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
    try:
        page.goto(url.rstrip("/") + "/")
        page.locator("#query input").fill(query)
        page.locator("#price-max input").fill(price_max)
        page.locator("#search-btn").click()
        page.wait_for_selector("#results tr.result")
        page.wait_for_selector("#facet-categories")
        # A focused box's caret and outline would change pixels between takes.
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.wait_for_timeout(500)
        page.screenshot(path=out, full_page=True, animations="disabled", caret="hide")
    finally:
        page.close()


def main(url: str, out: str, *rest: str) -> None:
    take(url, out, *rest)


if __name__ == "__main__":
    main(*sys.argv[1:])
