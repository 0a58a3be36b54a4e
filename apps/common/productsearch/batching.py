"""Batching under a count limit and a byte budget: the one rule for every batched
request (index upserts, SQS job messages, SQS SendMessageBatch calls).

Each caller states its own limits and where they come from; the rule here is:
items keep their order, a batch closes when one more item would pass either limit,
and an item larger than the byte budget on its own goes alone in a batch of one,
never dropped or split. Callers that must not send such an item shrink it first
(jobs.pack) or let the receiving service refuse it and report that item alone
(index upserts, where emu isolates the refused record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def within_limits(items: Iterable[T], *, max_items: int, max_bytes: int, size_of: Callable[[T], int],
                  overhead: int = 0) -> Iterator[list[T]]:
    """Yields consecutive lists of `items`, each of at most `max_items` items whose
    size_of() total plus `overhead` (bytes every batch carries, e.g. an envelope) is
    at most `max_bytes`, except that an item too large for an empty batch is yielded
    alone (so every batch holds at least one item, whatever the limits). size_of is
    called once per item."""
    batch: list[T] = []
    size = overhead
    for item in items:
        n = size_of(item)
        if batch and (len(batch) >= max_items or size + n > max_bytes):
            yield batch
            batch, size = [], overhead
        batch.append(item)
        size += n
    if batch:
        yield batch
