"""The job format on the SQS queue, shared by pelican (producer) and emu (consumer).

A message carries a batch of changes. Each change is the product's *current* state
when pelican shipped it (or a deletion), stamped with the id of the newest captured
change it reflects. Emu needs no database access: the message is self-contained.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

FORMAT_VERSION = 1

# SQS caps a message, and a SendMessageBatch request as a whole, at 256 KiB.
MAX_SQS_MESSAGE_BYTES = 256 * 1024
MAX_SQS_BATCH_ENTRIES = 10
# Room for the envelope and the batch request's own overhead.
MESSAGE_BUDGET_BYTES = 240 * 1024
# No embedding reads this far (256 tokens); capping keeps any row within one message
# while staying above Pinecone's 40 KB metadata limit, so an oversized description is
# still reported as such by emu rather than silently shortened.
MAX_FIELD_BYTES = 41 * 1024


class MalformedJob(ValueError):
    """A message body that is not a job this version understands."""


@dataclass(frozen=True)
class Change:
    product_id: int
    version: int
    product: dict[str, Any] | None  # None: the row is gone

    @property
    def is_delete(self) -> bool:
        return self.product is None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.product_id, "v": self.version, "row": self.product}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str):
        return _cap_utf8(value, MAX_FIELD_BYTES)
    return value


def _cap_utf8(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore")


def _shrunk(change: Change, limit: int) -> Change:
    """A change whose text fields are cut to `limit` bytes: the last resort for a row
    so odd (every field tens of KB of escaped characters) that it overflows a message."""
    row = {k: _cap_utf8(v, limit) if isinstance(v, str) else v for k, v in change.product.items()}
    return Change(change.product_id, change.version, row)


def product_payload(row: dict[str, Any]) -> dict[str, Any]:
    return {key: _jsonable(value) for key, value in row.items()}


def encode(changes: list[Change]) -> str:
    return json.dumps({"format": FORMAT_VERSION, "changes": [c.to_json() for c in changes]}, separators=(",", ":"), ensure_ascii=False)


def decode(body: str) -> list[Change]:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedJob(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise MalformedJob(f"unknown job format {data.get('format') if isinstance(data, dict) else type(data).__name__!r}")
    changes = data.get("changes")
    if not isinstance(changes, list):
        raise MalformedJob("'changes' is not a list")
    out = []
    for i, item in enumerate(changes):
        try:
            product_id, version, row = int(item["id"]), int(item["v"]), item["row"]
        except (KeyError, TypeError, ValueError):
            raise MalformedJob(f"change {i} lacks an integer id, an integer v or a row") from None
        if row is not None and not isinstance(row, dict):
            raise MalformedJob(f"change {i}: row must be an object or null")
        out.append(Change(product_id=product_id, version=version, product=row))
    return out


def pack(changes: Iterable[Change], max_changes: int, budget_bytes: int = MESSAGE_BUDGET_BYTES) -> Iterator[list[Change]]:
    """Groups changes into message bodies of at most max_changes and budget_bytes."""
    envelope = len(encode([]).encode())
    batch: list[Change] = []
    size = envelope
    for change in changes:
        item = _encoded_size(change)
        if item > budget_bytes - envelope and change.product is not None:
            change = _shrunk(change, 8 * 1024)
            item = _encoded_size(change)
        if batch and (len(batch) >= max_changes or size + item > budget_bytes):
            yield batch
            batch, size = [], envelope
        batch.append(change)
        size += item
    if batch:
        yield batch


def _encoded_size(change: Change) -> int:
    return len(json.dumps(change.to_json(), separators=(",", ":"), ensure_ascii=False).encode()) + 1


def group_for_batch_requests(bodies: list[str]) -> Iterator[list[str]]:
    """Splits message bodies into SendMessageBatch calls within the entry and byte caps."""
    group: list[str] = []
    size = 0
    for body in bodies:
        n = len(body.encode())
        if group and (len(group) >= MAX_SQS_BATCH_ENTRIES or size + n > MAX_SQS_MESSAGE_BYTES):
            yield group
            group, size = [], 0
        group.append(body)
        size += n
    if group:
        yield group
