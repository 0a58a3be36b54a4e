"""The job format on the SQS queue, shared by pelican (producer) and emu (consumer).

A message carries a batch of changes. Each change is the product's *current* state
when pelican shipped it (or a deletion), stamped with that state's version (the
row's own `version`, or the deletion's). Emu needs no database access: the message is self-contained.

The envelope may also carry `lexical`: the corpus parameters (lexical.CorpusStats:
documents, average_length, k1, b) emu weights the changes' BM25 sparse vectors by,
read by pelican once per shipped batch. It is optional, so format 1 is unchanged both
ways: an older emu ignores it, and a message without it (sent by an older pelican)
is encoded without length normalisation (lexical.UNFITTED).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from productsearch.batching import within_limits
from productsearch.lexical import CorpusStats
from productsearch.logs import brief

FORMAT_VERSION = 1

# SQS caps a message, and a SendMessageBatch request as a whole, at 256 KiB.
MAX_SQS_MESSAGE_BYTES = 256 * 1024
MAX_SQS_BATCH_ENTRIES = 10
# Room for the envelope and the batch request's own overhead.
MESSAGE_BUDGET_BYTES = 240 * 1024
# An upper bound of the envelope's `lexical` object: four numbers of at most 24
# characters each (a float's longest JSON text), their keys and punctuation.
MAX_LEXICAL_BYTES = 192
# No embedding reads this far (256 tokens); capping keeps any row within one message
# while staying above Pinecone's 40 KB metadata limit, so an oversized description is
# still reported as such by emu rather than silently shortened.
MAX_FIELD_BYTES = 41 * 1024
# The characters SQS takes in a message body (AWS docs: SendMessage, MessageBody):
# #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF. Anything else
# gets the whole send refused with InvalidMessageContents.
_SQS_REFUSED = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


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
    # surrogatepass: a lone surrogate (possible in a str read from JSON) is kept, not
    # an encoding error.
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:  # back off to a character's first byte
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass")


def _shrunk(change: Change, limit: int) -> Change:
    """A change whose text fields are cut to `limit` bytes: the last resort for a row
    so odd (every field tens of KB of escaped characters) that it overflows a message."""
    row = {k: _cap_utf8(v, limit) if isinstance(v, str) else v for k, v in change.product.items()}
    return Change(change.product_id, change.version, row)


def product_payload(row: dict[str, Any]) -> dict[str, Any]:
    return {key: _jsonable(value) for key, value in row.items()}


def sqs_body(value: Any) -> str:
    """`value` (JSON types only) as compact JSON text that SQS accepts as a message body.

    JSON escapes the control characters itself; the other characters SQS refuses
    (U+FFFE, U+FFFF, and lone surrogates, which a str read from JSON may hold) are
    written as `\\uXXXX` escapes too, so json.loads gives back exactly `value`. (As in
    any JSON, a high surrogate directly followed by a low one reads back as the one
    character the pair encodes.) Everything else stays as it is (UTF-8 on the wire),
    so the size is what SQS counts: len(body.encode()).

    Raises TypeError for a value JSON cannot hold (a Decimal, a datetime: see
    product_payload). Build every SQS body here: a body SQS refuses would be refused
    on every retry, stalling the outbox with both queues empty."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    # Structural JSON is ASCII, so a refused character can only sit inside a string,
    # where an escape stands for it.
    return _SQS_REFUSED.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def encode(changes: list[Change], lexical: CorpusStats | None = None) -> str:
    """The message body for `changes`, valid for SQS (see sqs_body), carrying the
    corpus parameters `lexical` when given."""
    body: dict[str, Any] = {"format": FORMAT_VERSION, "changes": [c.to_json() for c in changes]}
    if lexical is not None:
        body["lexical"] = lexical.to_json()
    return sqs_body(body)


