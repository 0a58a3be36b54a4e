"""The edit form's events and layout, shared by the Edit product tab and the editor
opened from a result row: load, save, reload after a conflict, and the poll that says
when a saved edit is searchable.

Every handler is stateless: the product and version a form loaded, and the edit a
poll waits for, travel in hidden components with the browser, so any replica can
answer any click."""

from __future__ import annotations

import html
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from productsearch.documents import UnindexableProduct

from frontend import editing
from frontend.bodies import InvalidBody

log = logging.getLogger("frontend.ui")

SEARCHABLE_WAIT_S = 180.0


def _bound(raw: Any) -> tuple[int, int] | None:
    """The (id, version) of the product a form loaded, from its hidden state (JSON the
    browser sends back: any text); None when nothing valid was loaded."""
    try:
        state = json.loads(raw) if isinstance(raw, str) and raw else None
        if not isinstance(state, dict):
            return None
        return editing.validate_product_id(state.get("id")), editing.validate_version(state.get("version"))
    except (ValueError, RecursionError):  # InvalidEdit is a ValueError
        return None


def _current_state_text(row: dict[str, Any]) -> str:
    shown = editing.product_json(row)
    price = "no valid price" if shown["price"] is None else f"${shown['price']:,.2f}"
    description = shown["description"] if len(shown["description"]) <= 200 else shown["description"][:200] + "…"
    return f"**{html.escape(shown['name'])}**, {price}: {html.escape(description)}"


class EditHandlers:
    """The edit form's handlers, shared by the Edit product tab and the editor opened
    from a result row. Each edit is bound to the product the form loaded and the
    version it was loaded at (hidden state `loaded`, JSON {"id", "version"}): a save
    writes that product only while it still holds that version (editing.apply_edit),
    whatever the id box says now. Every handler answers bad input with a message in
    its outputs, never an exception: Gradio answers an exception with a 500."""

    def __init__(self, services):
        self.services = services
        self.settings = services.settings

    def load(self, raw_id: Any):
        """Outputs: name, description, price, message, loaded state, reload button."""
        keep = (gr.skip(), gr.skip(), gr.skip())
        try:
            pid = editing.validate_product_id(raw_id)
            row = editing.get_product(self.services.pool, pid)
        except (editing.InvalidEdit, editing.NotFound) as exc:
            return (*keep, f"⚠️ {exc}", gr.skip(), gr.skip())
        except Exception:
            log.exception("load product failed")
            return (*keep, "❌ The database did not answer. Try again shortly.", gr.skip(), gr.skip())
        loaded = json.dumps({"id": pid, "version": row["version"]})
        return (row["name"], row["description"], str(row["price"]),
                f"Loaded product #{pid} ({html.escape(row['sku'])}). Edit and save with the editor credentials.",
                loaded, gr.Button(visible=False))

    def reload(self, loaded_json: Any):
        """Loads the bound product again, at its current version (after a conflict)."""
        bound = _bound(loaded_json)
        if bound is None:
            return (gr.skip(), gr.skip(), gr.skip(), "⚠️ Load a product first.", gr.skip(), gr.skip())
        return self.load(bound[0])

    def save(self, raw_id: Any, loaded_json: Any, name: Any, description: Any, price: Any, username: Any,
             password: Any, request: gr.Request):
        """The Edit tab's save: the product in the id box must be the one loaded."""
        bound = _bound(loaded_json)
        if bound is not None and isinstance(raw_id, str) and raw_id.strip() and raw_id.strip() != str(bound[0]):
            return self._refused(f"⚠️ The form holds product #{bound[0]}, but the id box says {raw_id.strip()[:40]!r}. "
                                 f"Load that product first to edit it. Nothing was saved.")
        return self.save_bound(loaded_json, name, description, price, username, password, request)

    def save_bound(self, loaded_json: Any, name: Any, description: Any, price: Any, username: Any, password: Any,
                   request: gr.Request):
        """Outputs: message, sync message, edit state (what the poll waits for), poll
        timer, loaded state, reload button."""
        client = request.client.host if request is not None and request.client else None
        try:
            editor = editing.authenticate(self.settings.editor, username, password, client=client,
                                          throttle=self.services.login_throttle, source="ui")
        except editing.EditingDisabled as exc:
            return self._refused(f"⛔ {exc}. Nothing was saved.")
        except editing.Throttled as exc:
            return self._refused(f"⛔ {str(exc).capitalize()}. Nothing was saved.")
        except editing.Unauthorized:
            return self._refused("⛔ Wrong username or password. Nothing was saved.")
        bound = _bound(loaded_json)
        if bound is None:
            return self._refused("⚠️ Load a product first: an edit applies to the product and version it was "
                                 "loaded at. Nothing was saved.")
        pid, version = bound
        try:
            # The form always sends all three fields, so a missing one is empty, not "unchanged" as in the API.
            fields = {"name": name, "description": description, "price": price}
            edit = editing.EditRequest.parse({f: "" if value is None else value for f, value in fields.items()})
            result = editing.apply_edit(self.services.pool, pid, edit.changes, editor,
                                        self.settings.embedding.text_template, expected_version=version)
        except editing.Conflict as exc:
            return self._refused(
                f"⚠️ Product #{pid} was changed by someone else since you loaded it (version {version}, now "
                f"{exc.current['version']}). Nothing was saved. It now reads: {_current_state_text(exc.current)}. "
                "Press Reload to edit the current state; your changes stay in the form until you do.",
                reload=True)
        except (InvalidBody, editing.InvalidEdit, editing.NotFound, UnindexableProduct) as exc:
            return self._refused(f"⚠️ {exc}. Nothing was saved.")
        except Exception:
            log.exception("edit failed")
            return self._refused("❌ The database did not answer. Nothing was saved; try again shortly.")
        loaded = json.dumps({"id": pid, "version": result.current_version})
        if result.version is None:
            return (f"Product #{pid} already has these values; nothing to save.", "", "", gr.Timer(active=False),
                    loaded, gr.Button(visible=False))
        state = json.dumps({"id": pid, "version": result.version, "saved_at": time.time()})
        return (f"✅ Saved product #{pid} ({', '.join(result.changed)}).",
                "⏳ Waiting for the change to reach the index…", state, gr.Timer(active=True), loaded,
                gr.Button(visible=False))

    @staticmethod
    def _refused(message: str, reload: bool = False):
        return (message, "", "", gr.Timer(active=False), gr.skip(), gr.Button(visible=True) if reload else gr.skip())

    def poll(self, state_json: Any):
        """Outputs: sync message, edit state, poll timer."""
        try:
            state = json.loads(state_json)
            pid = editing.validate_product_id(state["id"])
            version = editing.validate_version(state["version"])
            saved_at = float(state["saved_at"])
            if not math.isfinite(saved_at):
                raise ValueError("saved_at is not finite")
        except (ValueError, TypeError, KeyError, RecursionError):
            return "", "", gr.Timer(active=False)
        waited = max(0.0, time.time() - saved_at)
        try:
            sync = editing.sync_state(self.services.index, self.services.pool, pid,
                                      self.settings.embedding.text_template, version)
        except Exception as exc:
            log.warning("sync check failed", extra={"product_id": pid, "error_type": type(exc).__name__})
            sync = None
        if sync is not None and sync.searchable:
            return (f"🔎 Searchable now: product #{pid} is in the index at version {sync.indexed_version} "
                    f"({waited:.0f} s after saving).", "", gr.Timer(active=False))
        if waited > SEARCHABLE_WAIT_S:
            return (f"⚠️ Not searchable after {waited:.0f} s. The change is saved; see the Sync status tab.",
                    "", gr.Timer(active=False))
        return f"⏳ Waiting for the change to reach the index… ({waited:.0f} s)", state_json, gr.Timer(active=True)

    def open_result(self, raw_id: Any):
        """Opens the editor under the results for the product of a result row.
        Outputs: the editor group, its heading, then load's outputs."""
        name, description, price, message, loaded, reload_btn = self.load(raw_id)
        if not isinstance(loaded, str):
            return (gr.Group(visible=True), "", name, description, price, message, loaded, reload_btn)
        pid = json.loads(loaded)["id"]
        return (gr.Group(visible=True), f"### Edit product #{pid}", name, description, price, message, loaded,
                reload_btn)


