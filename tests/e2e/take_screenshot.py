"""Takes docs/images/search.png: the search page with results, in headless Debian
Chromium, against a running frontend (e.g. `make up`, which loads the sample catalog).

    .venv/bin/python -m tests.e2e.take_screenshot http://127.0.0.1:7860 docs/images/search.png
"""

from __future__ import annotations

import sys

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-dev-shm-usage", "--no-first-run"]


def main(url: str, out: str, query: str = "wireless controller", price_max: str = "600") -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
        page.goto(url.rstrip("/") + "/")
        page.locator("#query input").fill(query)
        page.locator("#price-max input").fill(price_max)
        page.locator("#search-btn").click()
        page.wait_for_selector("#results tr.result")
        page.wait_for_timeout(500)
        page.screenshot(path=out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
