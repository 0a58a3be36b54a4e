"""emu's stages as functions that return outcomes instead of acting on them.

    read_message  -> work items, and the outcomes of what cannot be read
    prepare       -> records, deletions, and outcomes (superseded, dead letter)
    look_up       -> what the index holds: changes it already has newer are
                     superseded, and a record whose text the index already embeds
                     keeps that dense vector (a price or category change runs no model)
    (the model embeds the remaining records' texts)
    merge         -> several embedded batches as one write, each product once
    write         -> an outcome for every change written, or IndexUnavailable

None of them calls SQS; only emu.ledger acts on outcomes. read_message, prepare and
merge are pure, so each is unit-tested without a queue, an index or a model.
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
    """A batch on its way to the index. `reused`: position in `upserts` -> the dense
    vector the index already holds for that record's text (look_up). `live_versions`:
    the versions the index held for these ids when looked up (None: not looked up, the
    write fetches them). `epoch`: how many writes the worker had finished then."""

    upserts: list[tuple[WorkItem, IndexRecord]] = field(default_factory=list)
    deletes: list[WorkItem] = field(default_factory=list)
    settled: list[Settled] = field(default_factory=list)
    reused: dict[int, np.ndarray] = field(default_factory=dict)
    live_versions: dict[str, int] | None = None
    epoch: int = 0

    @property
    def to_embed(self) -> list[int]:
        """Positions in `upserts` whose text the model must embed."""
        return [n for n in range(len(self.upserts)) if n not in self.reused]

    @property
    def texts(self) -> list[str]:
        """The texts of the records the model must embed, in to_embed's order."""
        return [self.upserts[n][1].text for n in self.to_embed]


