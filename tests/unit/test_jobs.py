import json

import pytest

from productsearch import jobs
from productsearch.jobs import Change


def change(i: int, description: str = "d", version: int | None = None) -> Change:
    return Change(product_id=i, version=version or i, product={"name": f"n{i}", "sku": f"s{i}", "description": description, "price": "1.00"})


def test_encode_decode_round_trip_keeps_deletes_and_versions():
    changes = [change(1), Change(product_id=2, version=9, product=None)]
    decoded = jobs.decode(jobs.encode(changes))
    assert decoded == changes
    assert decoded[1].is_delete and not decoded[0].is_delete


@pytest.mark.parametrize("body, reason", [
    ("not json", "not JSON"),
    (json.dumps({"format": 99, "changes": []}), "unknown job format"),
    (json.dumps({"format": 1, "changes": {}}), "not a list"),
    (json.dumps({"format": 1, "changes": [{"id": "x", "v": 1, "row": None}]}), "lacks an integer id"),
    (json.dumps({"format": 1, "changes": [{"id": 1, "v": 1, "row": "text"}]}), "row must be an object"),
])
def test_decode_rejects_malformed_bodies_with_a_reason(body, reason):
    with pytest.raises(jobs.MalformedJob, match=reason):
        jobs.decode(body)


def test_pack_respects_count_and_byte_budget():
    changes = [change(i, "x" * 1000) for i in range(1, 501)]
    batches = list(jobs.pack(changes, max_changes=50, budget_bytes=20_000))
    assert [c for b in batches for c in b] == changes
    assert all(len(b) <= 50 for b in batches)
    assert all(len(jobs.encode(b).encode()) <= 20_000 for b in batches)


def test_oversized_fields_are_capped_so_every_message_fits_sqs():
    huge = "é" * 300_000  # 600 KB of UTF-8
    payload = jobs.product_payload({"id": 1, "name": huge, "sku": huge, "description": huge, "category": huge})
    c = Change(1, 1, payload)
    (batch,) = list(jobs.pack([c], max_changes=50))
    body = jobs.encode(batch)
    assert len(body.encode()) <= jobs.MAX_SQS_MESSAGE_BYTES
    # The description is still over Pinecone's metadata limit, so emu reports it rather than indexing a cut text.
    assert len(payload["description"].encode()) > 40 * 1024


def test_batch_requests_stay_within_ten_entries_and_256_kib():
    bodies = ["x" * 100_000] * 5 + ["y"] * 25
    groups = list(jobs.group_for_batch_requests(bodies))
    assert [b for g in groups for b in g] == bodies
    assert all(len(g) <= 10 and sum(len(b) for b in g) <= jobs.MAX_SQS_MESSAGE_BYTES for g in groups)
