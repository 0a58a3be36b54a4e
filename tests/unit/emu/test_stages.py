"""emu's pure stages: reading a message change by change, and preparing records.
Every malformed variant becomes a dead-letter outcome with its reason; neighbours
in the same message carry on."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from emu import stages
from emu.jobqueue import ReceivedMessage, retry_delay_seconds
from emu.outcomes import Kind
from emu.worker import RecentWrites
from productsearch import jobs
from productsearch.documents import build_record

TEMPLATE = "{name} {description}"


def row(**overrides):
    return {"name": "Lamp", "sku": "L-1", "description": "a desk lamp", "price": "12.50", "category": "Home", **overrides}


def message(body) -> ReceivedMessage:
    text = body if isinstance(body, str) else json.dumps(body)
    return ReceivedMessage("m-1", "r-1", text, receive_count=1, received_at=0.0)


def job(*changes) -> dict:
    return {"format": 1, "changes": list(changes)}


@pytest.mark.parametrize("body, reason", [
    ("not json at all", "not JSON"),
    ("[1, 2]", "unknown job format"),
    (json.dumps({"format": 2, "changes": []}), "unknown job format '2'"),
    (json.dumps({"format": 1}), "not a list"),
    (json.dumps({"format": 1, "changes": []}) + " " * (jobs.MAX_SQS_MESSAGE_BYTES + 1), "over the 262144-byte"),
    ("[" * 100_000, "not JSON"),
])
def test_an_unreadable_body_is_one_dead_letter_for_the_whole_message(body, reason):
    items, settled = stages.read_message(message(body))
    assert items == []
    [(item, outcome)] = settled
    assert outcome.kind is Kind.DEAD_LETTER and reason in outcome.reason
    assert item.change is None and item.refused is None  # the ledger records the raw body


BAD_CHANGES = [
    ({"id": 2, "v": 1e400, "row": row()}, "version must be a JSON integer"),
    ({"id": 3, "v": 2**60, "row": row()}, "outside"),
    ({"id": 4, "v": True, "row": row()}, "version must be a JSON integer"),
    ({"id": "5", "v": 1, "row": row()}, "id must be a JSON integer"),
    ({"id": 6, "row": row()}, "lacks v"),
    ({"id": 7, "v": 1, "row": row(price=None)}, "price has type NoneType"),
    ({"id": 8, "v": 1, "row": row(name=["x"])}, "name has type list"),
    ({"id": 9, "v": 1, "row": {k: v for k, v in row().items() if k != "sku"}}, "lacks sku"),
    ({"id": 10, "v": 1, "row": row(category=5)}, "category has type int"),
    ({"id": 11, "v": 1, "row": "a string"}, "row must be an object"),
    ("not an object", "must be an object"),
    ({"id": -1, "v": 1, "row": None}, "outside"),
]


def test_each_malformed_change_is_refused_and_its_neighbours_kept():
    good_before = {"id": 1, "v": 5, "row": row()}
    good_after = {"id": 99, "v": 6, "row": None}
    body = job(good_before, *[c for c, _ in BAD_CHANGES], good_after)
    items, settled = stages.read_message(message(body))
    assert [i.change.product_id for i in items] == [1, 99]
    assert len(settled) == len(BAD_CHANGES)
    for (item, outcome), (raw, reason) in zip(settled, BAD_CHANGES, strict=True):
        assert outcome.kind is Kind.DEAD_LETTER
        assert reason in outcome.reason, (reason, outcome.reason)
        assert item.refused.raw == raw
    # the product id is kept for the dead letter (and redrive) where it was readable
    assert settled[0][0].product_id == 2 and settled[3][0].product_id is None


def items_of(*changes):
    items, settled = stages.read_message(message(job(*changes)))
    assert settled == []
    return items


@pytest.mark.parametrize("price, reason", [
    ("abc", "price"),
    ("NaN", "finite"),
    ("Infinity", "finite"),
    ("-1", ""),
])
def test_a_row_that_cannot_become_a_record_is_dead_lettered_alone(price, reason):
    items = items_of({"id": 1, "v": 1, "row": row(price=price)}, {"id": 2, "v": 1, "row": row()})
    prepared = stages.prepare(items, TEMPLATE)
    assert [record.id for _, record in prepared.upserts] == ["2"]
    [(item, outcome)] = prepared.settled
    assert item.change.product_id == 1 and outcome.kind is Kind.DEAD_LETTER
    assert reason.lower() in outcome.reason.lower()


def test_a_text_the_tokeniser_refuses_is_dead_lettered_alone(monkeypatch):
    # The batch is tokenised in one call; when that call fails, each text is tried
    # alone, so one bad text costs only its own row.
    from productsearch import lexical

    real = lexical.terms_of

    def refusing(texts):
        if any("refused" in t for t in texts):
            raise UnicodeError("a stand-in for a text the tokeniser refuses")
        return real(texts)

    monkeypatch.setattr(lexical, "terms_of", refusing)
    items = items_of({"id": 1, "v": 1, "row": row()}, {"id": 2, "v": 1, "row": row(description="refused")},
                     {"id": 3, "v": 1, "row": row(name="Boots")})
    prepared = stages.prepare(items, TEMPLATE)
    assert [record.id for _, record in prepared.upserts] == ["1", "3"]
    assert all(record.sparse for _, record in prepared.upserts)
    [(item, outcome)] = prepared.settled
    assert item.change.product_id == 2 and outcome.kind is Kind.DEAD_LETTER and "UnicodeError" in outcome.reason


def test_a_batch_is_tokenised_in_one_call_and_each_row_keeps_its_own_vector(monkeypatch):
    from productsearch import lexical
    from productsearch.documents import lexical_text

    items = items_of({"id": 1, "v": 1, "row": row()}, {"id": 2, "v": 1, "row": row(name="Boots", sku="B-9")},
                     {"id": 3, "v": 1, "row": row(name="Desk lamp lamp", sku="D-3")})
    fitted = lexical.CorpusStats(documents=50, average_length=6.0, k1=1.2, b=0.75)
    items[1] = replace(items[1], lexical=fitted)  # messages may carry different parameters; each row gets its own
    calls = []
    real = lexical.terms_of
    monkeypatch.setattr(lexical, "terms_of", lambda texts: calls.append(len(texts)) or real(texts))
    prepared = stages.prepare(items, TEMPLATE)
    assert calls == [3]
    assert [record.id for _, record in prepared.upserts] == ["1", "2", "3"]
    monkeypatch.setattr(lexical, "terms_of", real)
    for item, record in prepared.upserts:
        product = {**item.change.product, "id": item.change.product_id}
        expected = lexical.encode_document(lexical_text(product, TEMPLATE), item.lexical or lexical.UNFITTED)
        assert record.sparse == expected and record.sparse
    assert prepared.upserts[1][1].sparse != lexical.encode_document(
        lexical_text({**items[1].change.product, "id": 2}, TEMPLATE), lexical.UNFITTED)


def test_prepare_keeps_the_newest_change_per_product():
    items = items_of({"id": 1, "v": 3, "row": row(description="third")},
                     {"id": 1, "v": 1, "row": row(description="first")},
                     {"id": 1, "v": 7, "row": None},
                     {"id": 2, "v": 2, "row": row()})
    prepared = stages.prepare(items, TEMPLATE)
    assert [item.change.version for item in prepared.deletes] == [7]
    assert [record.id for _, record in prepared.upserts] == ["2"]
    assert sorted(item.change.version for item, outcome in prepared.settled if outcome.kind is Kind.SUPERSEDED) == [1, 3]


def test_retry_delay_doubles_with_each_receive_up_to_the_cap():
    assert [retry_delay_seconds(n, 15, 900) for n in range(1, 8)] == [15, 30, 60, 120, 240, 480, 900]
    assert retry_delay_seconds(10**6, 15, 10**9) == 12 * 3600  # SQS's maximum visibility


# -- merge and RecentWrites: how the writer joins batches and checks late lookups --------
def embedded(*changes, live=None, epoch=0) -> stages.EmbeddedBatch:
    """A batch of (product id, version, is_delete) changes, each upsert with a vector of its version."""
    msg = message(job())
    upserts, deletes = [], []
    for pid, version, is_delete in changes:
        item = stages.WorkItem(msg, change=jobs.Change(pid, version, None if is_delete else row()))
        if is_delete:
            deletes.append(item)
        else:
            upserts.append((item, build_record({**row(), "id": pid}, version, TEMPLATE)))
    vectors = np.array([[float(record.version)] * 4 for _, record in upserts], dtype=np.float32).reshape(len(upserts), 4)
    return stages.EmbeddedBatch(stages.Prepared(upserts=upserts, deletes=deletes, live_versions=live, epoch=epoch), vectors)


def test_merge_keeps_each_products_newest_change_and_settles_the_rest_superseded():
    merged = stages.merge([embedded((1, 5, False), (2, 7, False), live={"1": 4}, epoch=3),
                           embedded((1, 6, False), (2, 6, False), (3, 2, True), live={"1": 5, "9": 1}, epoch=2)])
    written = {record.id: record.version for _, record in merged.prepared.upserts}
    assert written == {"1": 6, "2": 7}
    assert [item.change.product_id for item in merged.prepared.deletes] == [3]
    # Each row of the vectors stays with its record.
    assert [float(v[0]) for v in merged.vectors] == [float(record.version) for _, record in merged.prepared.upserts]
    superseded = sorted((item.change.product_id, item.change.version) for item, outcome in merged.prepared.settled
                        if outcome.kind is Kind.SUPERSEDED)
    assert superseded == [(1, 5), (2, 6)]
    assert merged.prepared.live_versions == {"1": 5, "9": 1} and merged.prepared.epoch == 2


def test_merge_of_a_batch_that_was_not_looked_up_lets_the_write_fetch_versions():
    merged = stages.merge([embedded((1, 5, False), live={"1": 4}), embedded((2, 1, False), live=None)])
    assert merged.prepared.live_versions is None


def test_recent_writes_add_what_was_written_after_a_lookup():
    recent = RecentWrites(kept=2)
    looked_at = recent.epoch
    recent.note({"1": 9})
    assert recent.since(looked_at, {"1": 4, "2": 3}) == {"1": 9, "2": 3}
    assert recent.since(recent.epoch, {"1": 4}) == {"1": 4}  # looked up after the write: it saw it
    recent.note({"2": 8})
    recent.note({"3": 1})
    # The write right after the lookup is no longer kept: the versions are unknown.
    assert recent.since(looked_at, {"1": 4}) is None
    assert recent.since(looked_at + 1, {"1": 4}) == {"1": 4, "2": 8, "3": 1}
    assert recent.since(recent.epoch, None) is None


def test_without_sparse_vectors_records_carry_text_and_sku_and_skip_the_tokeniser(monkeypatch):
    # A document index scores its own full-text fields: emu spends nothing on BM25.
    from productsearch import lexical

    def never(texts):
        raise AssertionError("tokenised for an index that needs no sparse vectors")

    monkeypatch.setattr(lexical, "terms_of", never)
    items = items_of({"id": 1, "v": 1, "row": row()}, {"id": 2, "v": 1, "row": row(name="Boots")})
    prepared = stages.prepare(items, TEMPLATE, with_sparse=False)
    assert [record.id for _, record in prepared.upserts] == ["1", "2"]
    assert all(record.sparse is None and record.sku and record.text for _, record in prepared.upserts)
    assert prepared.settled == []
