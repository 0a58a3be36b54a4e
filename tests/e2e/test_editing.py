"""Browser tests of editing: headless Debian Chromium driven by Playwright against the
frontend on the real local stack. An edit is bound to the product and the version
its form loaded; a conflicting save shows the current state and offers a reload; an
editor opens a product from its result row, edits it there and sees it searchable."""

from __future__ import annotations

import re

import pytest

from tests.e2e import frontend_stack
from tests.e2e.browser import MARKS, TIMEOUT_MS, field, settle
from tests.e2e.frontend_stack import EDITOR

pytestmark = MARKS


@pytest.fixture(scope="module")
def front(stack):
    with frontend_stack.running(stack, rows=60) as f:
        yield f


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def wait_text(page, elem_id: str, pattern: str, timeout: float = TIMEOUT_MS) -> str:
    page.wait_for_function("([id, pattern]) => new RegExp(pattern).test(document.getElementById(id)?.innerText || '')",
                           arg=[elem_id, pattern], timeout=timeout)
    return text_of(page, elem_id)


def row(front, pid: int) -> dict:
    return front.parts.conn.execute("SELECT name, description, price, version FROM products WHERE id = %s",
                                    (pid,)).fetchone()


def load(page, pid: int) -> None:
    page.get_by_role("tab", name="Edit product").click()
    field(page, "edit-id").fill(str(pid))
    page.locator("#load-btn").click()
    wait_text(page, "edit-message", f"Loaded product #{pid}\\b")


def save(page, prefix: str = "edit", save_id: str = "save-btn") -> str:
    field(page, f"{prefix}-username").fill(EDITOR[0])
    field(page, f"{prefix}-password").fill(EDITOR[1])
    # The save's answer: the one event whose inputs carry the editor's password.
    with page.expect_response(lambda r: "/gradio_api/run/" in r.url and EDITOR[1] in (r.request.post_data or "")):
        page.locator(f"#{save_id}").click()
    settle(page)
    return text_of(page, f"{prefix}-message")


def test_a_save_writes_the_loaded_product_never_the_id_typed_since(page, front):
    a, b = front.product_ids[5], front.product_ids[6]
    b_before = row(front, b)
    load(page, a)
    field(page, "edit-id").fill(str(b))  # typed, not loaded
    field(page, "edit-price").fill("12.34")
    message = save(page)
    assert f"The form holds product #{a}" in message and "Nothing was saved" in message, message
    assert row(front, b) == b_before
    assert float(row(front, a)["price"]) != 12.34

    field(page, "edit-id").fill(str(a))  # the loaded product again: saved, at the version loaded
    assert f"Saved product #{a}" in save(page)
    assert float(row(front, a)["price"]) == 12.34 and row(front, b) == b_before


def test_a_conflicting_save_shows_the_current_state_and_reloads(page, front):
    pid = front.product_ids[7]
    load(page, pid)
    loaded_version = row(front, pid)["version"]
    # Another editor saves in between, through the API.
    other = front.edit(pid, {"name": "Renamed By Another Editor"})
    assert other.status == 200, other.body
    field(page, "edit-description").fill("My description, written from the old state")
    message = save(page)
    assert "changed by someone else" in message and "Nothing was saved" in message, message
    assert "Renamed By Another Editor" in message and str(other.body["version"]) in message
    current = row(front, pid)
    assert current["version"] == other.body["version"] != loaded_version
    assert current["description"] != "My description, written from the old state"

    page.locator("#edit-reload").click()
    page.wait_for_function("() => (document.querySelector('#edit-name input')?.value || '') === 'Renamed By Another Editor'")
    assert not page.locator("#edit-reload").is_visible()
    field(page, "edit-description").fill("My description, written from the current state")
    assert f"Saved product #{pid}" in save(page)
    saved = row(front, pid)
    assert saved["name"] == "Renamed By Another Editor"
    assert saved["description"] == "My description, written from the current state"


def test_an_editor_edits_a_result_in_place_and_sees_it_searchable(page, front):
    query = "wireless controller for gaming"
    field(page, "query").fill(query)
    page.locator("#search-btn").click()
    page.wait_for_selector("#results [data-id] .edit-result")
    assert page.locator("#results [data-id]").count() == page.locator("#results .edit-result").count()
    target = page.locator("#results [data-id]").nth(2)
    pid = int(target.get_attribute("data-id"))
    target.locator(".edit-result").click()
    wait_text(page, "result-edit-heading", f"Edit product #{pid}\\b")
    assert page.locator("#result-edit-heading").is_visible()
    assert field(page, "result-edit-name").input_value() == row(front, pid)["name"]

    new_text = "A hand-carved walnut chess set with felted pieces and a folding board"
    field(page, "result-edit-description").fill(new_text)
    assert f"Saved product #{pid}" in save(page, "result-edit", "result-edit-save")
    assert row(front, pid)["description"] == new_text
    wait_text(page, "result-edit-sync-message", "Searchable now", timeout=120_000)

    # Still the search page: the edited product is found by its new text.
    field(page, "query").fill("walnut chess set with a folding board")
    page.locator("#search-btn").click()
    page.wait_for_function("(pid) => document.querySelector('#results [data-id]')?.dataset.id === String(pid)", arg=pid)
    assert new_text in page.locator("#results [data-id]").first.inner_text()
    assert re.search(r"Edit", page.locator("#results [data-id]").first.inner_text())


def test_the_editor_opened_from_a_result_is_bound_to_that_version(page, front):
    field(page, "query").fill("innovative plug-and-play device")
    page.locator("#search-btn").click()
    page.wait_for_selector("#results [data-id] .edit-result")
    target = page.locator("#results [data-id]").nth(1)
    pid = int(target.get_attribute("data-id"))
    target.locator(".edit-result").click()
    wait_text(page, "result-edit-heading", f"Edit product #{pid}\\b")
    other = front.edit(pid, {"price": "77.70"})  # another editor, after the form loaded
    assert other.status == 200, other.body

    field(page, "result-edit-name").fill("Renamed From A Stale Form")
    message = save(page, "result-edit", "result-edit-save")
    assert "changed by someone else" in message and "Nothing was saved" in message, message
    assert row(front, pid)["name"] != "Renamed From A Stale Form"
    page.locator("#result-edit-reload").click()
    page.wait_for_function("() => (document.querySelector('#result-edit-price input')?.value || '') === '77.70'")
    field(page, "result-edit-name").fill("Renamed From The Current State")
    assert f"Saved product #{pid}" in save(page, "result-edit", "result-edit-save")
    saved = row(front, pid)
    assert saved["name"] == "Renamed From The Current State" and float(saved["price"]) == 77.70

    page.locator("#result-edit-close").click()
    page.wait_for_selector("#result-editor", state="hidden")
