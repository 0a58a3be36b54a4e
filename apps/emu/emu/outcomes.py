"""What became of one change (or of one unreadable message): every stage of emu
returns these, and only the settlement ledger (emu.ledger) acts on them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    INDEXED = "indexed"  # the index holds this state now
    DELETED = "deleted"  # the vector is gone and its tombstone written
    SUPERSEDED = "superseded"  # a newer state of the product is indexed or on its way
    DEAD_LETTER = "dead_letter"  # can never succeed as it stands: to the DLQ with the reason
    RETRY_LATER = "retry_later"  # may succeed later: the message goes back to the queue


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    reason: str = ""

    @property
    def finished(self) -> bool:
        """Done with for good: the message may be deleted once all its changes are."""
        return self.kind is not Kind.RETRY_LATER


INDEXED = Outcome(Kind.INDEXED)
DELETED = Outcome(Kind.DELETED)
SUPERSEDED = Outcome(Kind.SUPERSEDED)


def dead_letter(reason: str) -> Outcome:
    return Outcome(Kind.DEAD_LETTER, reason)


def retry_later(reason: str) -> Outcome:
    return Outcome(Kind.RETRY_LATER, reason)
