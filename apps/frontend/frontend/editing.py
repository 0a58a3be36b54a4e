"""Authenticated edits of a product's name, description and price, addressed by
primary key. The UPDATE fires the change-capture trigger in the same transaction,
so the edit reaches the index through pelican and emu like any other change; the
version the UPDATE stamps on the row is the index version at which the edit is
searchable.

An edit is bound to the state it was read from: reading a product returns the row's
version (its entity tag, `etag`), and an edit that names a version (`expected_version`)
is written only while the row still holds it. The check and the write happen under
the row's lock in one transaction, so a second editor's save in between is a
Conflict carrying the current state, never a silent overwrite."""

from __future__ import annotations

import hmac
import logging
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from pydantic import field_validator, model_validator

from productsearch import products
from productsearch.catalog import MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS  # an edit meets the loader's limits
from productsearch.documents import (UnindexableProduct, check_text_size, decimal_from_text, finite_price, indexed_text,
                                     is_ascii_digits, is_current, metadata)

from frontend.bodies import RequestBody
from frontend.config import EditorCredentials
from frontend.throttle import LoginThrottle

log = logging.getLogger("frontend.editing")

MAX_PRICE = Decimal("9999999999.99")  # numeric(12,2)
MAX_PRODUCT_ID = 2**63 - 1
EDITABLE = ("name", "description", "price")


class InvalidEdit(ValueError):
    """The edit is malformed; the message is safe to show."""


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    """The row changed since the editor read it; `current` is the row as it is now
    (with its version), for the editor to reload."""

    def __init__(self, product_id: int, expected_version: int, current: dict[str, Any]):
        super().__init__(f"product {product_id} changed since it was read (version {expected_version}; "
                         f"now version {current['version']}); nothing was saved")
        self.current = current


class EditingDisabled(RuntimeError):
    pass


class Unauthorized(PermissionError):
    pass