@dataclass
class EditForm:
    """The components of one edit form (edit_form); `prefix` names their elem_ids."""

    name: gr.Textbox
    description: gr.Textbox
    price: gr.Textbox
    username: gr.Textbox
    password: gr.Textbox
    save: gr.Button
    reload: gr.Button
    message: gr.Markdown
    sync_message: gr.Markdown
    edit_state: gr.Textbox  # the saved edit the poll waits for
    loaded: gr.Textbox  # the product and version the form holds: {"id", "version"}
    timer: gr.Timer

    @property
    def load_outputs(self) -> list:
        return [self.name, self.description, self.price, self.message, self.loaded, self.reload]

    @property
    def save_inputs(self) -> list:
        return [self.loaded, self.name, self.description, self.price, self.username, self.password]

    @property
    def save_outputs(self) -> list:
        return [self.message, self.sync_message, self.edit_state, self.timer, self.loaded, self.reload]


def edit_form(prefix: str, enabled: bool) -> EditForm:
    """The fields, credentials, buttons and messages of an edit form, laid out where
    it is called (inside a gr.Blocks context)."""
    name = gr.Textbox(label="Name", max_lines=1, elem_id=f"{prefix}-name")
    description = gr.Textbox(label="Description", lines=4, elem_id=f"{prefix}-description")
    price = gr.Textbox(label="Price", max_lines=1, elem_id=f"{prefix}-price")
    with gr.Row():
        username = gr.Textbox(label="Editor username", max_lines=1, elem_id=f"{prefix}-username")
        password = gr.Textbox(label="Editor password", type="password", max_lines=1, elem_id=f"{prefix}-password")
    with gr.Row():
        save = gr.Button("Save", variant="primary", interactive=enabled, elem_id=f"{prefix}-save" if prefix != "edit" else "save-btn")
        reload = gr.Button("Reload", visible=False, elem_id=f"{prefix}-reload")
    message = gr.Markdown(elem_id=f"{prefix}-message")
    sync_message = gr.Markdown(elem_id=f"{prefix}-sync-message" if prefix != "edit" else "sync-message")
    edit_state = gr.Textbox(visible=False)
    loaded = gr.Textbox(visible=False)
    timer = gr.Timer(1.0, active=False)
    return EditForm(name, description, price, username, password, save, reload, message, sync_message, edit_state,
                    loaded, timer)


def wire_edit_form(edit: EditHandlers, form: EditForm, opts: dict[str, Any], api_prefix: str) -> None:
    """The events every edit form shares: Reload (after a conflict) and the poll that
    says when the saved edit is searchable."""
    form.reload.click(edit.reload, [form.loaded], form.load_outputs, api_name=f"{api_prefix}_reload", **opts)
    form.timer.tick(edit.poll, [form.edit_state], [form.sync_message, form.edit_state, form.timer],
                    api_name="ui_poll_edit" if api_prefix == "ui" else f"{api_prefix}_poll", queue=False,
                    show_progress="hidden")


def close_editor():
    """The result editor's Close button: hides the editor."""
    return gr.Group(visible=False)

