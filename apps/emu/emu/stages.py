"""emu's stages as functions that return outcomes instead of acting on them.

    read_message  -> work items, and the outcomes of what cannot be read
    prepare       -> records to embed, deletions, and outcomes (superseded, dead letter)
    (the model embeds the records' texts)
    write         -> an outcome for every change written, or IndexUnavailable

None of them calls SQS; only emu.ledger acts on outcomes. read_message and prepare
are pure, so each is unit-tested without a queue, an index or a model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from emu import outcomes
from emu.jobqueue import ReceivedMessage
from emu.outcomes import Outcome
from productsearch import jobs
from productsearch import lexical
from productsearch.documents import IndexRecord, UnindexableProduct, build_record, lexical_text
from productsearch.index import PermanentIndexError, ProductIndex, is_transient
from productsearch.jobs import Change, RefusedChange
from productsearch.logs import brief
from productsearch.retry import RetriesExhausted

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class WorkItem:
    """One unit a message's settlement waits for: a change, a change that could not
    be read (`refused`), or, with neither, the whole unreadable message."""

    message: ReceivedMessage
    change: Change | None = None
    refused: RefusedChange | None = None
    # The corpus parameters the message carried (jobs.Job.lexical); None: it carried none.
    lexical: lexical.CorpusStats | None = None

    @property
    def product_id(self) -> int | None:
        if self.change is not None:
            return self.change.product_id
        return self.refused.product_id if self.refused is not None else None


Settled = tuple[WorkItem, Outcome]


def read_message(message: ReceivedMessage) -> tuple[list[WorkItem], list[Settled]]:
    """Splits a message into the changes to work on and the outcomes already known:
    a dead letter for each change that does not fit the job format, or one for the
    whole message when its body cannot be read at all."""
    try:
        job = jobs.read(message.body)
    except jobs.MalformedJob as exc:
        return [], [(WorkItem(message), outcomes.dead_letter(f"malformed job: {exc}"))]
    if job.lexical is None:
        _note_missing_lexical(job.lexical_problem)
    items = [WorkItem(message, change=change, lexical=job.lexical) for change in job.changes]
    refused = [(WorkItem(message, refused=r), outcomes.dead_letter(f"malformed job: {r.reason}")) for r in job.refused]
    return items, refused


_missing_lexical_logged = False


def _note_missing_lexical(problem: str | None) -> None:
    # Once per process: during an upgrade every message in flight lacks them.
    global _missing_lexical_logged
    if not _missing_lexical_logged:
        _missing_lexical_logged = True
        log.warning("a job carries no usable lexical parameters; its sparse vectors are encoded without length "
                    "normalisation (b = 0) until pelican sends them", extra={"problem": problem})


@dataclass
class Prepared:
    upserts: list[tuple[WorkItem, IndexRecord]] = field(default_factory=list)
    deletes: list[WorkItem] = field(default_factory=list)
    settled: list[Settled] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [record.text for _, record in self.upserts]


def prepare(items: list[WorkItem], template: str) -> Prepared:
    """Keeps the newest change per product (older ones are superseded) and builds the
    index record of each upsert, with its BM25 sparse vector (lexical.encode_documents
    of documents.lexical_text over the batch, each weighted by the parameters its
    message carried; a message without them: lexical.UNFITTED). A row that can never be
    indexed, or that breaks in any way while its record or sparse vector is built, is
    dead-lettered with the reason; the other items are unaffected."""
    newest: dict[int, WorkItem] = {}
    out = Prepared()
    for item in items:
        assert item.change is not None
        current = newest.get(item.change.product_id)
        if current is None or item.change.version > current.change.version:
            if current is not None:
                out.settled.append((current, outcomes.SUPERSEDED))
            newest[item.change.product_id] = item
        else:
            out.settled.append((item, outcomes.SUPERSEDED))
    built: list[tuple[WorkItem, IndexRecord, str]] = []
    for item in newest.values():
        change = item.change
        if change.is_delete:
            out.deletes.append(item)
            continue
        try:
            product = {**change.product, "id": change.product_id}
            built.append((item, build_record(product, change.version, template), lexical_text(product, template)))
        except UnindexableProduct as exc:
            out.settled.append((item, outcomes.dead_letter(str(exc))))
        except Exception as exc:  # any value a producer might send must not stop emu
            out.settled.append((item, outcomes.dead_letter(f"row is malformed: {type(exc).__name__}: {brief(exc)}")))
    stats = [item.lexical or lexical.UNFITTED for item, _, _ in built]
    try:  # one tokeniser call for the batch: bm25s's setup per call outweighs a short text
        sparse = lexical.encode_documents([text for _, _, text in built], stats)
    except Exception as exc:  # then one at a time, so that only the text it refuses is dead-lettered
        log.warning("the batch's sparse vectors failed (%s); encoding its %d rows one at a time", brief(exc), len(built))
        sparse = None
    for k, (item, record, text) in enumerate(built):
        try:
            vector = sparse[k] if sparse is not None else lexical.encode_document(text, stats[k])
        except Exception as exc:
            out.settled.append((item, outcomes.dead_letter(f"row is malformed: {type(exc).__name__}: {brief(exc)}")))
            continue
        out.upserts.append((item, replace(record, sparse=vector or None)))
    return out


@dataclass
class EmbeddedBatch:
    prepared: Prepared
    vectors: np.ndarray  # (len(prepared.upserts), dimension), float32


class IndexUnavailable(RuntimeError):
    """The index kept failing for reasons that pass (429, 5xx, timeouts): hold the work
    and try again later; it says nothing against the changes themselves."""


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, RetriesExhausted) or is_transient(exc)


def write(index: ProductIndex, batch: EmbeddedBatch) -> list[Settled]:
    """Writes the batch with the index's versioned write and returns an outcome per
    change. When the index refuses the batch (a permanent 4xx) the records are written
    one at a time, so only the one it refuses is dead-lettered.

    Raises IndexUnavailable when the index is failing transiently; any other error
    becomes retry-later outcomes for the whole batch."""
    prepared = batch.prepared
    try:
        return _write_all(index, prepared.upserts, batch.vectors, prepared.deletes)
    except PermanentIndexError as exc:
        log.warning("index refused a batch; isolating the bad record", extra={"error": brief(exc)})
    except Exception as exc:
        if _unavailable(exc):
            raise IndexUnavailable(brief(exc, 500)) from exc
        log.exception("index write failed")
        return [(item, outcomes.retry_later(f"index write failed: {exc}"))
                for item in [i for i, _ in prepared.upserts] + prepared.deletes]
    settled: list[Settled] = []
    for n, (item, record) in enumerate(prepared.upserts):
        try:
            settled += _write_all(index, [(item, record)], batch.vectors[n : n + 1], [])
        except PermanentIndexError as single:
            settled.append((item, outcomes.dead_letter(str(single))))
        except Exception as other:
            if _unavailable(other):
                raise IndexUnavailable(brief(other, 500)) from other
            settled.append((item, outcomes.retry_later(f"index write failed: {other}")))
    if prepared.deletes:
        try:
            settled += _write_all(index, [], batch.vectors[:0], prepared.deletes)
        except PermanentIndexError as exc:
            settled += [(item, outcomes.dead_letter(str(exc))) for item in prepared.deletes]
        except Exception as other:
            if _unavailable(other):
                raise IndexUnavailable(brief(other, 500)) from other
            settled += [(item, outcomes.retry_later(f"index delete failed: {other}")) for item in prepared.deletes]
    return settled


def _write_all(index: ProductIndex, upserts: list[tuple[WorkItem, IndexRecord]], vectors: np.ndarray,
               deletes: list[WorkItem]) -> list[Settled]:
    result = index.write_versioned([(record, vectors[n]) for n, (_, record) in enumerate(upserts)],
                                   {str(item.change.product_id): item.change.version for item in deletes})
    settled: list[Settled] = [(item, outcomes.INDEXED if record.id in result.written else outcomes.SUPERSEDED)
                              for item, record in upserts]
    settled += [(item, outcomes.DELETED if str(item.change.product_id) in result.written else outcomes.SUPERSEDED)
                for item in deletes]
    return settled
