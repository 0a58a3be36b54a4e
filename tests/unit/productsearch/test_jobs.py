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
    (json.dumps({"format": 1, "changes": [{"id": "x", "v": 1, "row": None}]}), "id must be a JSON integer"),
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


# -- bodies SQS accepts (AWS docs: SendMessage, MessageBody) ----------------------------
def sqs_accepts(ch: str) -> bool:
    c = ord(ch)
    return c in (0x9, 0xA, 0xD) or 0x20 <= c <= 0xD7FF or 0xE000 <= c <= 0xFFFD or 0x10000 <= c <= 0x10FFFF


# Each class of text a row or a decoded job can hold. A high surrogate is always followed
# by "x": directly followed by a low one, JSON reads the pair back as one character.
CHARACTER_CLASSES = {
    "controls": "".join(map(chr, range(0x20))),
    "ascii and json syntax": 'plain "quoted" \\ back\\slash / {}[],:',
    "delete and latin": "\x7f\x80\xa0é",
    "edges of the BMP ranges": "\ud7ff\ue000\ufffd",
    "noncharacters": "\ufffe\uffff",
    "lone surrogates": "\ud800x\udbffx\udc00\udfff",
    "astral": "\U00010000\U0001f600\U0010ffff",
    "refused after a backslash": "\\\uffff\\\\\ufffe",
}


@pytest.mark.parametrize("text", CHARACTER_CLASSES.values(), ids=CHARACTER_CLASSES.keys())
def test_every_character_class_round_trips_exactly_through_a_body_sqs_accepts(text):
    changes = [Change(1, 1, {"name": text, "sku": text, "description": f"a{text}b", "price": "1.00", "category": text})]
    body = jobs.encode(changes)
    assert all(sqs_accepts(ch) for ch in body), [hex(ord(ch)) for ch in body if not sqs_accepts(ch)]
    body.encode()  # no lone surrogate left: the body is valid UTF-8 on the wire
    assert jobs.decode(body) == changes
    value = {text: [text, {"k": text}]}
    assert json.loads(jobs.sqs_body(value)) == value


def test_random_text_never_yields_a_character_sqs_refuses():
    import random

    rng = random.Random(20240611)
    pool = [ch for text in CHARACTER_CLASSES.values() for ch in text if not 0xD800 <= ord(ch) <= 0xDBFF]
    pool += ["\ud800x", "\udbffx"]
    for _ in range(500):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
        body = jobs.sqs_body({"description": text})
        assert all(sqs_accepts(ch) for ch in body), repr(text)
        assert json.loads(body) == {"description": text}


def test_pack_counts_the_escaped_size_so_bodies_stay_within_budget():
    # U+FFFF is 3 bytes of UTF-8 but 6 escaped: counting it raw would overflow the budget.
    changes = [change(i, "\uffff" * 300) for i in range(1, 101)]
    batches = list(jobs.pack(changes, max_changes=50, budget_bytes=8_000))
    assert [c for b in batches for c in b] == changes
    assert all(len(jobs.encode(b).encode()) <= 8_000 for b in batches)
    assert len(batches) > 1


@pytest.mark.parametrize("odd", ["\x01", "\uffff", "\ud800"], ids=["control", "noncharacter", "lone surrogate"])
def test_rows_full_of_escaped_characters_fit_one_sqs_message(odd):
    # Every text column at its cap, each character written as a 6-byte escape.
    row = jobs.product_payload({"id": 1, "name": odd * 50_000, "sku": odd * 50_000, "description": odd * 50_000,
                                "price": "1.00", "category": odd * 50_000})
    changes = [Change(i, i, row) for i in range(1, 4)]
    batches = list(jobs.pack(changes, max_changes=50))
    assert [c.product_id for b in batches for c in b] == [1, 2, 3]
    for batch in batches:
        body = jobs.encode(batch)
        assert len(body.encode()) <= jobs.MESSAGE_BUDGET_BYTES
        assert all(sqs_accepts(ch) for ch in body)
    for group in jobs.group_for_batch_requests([jobs.encode(b) for b in batches]):
        assert sum(len(b.encode()) for b in group) <= jobs.MAX_SQS_MESSAGE_BYTES


def test_within_limits_closes_a_batch_at_either_limit_and_sends_an_oversized_item_alone():
    from productsearch.batching import within_limits

    sizes = [3, 3, 3, 3, 20, 1, 1, 1]
    batches = list(within_limits(sizes, max_items=3, max_bytes=10, size_of=lambda n: n, overhead=1))
    assert batches == [[3, 3, 3], [3], [20], [1, 1, 1]]
