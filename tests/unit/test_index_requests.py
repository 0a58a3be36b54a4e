import json
import random

from productsearch.documents import MAX_UPSERT_REQUEST_BYTES, MAX_VECTORS_PER_UPSERT
from productsearch.index import _chunks_within_limits, _item_bytes


def item(i: int, dim: int, description: str) -> dict:
    rnd = random.Random(i)
    return {"id": str(i), "values": [rnd.uniform(-1, 1) * 10 ** rnd.randint(-40, 3) for _ in range(dim)],
            "metadata": {"description": description, "version": i}}


def test_size_bound_is_never_below_the_real_json_size():
    for i, description in enumerate(["", "plain", "ünïcødé " * 50, '"quotes" and \\ slashes' * 20]):
        it = item(i, 384, description)
        assert _item_bytes(it) >= len(json.dumps(it, separators=(",", ":")).encode())


def test_chunks_respect_the_request_size_and_count_limits_and_keep_every_item():
    items = [item(i, 1536, "x" * 30_000) for i in range(150)] + [item(1000 + i, 4, "") for i in range(2500)]
    chunks = list(_chunks_within_limits(items))
    assert [it["id"] for chunk in chunks for it in chunk] == [it["id"] for it in items]
    assert len(chunks) > 3
    for chunk in chunks:
        assert len(chunk) <= MAX_VECTORS_PER_UPSERT
        body = json.dumps({"vectors": chunk, "namespace": "products-deleted"}, separators=(",", ":")).encode()
        assert len(body) <= MAX_UPSERT_REQUEST_BYTES