# Versions are microsecond clock readings (~1.8e15) or, for a change captured before
# rows had versions, its change id; either way they must stay exact in Pinecone's metadata,
# whose numbers are 64-bit floats (integers are exact up to 2**53).
MAX_VERSION = 2**53
# Postgres bigint; the vector id is the decimal text of the product id.
MAX_PRODUCT_ID = 2**63 - 1
# The row fields a job carries, with the JSON types each may take. `price` travels as
# the decimal's text (product_payload) but a number is accepted too.
ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "sku": (str,), "description": (str,), "price": (str, int, float),
}
OPTIONAL_ROW_FIELDS: dict[str, tuple[type, ...]] = {"category": (str, type(None))}


@dataclass(frozen=True)
class RefusedChange:
    """One change of a message that emu cannot read; its neighbours still can.
    `raw` is the change exactly as it arrived (for the dead-letter record)."""

    position: int
    reason: str
    raw: Any
    product_id: int | None = None


@dataclass(frozen=True)
class Job:
    """A decoded message: the changes emu can act on, and the ones it must refuse.
    `lexical`: the corpus parameters the message carries; None when it carries none or
    malformed ones (`lexical_problem` then says what was wrong), which costs only the
    length normalisation of its sparse vectors, never the changes."""

    changes: list[Change]
    refused: list[RefusedChange]
    lexical: CorpusStats | None = None
    lexical_problem: str | None = None


def _bounded_int(value: Any, name: str, minimum: int, maximum: int) -> int:
    # bool is an int in Python but never a valid id or version; a float (1.0, 1e400)
    # means the producer is not ours or is broken.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a JSON integer, got {type(value).__name__} {brief(value, 40)}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} {value} is outside {minimum}..{maximum}")
    return value


def _read_change(item: Any) -> Change:
    """Raises ValueError with the reason when the change does not fit the format."""
    if not isinstance(item, dict):
        raise ValueError(f"a change must be an object, got {type(item).__name__}")
    missing = {"id", "v", "row"} - set(item)
    if missing:
        raise ValueError(f"change lacks {', '.join(sorted(missing))}")
    product_id = _bounded_int(item["id"], "id", 1, MAX_PRODUCT_ID)
    version = _bounded_int(item["v"], "version", 0, MAX_VERSION)
    row = item["row"]
    if row is None:
        return Change(product_id, version, None)
    if not isinstance(row, dict):
        raise ValueError(f"row must be an object or null, got {type(row).__name__}")
    for name, types in ROW_FIELDS.items():
        if name not in row:
            raise ValueError(f"row lacks {name}")
        if isinstance(row[name], bool) or not isinstance(row[name], types):
            raise ValueError(f"row field {name} has type {type(row[name]).__name__}")
    for name, types in OPTIONAL_ROW_FIELDS.items():
        if name in row and not isinstance(row[name], types):
            raise ValueError(f"row field {name} has type {type(row[name]).__name__}")
    return Change(product_id, version, row)


def read(body: str, max_bytes: int = MAX_SQS_MESSAGE_BYTES) -> Job:
    """Decodes a message body change by change.

    Raises MalformedJob (with the reason) when the body as a whole is unreadable:
    over `max_bytes` (SQS's own cap, AWS docs: Amazon SQS message quotas), not JSON,
    an unknown format, or no list of changes. A change that does not fit the format
    (a missing or mistyped field, an id or version out of range such as 1e400) is
    returned in `refused` with its reason, so its neighbours can still be indexed."""
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise MalformedJob(f"body is {size} bytes, over the {max_bytes}-byte SQS message limit")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise MalformedJob(f"body is not JSON: {brief(exc, 200)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        shown = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise MalformedJob(f"unknown job format {brief(shown, 40)!r} (this emu reads format {FORMAT_VERSION})")
    changes = data.get("changes")
    if not isinstance(changes, list):
        raise MalformedJob("'changes' is not a list")
    lexical, problem = None, None
    if data.get("lexical") is not None:
        try:
            lexical = CorpusStats.from_json(data["lexical"])
        except ValueError as exc:
            problem = brief(exc, 200)
    job = Job([], [], lexical, problem)
    for i, item in enumerate(changes):
        try:
            job.changes.append(_read_change(item))
        except (ValueError, TypeError) as exc:
            raw_id = item.get("id") if isinstance(item, dict) else None
            product_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) and 0 < raw_id <= MAX_PRODUCT_ID else None
            job.refused.append(RefusedChange(i, f"change {i}: {exc}", item, product_id))
    return job