class Throttled(PermissionError):
    """Too many failed logins from this client; retry_after_s says when it may try again."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def authenticate(credentials: EditorCredentials | None, username: Any, password: Any, *,
                 client: str | None = None, throttle: LoginThrottle | None = None, source: str = "api") -> str:
    """Returns the username, or raises EditingDisabled, Throttled or Unauthorized.

    With a throttle, a client (its address) that failed too often lately is refused
    before the credentials are looked at, so even the right password waits out the
    window; each failure is logged as `editor login failed` with the client. Both
    values are compared in constant time, and both always, so timing tells nothing
    about which one was wrong."""
    if credentials is None:
        raise EditingDisabled("editing is disabled: EDITOR_USERNAME and EDITOR_PASSWORD are not configured")
    client = client or "unknown"
    if throttle is not None:
        wait_s = throttle.retry_after(client)
        if wait_s is not None:
            log.warning("editor login throttled", extra={"client": client, "source": source, "retry_after_s": wait_s})
            raise Throttled(wait_s)
    given_user = (username if isinstance(username, str) else "").encode("utf-8", "surrogatepass")
    given_pass = (password if isinstance(password, str) else "").encode("utf-8", "surrogatepass")
    user_ok = hmac.compare_digest(given_user, credentials.username.encode())
    pass_ok = hmac.compare_digest(given_pass, credentials.password.get_secret_value().encode())
    if not (user_ok and pass_ok):
        recent = throttle.failed(client) if throttle is not None else None
        log.warning("editor login failed", extra={
            "client": client, "source": source, "failures_in_window": recent,
            "failures_total": throttle.failures_total if throttle is not None else None})
        raise Unauthorized("wrong username or password")
    if throttle is not None:
        throttle.succeeded(client)
    return credentials.username


def validate_product_id(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidEdit("product id must be a positive integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and is_ascii_digits(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or not 1 <= value <= MAX_PRODUCT_ID:
        raise InvalidEdit(f"product id must be a positive integer, got {value!r}")
    return value


MAX_VERSION = 2**63 - 1  # products.version is a bigint


def validate_version(value: Any) -> int:
    """A row version as an editor sends it back: an int, or ASCII decimal digits
    (str.isdigit also takes superscripts and other scripts' digits). InvalidEdit otherwise."""
    if isinstance(value, str) and is_ascii_digits(value.strip()) and len(value.strip()) <= 19:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VERSION:
        raise InvalidEdit(f"version must be a non-negative integer, got {str(value)[:40]!r}")
    return value


def etag(version: int) -> str:
    """The strong entity tag of a row state (RFC 9110, 8.8.3): its version, quoted."""
    return f'"{version}"'


def parse_if_match(header: str) -> int | None:
    """The version an If-Match header names: one strong entity tag as `etag` writes
    it, or `*` (any current state: None). A weak tag (W/"...") never matches, since
    If-Match compares strongly (RFC 9110, 13.1.1). Raises InvalidEdit for anything
    else, a list of several tags included: an edit is bound to one state."""
    value = header.strip()
    if value == "*":
        return None
    if value.startswith("W/"):
        raise InvalidEdit("If-Match must be a strong entity tag as GET returned it (a weak one never matches)")
    if len(value) < 3 or value[0] != '"' or value[-1] != '"':
        raise InvalidEdit(f'If-Match must be one entity tag as GET returned it, like "123", got {value[:40]!r}')
    try:
        return validate_version(value[1:-1])
    except InvalidEdit:
        raise InvalidEdit(f'If-Match must be one entity tag as GET returned it, like "123", got {value[:40]!r}') from None


def _text(value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidEdit(f"{field} must be a string")
    text = value.strip()
    if not text:
        raise InvalidEdit(f"{field} is empty")
    if len(text) > limit:
        raise InvalidEdit(f"{field} is {len(text):,} characters; the limit is {limit:,}")
    if "\x00" in text:
        raise InvalidEdit(f"{field} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEdit(f"{field} is not valid Unicode text (it holds a lone surrogate)") from None
    return text


def _price(value: Any) -> Decimal:
    if isinstance(value, str) and not value.strip():
        raise InvalidEdit("price is empty")
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise InvalidEdit("price must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEdit("price must be a finite number")
    try:
        price = decimal_from_text(str(value))
    except InvalidOperation:
        raise InvalidEdit(f"price must be a number, got {value!r}") from None
    if not price.is_finite():
        raise InvalidEdit("price must be a finite number")
    if price < 0:
        raise InvalidEdit(f"price must not be negative, got {value}")
    if price > MAX_PRICE:
        raise InvalidEdit(f"price must be at most {MAX_PRICE}")
    if price != price.quantize(Decimal("0.01")):
        raise InvalidEdit(f"price has more than two decimal places: {value}")
    return price.quantize(Decimal("0.01"))


class EditRequest(RequestBody):
    """An edit: the body of PUT /api/products/{id}, and what the page's edit form
    saves. Any of name, description and price, at least one; a field left out or null
    stays as it is. Texts are trimmed (name up to MAX_NAME_CHARS, description up to
    MAX_DESCRIPTION_CHARS characters); price is a non-negative number with at most two
    decimals (or a string holding one, in documents.decimal_from_text's notation), at
    most MAX_PRICE. `parse` raises bodies.InvalidBody naming the field."""

    not_an_object: ClassVar[str] = "the edit must be a JSON object with name, description and/or price"
    unknown_fields: ClassVar[str] = "unknown or read-only field(s)"
    allowed_fields: ClassVar[str] = "editable"

    name: str | None = None
    description: str | None = None
    price: Decimal | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _valid_name(cls, value: Any) -> str | None:
        return None if value is None else _text(value, "name", MAX_NAME_CHARS)

    @field_validator("description", mode="before")
    @classmethod
    def _valid_description(cls, value: Any) -> str | None:
        return None if value is None else _text(value, "description", MAX_DESCRIPTION_CHARS)

    @field_validator("price", mode="before")
    @classmethod
    def _valid_price(cls, value: Any) -> Decimal | None:
        return None if value is None else _price(value)

    @model_validator(mode="after")
    def _changes_something(self) -> EditRequest:
        if not self.changes:
            raise InvalidEdit("nothing to change: give name, description and/or price")
        return self

    @property
    def changes(self) -> dict[str, Any]:
        """The fields to change (of EDITABLE) and their checked values, for apply_edit."""
        return {field: value for field in EDITABLE if (value := getattr(self, field)) is not None}


@dataclass(frozen=True)
class EditResult:
    product: dict[str, Any]
    changed: list[str]
    version: int | None  # the row's version after the edit; None when nothing changed
    current_version: int  # the row's version now: the edit's, or the one it already had

    def to_json(self) -> dict[str, Any]:
        return {**product_json(self.product), "changed": self.changed, "version": self.version}


def product_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON, with its `version` when the row was read with one. `price` is
    null when the stored value is not a finite number (a row that predates the
    schema's check): JSON has no NaN, and the answer must still be valid."""
    price = finite_price(row["price"])
    if price is None:
        log.warning("product price is not a finite number; shown as null",
                    extra={"product_id": row["id"], "price": str(row["price"])})
    shown = {"id": row["id"], "name": row["name"], "sku": row["sku"], "description": row["description"],
             "price": price, "category": row["category"]}
    if "version" in row:
        shown["version"] = row["version"]
    return shown


def get_product(pool, product_id: int) -> dict[str, Any]:
    """The row (products.ROW_COLUMNS) and its `version`; NotFound when it is gone."""
    with pool.connection() as conn:
        row = conn.execute(products.VERSIONED_ROW_BY_ID, (product_id,)).fetchone()
    if row is None:
        raise NotFound(f"product {product_id} does not exist")
    return row


def apply_edit(pool, product_id: int, changes: dict[str, Any], editor: str, template: str,
               expected_version: int | None = None) -> EditResult:
    """Writes the edit to the row (the capture trigger stamps its version and captures
    it) unless nothing changed. `template`: INDEXED_TEXT_TEMPLATE, to refuse an edit
    whose indexed text the pipeline could not carry. `expected_version`: the version
    the editor read (None: whatever the row holds); checked under the row's lock in
    the same transaction as the write. Raises NotFound for a missing row, Conflict
    when the row's version is not `expected_version` (nothing is written), InvalidEdit
    for a text over documents.MAX_TEXT_BYTES."""
    with pool.connection() as conn, conn.transaction():
        row = conn.execute(products.VERSIONED_ROW_BY_ID_FOR_UPDATE, (product_id,)).fetchone()
        if row is None:
            raise NotFound(f"product {product_id} does not exist")
        if expected_version is not None and row["version"] != expected_version:
            log.info("edit refused: product changed since it was read", extra={
                "product_id": product_id, "editor": editor, "expected_version": expected_version,
                "version": row["version"]})
            raise Conflict(product_id, expected_version, row)
        changed = [f for f in EDITABLE if f in changes and changes[f] != row[f]]
        if not changed:
            return EditResult(product=row, changed=[], version=None, current_version=row["version"])
        new = {**row, **{f: changes[f] for f in changed}}
        metadata(new, 0, template)  # UnindexableProduct (a 400) for a state the index cannot hold
        try:
            check_text_size(indexed_text(new, template))
        except UnindexableProduct as exc:
            raise InvalidEdit(f"the product's {exc}") from exc
        updated = conn.execute(
            products.update_sql(changed), {**{f: new[f] for f in changed}, "id": product_id},
        ).fetchone()
        # Stamped by the row's trigger; pelican ships this state at exactly this version.
        version = updated.pop("version")
    log.info("product edited", extra={"product_id": product_id, "fields": changed, "editor": editor, "version": version})
    return EditResult(product=updated, changed=changed, version=version, current_version=version)


@dataclass(frozen=True)
class SyncState:
    product_id: int
    indexed_version: int | None
    searchable: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.product_id, "indexed_version": self.indexed_version, "searchable": self.searchable,
                "detail": self.detail}


def sync_state(index, pool, product_id: int, template: str, version: int | None = None) -> SyncState:
    """Whether search finds the product as the table holds it now: the index must hold
    the row's current content (the comparison reconcile makes, documents.is_current) and,
    with `version` (an edit's version, from apply_edit), a version at least that high.
    `template`: INDEXED_TEXT_TEMPLATE, which the index's text fingerprint was taken with.

    The content is compared, not only the version: after a restore rolls the table
    back, the index holds a higher version of content the table no longer has. The
    index is read before the row, so "searchable" never describes a state the row
    left before the answer: an edit landing in between makes the two differ.
    Raises NotFound when the row is gone."""
    vector = index.fetch([str(product_id)]).get(str(product_id))
    row = get_product(pool, product_id)
    if vector is None:
        return SyncState(product_id, None, False, "not in the index yet")
    meta = dict(getattr(vector, "metadata", None) or {})
    indexed_version = int(meta["version"]) if "version" in meta else None
    if not is_current(row, meta, template):
        waiting = f"; waiting for version {version}" if version is not None else ""
        return SyncState(product_id, indexed_version, False,
                         f"the index holds another state (version {indexed_version}){waiting}")
    if version is not None and (indexed_version is None or indexed_version < version):
        return SyncState(product_id, indexed_version, False,
                         f"waiting for version {version} (the index holds {indexed_version})")
    return SyncState(product_id, indexed_version, True,
                     f"the index holds the current state at version {indexed_version}; searchable")