def prepare(items: list[WorkItem], template: str, *, with_sparse: bool = True) -> Prepared:
    """Keeps the newest change per product (older ones are superseded) and builds the
    index record of each upsert, with its BM25 sparse vector when `with_sparse` (a legacy
    index needs it; a document index scores its own full-text fields):
    lexical.encode_documents of documents.lexical_text over the batch, each weighted by
    the parameters its message carried (a message without them: lexical.UNFITTED). A row that can never be
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
        assert change.product is not None  # only a delete has no product
        try:
            product = {**change.product, "id": change.product_id}
            built.append((item, build_record(product, change.version, template), lexical_text(product, template)))
        except UnindexableProduct as exc:
            out.settled.append((item, outcomes.dead_letter(str(exc))))
        except Exception as exc:  # any value a producer might send must not stop emu
            out.settled.append((item, outcomes.dead_letter(f"row is malformed: {type(exc).__name__}: {brief(exc)}")))
    if not with_sparse:
        out.upserts.extend((item, record) for item, record, _ in built)
        return out
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


def look_up(index: ProductIndex, prepared: Prepared, dimension: int) -> Prepared:
    """Reads what the index holds for the batch's ids (one fetch per 1,000) and returns
    the batch without the changes it already holds newer (settled superseded), with
    `reused` set for each record whose text fingerprint (documents.text_hash) the
    stored record shares, and with `live_versions`. When the index cannot be read the
    batch is returned unchanged: every record is embedded and the write checks the
    versions itself, holding the batch through the outage."""
    ids = [record.id for _, record in prepared.upserts] + [str(item.change.product_id) for item in prepared.deletes]
    if not ids:
        return prepared
    try:
        stored = index.lookup(ids)
    except Exception as exc:
        log.warning("could not read the index before embedding; embedding every record", extra={"error": brief(exc)})
        return prepared
    out = Prepared(settled=list(prepared.settled), live_versions={i: r.version for i, r in stored.items()},
                   epoch=prepared.epoch)
    for item, record in prepared.upserts:
        held = stored.get(record.id)
        if held is not None and held.version > record.version:
            out.settled.append((item, outcomes.SUPERSEDED))
            continue
        if (held is not None and held.text_hash == record.metadata["text_hash"] and held.values is not None
                and held.values.shape == (dimension,)):
            out.reused[len(out.upserts)] = held.values
        out.upserts.append((item, record))
    for item in prepared.deletes:
        held = stored.get(str(item.change.product_id))
        if held is not None and held.version > item.change.version:
            out.settled.append((item, outcomes.SUPERSEDED))
        else:
            out.deletes.append(item)
    return out


@dataclass
class EmbeddedBatch:
    prepared: Prepared
    vectors: np.ndarray  # (len(prepared.upserts), dimension), float32


def merge(batches: list[EmbeddedBatch]) -> EmbeddedBatch:
    """The batches, in the order given, as one write: a product named more than once
    keeps only its newest change (a later batch wins a tie), the others settle
    superseded. live_versions is the newest each batch saw (None when any batch was
    not looked up); epoch the oldest. Already-settled outcomes are carried along."""
    if len(batches) == 1:
        return batches[0]
    newest: dict[int, tuple[WorkItem, IndexRecord | None, np.ndarray | None]] = {}
    settled: list[Settled] = []
    for batch in batches:
        settled += batch.prepared.settled
        entries = [(item, record, batch.vectors[n]) for n, (item, record) in enumerate(batch.prepared.upserts)]
        entries += [(item, None, None) for item in batch.prepared.deletes]
        for item, record, vector in entries:
            pid = item.change.product_id
            held = newest.get(pid)
            if held is not None and held[0].change.version > item.change.version:
                settled.append((item, outcomes.SUPERSEDED))
                continue
            if held is not None:
                settled.append((held[0], outcomes.SUPERSEDED))
                del newest[pid]  # re-inserted below, so the write keeps arrival order
            newest[pid] = (item, record, vector)
    live: dict[str, int] | None = {}
    for batch in batches:
        if batch.prepared.live_versions is None or live is None:
            live = None
            continue
        for vid, version in batch.prepared.live_versions.items():
            live[vid] = max(live.get(vid, 0), version)
    upserts = [(item, record) for item, record, _ in newest.values() if record is not None]
    vectors = [vector for _, record, vector in newest.values() if record is not None]
    dimension = batches[0].vectors.shape[1]
    merged = Prepared(upserts=upserts, deletes=[item for item, record, _ in newest.values() if record is None],
                      settled=settled, live_versions=live, epoch=min(b.prepared.epoch for b in batches))
    return EmbeddedBatch(merged, np.stack(vectors) if vectors else np.zeros((0, dimension), dtype=np.float32))


class IndexUnavailable(RuntimeError):
    """The index kept failing for reasons that pass (429, 5xx, timeouts): hold the work
    and try again later; it says nothing against the changes themselves."""


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, RetriesExhausted) or is_transient(exc)


def write(index: ProductIndex, batch: EmbeddedBatch, live_versions: dict[str, int] | None = None) -> list[Settled]:
    """Writes the batch with the index's versioned write and returns an outcome per
    change (the batch's already-settled outcomes are not among them). live_versions:
    what the index held for these ids (the batch's, with what was written since), or
    None to have the write fetch them. When the index refuses the batch (a permanent
    4xx) the records are written one at a time, so only the one it refuses is
    dead-lettered.

    Raises IndexUnavailable when the index is failing transiently; any other error
    becomes retry-later outcomes for the whole batch."""
    prepared = batch.prepared
    try:
        return _write_all(index, prepared.upserts, batch.vectors, prepared.deletes, live_versions)
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
            settled += _write_all(index, [(item, record)], batch.vectors[n : n + 1], [], live_versions)
        except PermanentIndexError as single:
            settled.append((item, outcomes.dead_letter(str(single))))
        except Exception as other:
            if _unavailable(other):
                raise IndexUnavailable(brief(other, 500)) from other
            settled.append((item, outcomes.retry_later(f"index write failed: {other}")))
    if prepared.deletes:
        try:
            settled += _write_all(index, [], batch.vectors[:0], prepared.deletes, live_versions)
        except PermanentIndexError as exc:
            settled += [(item, outcomes.dead_letter(str(exc))) for item in prepared.deletes]
        except Exception as other:
            if _unavailable(other):
                raise IndexUnavailable(brief(other, 500)) from other
            settled += [(item, outcomes.retry_later(f"index delete failed: {other}")) for item in prepared.deletes]
    return settled


def _write_all(index: ProductIndex, upserts: list[tuple[WorkItem, IndexRecord]], vectors: np.ndarray,
               deletes: list[WorkItem], live_versions: dict[str, int] | None) -> list[Settled]:
    result = index.write_versioned([(record, vectors[n]) for n, (_, record) in enumerate(upserts)],
                                   {str(item.change.product_id): item.change.version for item in deletes},
                                   live_versions=live_versions)
    settled: list[Settled] = [(item, outcomes.INDEXED if record.id in result.written else outcomes.SUPERSEDED)
                              for item, record in upserts]
    settled += [(item, outcomes.DELETED if str(item.change.product_id) in result.written else outcomes.SUPERSEDED)
                for item in deletes]
    return settled
