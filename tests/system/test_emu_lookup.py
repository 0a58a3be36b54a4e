"""emu's lookup before embedding, against the real local parts: a change that leaves
the indexed text alone reaches the index without the model, and a batch looked up
while an earlier write was still on its way is checked against that write.

emu runs in this process (its worker threads, the real model behind a recording
embedder), so the test sees every model call and can hold a forward pass open."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from devstack.waiting import wait_until
from emu.worker import Emu
from pelican.outbox import ship_batch
from productsearch import jobs
from productsearch.documents import indexed_text, text_hash
from productsearch.jobs import Change
from productsearch.index import ProductIndex
from emu.config import EmuSettings
from productsearch.settings import DEFAULT_TEXT_TEMPLATE, EmbeddingSettings, IndexSettings, QueueSettings
from tests import kit
from tests.kit.embedders import Recording


@pytest.fixture
def emu(parts, embedder):
    """A running in-process emu whose model calls are recorded (`.recording`)."""
    env = parts.env
    recording = Recording(embedder)
    stopping = threading.Event()
    # An index handle of its own: parts.index is exempt from the faults a test injects.
    index = ProductIndex(IndexSettings.from_env(env), attempts=2)
    settings = EmuSettings.from_env(env, batch_window_seconds=0.05, retry_base_seconds=0)
    worker = Emu(QueueSettings.from_env(env), EmbeddingSettings.from_env(env), settings,
                 index, recording, parts.sqs, parts.sns, stopping=stopping)
    worker.recording = recording
    thread = threading.Thread(target=worker.run, name="emu", daemon=True)
    thread.start()
    yield worker
    recording.release.set()
    stopping.set()
    thread.join(60)
    assert not thread.is_alive(), "emu did not stop"


def ship(parts) -> None:
    """Ships everything the outbox holds, as pelican would."""
    while ship_batch(parts.conn, parts.sqs, parts.env["SQS_QUEUE_URL"], claim_limit=1000, changes_per_message=150).changes_claimed:
        pass


def texts_embedded(recording) -> list[str]:
    return [text for call in recording.calls for text in call]


def test_a_change_that_leaves_the_text_alone_runs_no_model(parts, emu, embedder):
    pid = parts.insert("Trail Shoe", "A light running shoe for muddy mountain paths", 120, category="Shoes")
    ship(parts)
    first = wait_until(lambda: parts.vector(pid), 60, what="inserted row indexed")
    text = indexed_text({"name": "Trail Shoe", "description": "A light running shoe for muddy mountain paths"},
                        DEFAULT_TEXT_TEMPLATE)
    assert texts_embedded(emu.recording) == [text]

    parts.conn.execute("UPDATE products SET price = 99.5, category = 'Outdoor' WHERE id = %s", (pid,))
    ship(parts)
    moved = wait_until(lambda: (v := parts.vector(pid)) and v.metadata["price"] == 99.5 and v, 60, what="price indexed")
    assert texts_embedded(emu.recording) == [text], "a price and category change ran the model"
    assert moved.metadata["category_key"] == "outdoor" and moved.metadata["version"] > first.metadata["version"]
    assert moved.values == first.values  # the stored dense vector, kept as it was
    # The sparse vector is encoded afresh (with the statistics the job carried), not dropped.
    assert moved.sparse_values is not None and list(moved.sparse_values.indices) == list(first.sparse_values.indices)

    parts.conn.execute("UPDATE products SET description = 'A warm wool winter coat' WHERE id = %s", (pid,))
    ship(parts)
    wait_until(lambda: parts.holds_description(pid, "A warm wool winter coat"), 60, what="new text indexed")
    new_text = indexed_text({"name": "Trail Shoe", "description": "A warm wool winter coat"}, DEFAULT_TEXT_TEMPLATE)
    assert texts_embedded(emu.recording) == [text, new_text]
    assert np.allclose(parts.vector(pid).values, embedder.embed([new_text])[0], atol=1e-4)


def test_a_record_written_before_text_fingerprints_is_embedded_again(parts, emu):
    pid = parts.insert("Lamp", "a brass desk lamp")
    ship(parts)
    old = wait_until(lambda: parts.vector(pid), 60, what="indexed")
    # As an index written before the fingerprint would hold it: same version, no text_hash.
    stale = {k: v for k, v in old.metadata.items() if k != "text_hash"}
    parts.index._index.upsert(vectors=[{"id": str(pid), "values": list(old.values), "metadata": stale}],
                              namespace=parts.index.settings.namespace)
    parts.conn.execute("UPDATE products SET price = 7 WHERE id = %s", (pid,))
    ship(parts)
    wait_until(lambda: parts.vector(pid).metadata.get("text_hash"), 60, what="fingerprint written")
    assert len(emu.recording.calls) == 2, "a record without a fingerprint kept a vector nobody can vouch for"


def send(parts, change: Change, group: str) -> None:
    body = jobs.encode([change])
    parts.sqs.send_message(QueueUrl=parts.env["SQS_QUEUE_URL"], MessageBody=body, MessageGroupId=group,
                           MessageDeduplicationId=jobs.deduplication_id(body))


def test_a_batch_looked_up_before_an_earlier_write_landed_cannot_undo_it(parts, emu):
    """The interleaving the pipeline allows: batch 1 (the product's newest state) is
    looked up and held in the model; batch 2, an older state of the same product
    arriving later (another message group, as on a standard queue or after a
    redelivery), is looked up meanwhile and sees neither. Batch 1 is then written
    first, and batch 2 must be found superseded by what batch 1 wrote, not written
    over it."""
    pid = parts.insert("Kettle", "version one of the kettle")
    ship(parts)
    v1 = wait_until(lambda: parts.vector(pid), 60, what="version 1 indexed").metadata["version"]
    row = dict(parts.conn.execute("SELECT name, sku, description, price, category FROM products WHERE id = %s",
                                  (pid,)).fetchone())
    newest = {**row, "description": "version three of the kettle"}
    older = {**row, "description": "version two of the kettle"}
    emu.recording.hold_on = indexed_text(newest, DEFAULT_TEXT_TEMPLATE)

    send(parts, Change(pid, v1 + 3, jobs.product_payload(newest)), group="g-1")
    assert emu.recording.held.wait(60), "batch 1 never reached the model"
    send(parts, Change(pid, v1 + 2, jobs.product_payload(older)), group="g-2")
    # Batch 2 is looked up (the index still holds version 1) and waits behind batch 1.
    wait_until(lambda: emu._looked_up.qsize() == 1, 30, interval=0.05, what="batch 2 looked up while batch 1 is held")
    assert parts.vector(pid).metadata["version"] == v1

    # Batch 1 goes on to its write while batch 2 is held in the model in turn, so the
    # two are written apart (not merged into one write, which would settle it too).
    recording, first_release = emu.recording, emu.recording.release
    recording.held, recording.release = threading.Event(), threading.Event()
    recording.hold_on = indexed_text(older, DEFAULT_TEXT_TEMPLATE)
    first_release.set()
    assert recording.held.wait(60), "batch 2 never reached the model"
    wait_until(lambda: parts.vector(pid).metadata["version"] == v1 + 3, 60, what="batch 1 written")
    recording.release.set()
    wait_until(lambda: emu.ledger.counts["superseded"] == 1, 60, what="batch 2 settled")
    held = parts.vector(pid)
    assert held.metadata["version"] == v1 + 3
    assert held.metadata["text_hash"] == text_hash(indexed_text(newest, DEFAULT_TEXT_TEMPLATE))
    assert emu.ledger.counts["indexed"] == 2  # version 1, then version 3


def test_a_batch_that_breaks_before_the_model_is_retried_and_emu_goes_on(parts, emu, monkeypatch):
    from emu import stages

    real = stages.prepare
    calls = []

    def breaks_once(items, template, **kwargs):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("a bug in preparing")
        return real(items, template, **kwargs)

    monkeypatch.setattr(stages, "prepare", breaks_once)
    pid = parts.insert("Rope", "thirty metres of climbing rope")
    ship(parts)
    wait_until(lambda: parts.vector(pid), 60, what="the change indexed on its retry")
    assert emu.ledger.counts["retry_later"] == 1 and len(calls) >= 2


def test_a_lookup_the_index_refuses_costs_a_model_run_not_the_change(parts, stack, emu):
    pid = parts.insert("Tent", "a two-person tent")
    ship(parts)
    wait_until(lambda: parts.vector(pid), 60, what="indexed")
    # Both attempts of the next lookup get 500s (the SDK retries each up to three times
    # itself): the batch is embedded and the write
    # reads the versions itself.
    kit.inject_index_fault(stack, status=500, count=8, paths=["/vectors/fetch"])
    try:
        parts.conn.execute("UPDATE products SET price = 41 WHERE id = %s", (pid,))
        ship(parts)
        wait_until(lambda: parts.vector(pid).metadata["price"] == 41.0, 60, what="the price indexed")
    finally:
        kit.clear_index_faults(stack)
    assert len(emu.recording.calls) == 2, "the change was not embedded again after the lookup failed"
    assert emu.ledger.counts["retry_later"] == 0 and emu.ledger.counts["dead_letter"] == 0