def decode(body: str) -> list[Change]:
    """The changes of a body that must be wholly valid (tests, tools); raises
    MalformedJob naming the first problem."""
    job = read(body)
    if job.refused:
        raise MalformedJob(job.refused[0].reason)
    return job.changes


def pack(changes: Iterable[Change], max_changes: int, budget_bytes: int = MESSAGE_BUDGET_BYTES) -> Iterator[list[Change]]:
    """Groups changes into message bodies of at most max_changes and budget_bytes
    (MESSAGE_BUDGET_BYTES by default: SQS's 256 KiB message limit less headroom).
    A change too large for a message on its own has its product's text fields cut
    to 8 KiB first (_shrunk), so it fits in a message by itself."""
    envelope = len(encode([]).encode()) + MAX_LEXICAL_BYTES

    def sized() -> Iterator[tuple[Change, int]]:
        for change in changes:
            size = _encoded_size(change)
            if size > budget_bytes - envelope and change.product is not None:
                change = _shrunk(change, 8 * 1024)
                size = _encoded_size(change)
            yield change, size

    for batch in within_limits(sized(), max_items=max_changes, max_bytes=budget_bytes,
                               size_of=lambda pair: pair[1], overhead=envelope):
        yield [change for change, _ in batch]


def _encoded_size(change: Change) -> int:
    # Bytes this change adds to encode()'s body: its escaped JSON plus a comma.
    return len(sqs_body(change.to_json()).encode()) + 1


def group_for_batch_requests(bodies: list[str]) -> Iterator[list[str]]:
    """Splits message bodies into SendMessageBatch calls of at most
    MAX_SQS_BATCH_ENTRIES entries and MAX_SQS_MESSAGE_BYTES in all (AWS docs:
    SendMessageBatch caps both the entries and the request's total payload)."""
    return within_limits(bodies, max_items=MAX_SQS_BATCH_ENTRIES, max_bytes=MAX_SQS_MESSAGE_BYTES,
                         size_of=lambda body: len(body.encode()))


# -- ordering: FIFO message groups ---------------------------------------------------
# The jobs queue is an SQS FIFO queue. SQS hands the messages of one message group
# to one consumer at a time, in order, and withholds the group's later messages
# until the earlier ones are deleted (AWS docs: "Using the message group ID").
# Every change of a product goes to its partition's group, so two emu tasks never
# write the same product at once, and an older state can never land after a newer
# one. Partitions are ranges of ids, not hashes: a backfill or a bulk load claims
# consecutive ids, so its messages stay full (150 changes) instead of being split
# across every group.
PARTITION_SPAN = 1024


def is_fifo(queue_url: str) -> bool:
    """SQS requires a FIFO queue's name to end in `.fifo` (AWS docs: FIFO queue names)."""
    return queue_url.rstrip("/").endswith(".fifo")


def partition_of(product_id: int) -> str:
    """The message group of a product's changes: `products-<id // PARTITION_SPAN>`."""
    return f"products-{product_id // PARTITION_SPAN}"


def pack_by_partition(changes: Iterable[Change], max_changes: int,
                      budget_bytes: int = MESSAGE_BUDGET_BYTES) -> Iterator[tuple[str, list[Change]]]:
    """Like `pack`, but every message holds changes of one partition only, and each
    partition's messages keep the changes' order. Yields (message group id, changes)."""
    by_partition: dict[str, list[Change]] = {}
    for change in changes:
        by_partition.setdefault(partition_of(change.product_id), []).append(change)
    for group, members in by_partition.items():
        for batch in pack(members, max_changes, budget_bytes):
            yield group, batch


def deduplication_id(body: str) -> str:
    """SHA-256 of the body: a resend of the very same job within SQS's five-minute
    deduplication window (a pelican that crashed after sending) is dropped."""
    return hashlib.sha256(body.encode("utf-8", errors="surrogatepass")).hexdigest()
