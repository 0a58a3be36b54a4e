"""The cost rules the local stand-ins bill by, against the worked examples of the pages
they model: Pinecone docs, "Understand Pinecone cost" (read units, write units,
storage), and AWS, Amazon SQS pricing (each 64 KB chunk of a payload is a request)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from devstack.aws_server import billed_requests, payload_bytes
from devstack.costs import Meter, check_latency_ms
from devstack.index_server import costs
from devstack.index_server.namespace import Namespace
from devstack.index_server.sparse import SparseVector


def metadata_of(size: int) -> dict[str, str]:
    """Metadata whose compact JSON is *size* bytes: {"t":"xx..."}."""
    meta = {"t": "x" * (size - 8)}
    assert len(orjson.dumps(meta)) == size
    return meta


def test_a_records_size_is_its_id_metadata_dense_and_sparse_bytes():
    # Storage: 500,000 records x (8-byte ID + 768 x 4 bytes + 500 bytes of metadata) = 1.79 GB.
    size = costs.record_bytes("abcdefgh", 768, metadata_of(500), None)
    assert size == 8 + 768 * 4 + 500
    assert round(500_000 * size / 1e9, 2) == 1.79
    # Each non-zero sparse value adds 8 bytes; an id counts in UTF-8 bytes.
    sparse = SparseVector(np.arange(10, dtype=np.uint32), np.ones(10, dtype=np.float32))
    assert costs.record_bytes("é", 4, None, sparse) == 2 + 16 + 80


@pytest.mark.parametrize(("namespace_bytes", "units"), [
    (0, 0.25), (200_000_000, 0.25), (1_000_000_000, 1.0), (10_000_000_000, 10.0), (7_140_000_000, 7.14)])
def test_a_query_costs_one_read_unit_per_gb_of_namespace_and_at_least_a_quarter(namespace_bytes, units):
    assert costs.query_read_units(namespace_bytes) == pytest.approx(units)


@pytest.mark.parametrize(("records", "units"), [(0, 1), (1, 1), (10, 1), (50, 5), (107, 11)])
def test_a_fetch_costs_one_read_unit_per_ten_records_and_at_least_one(records, units):
    assert costs.fetch_read_units(records) == units


@pytest.mark.parametrize(("record_bytes", "records", "units"), [
    # The upsert table: records per batch, average record size, WUs (all records new).
    (3_200, 1, 5), (3_200, 2, 7), (19_100, 10, 191), (3_570, 100, 357), (7_140, 1_000, 7_140)])
def test_upserts_and_deletes_cost_one_write_unit_per_kb_and_at_least_five(record_bytes, records, units):
    assert costs.write_units(record_bytes * records) == units


@pytest.mark.parametrize(("new", "old", "units"), [
    # The update table: new record size, previous record size, WUs.
    (6_240, 6_500, 13), (3_570, 5_000, 9), (7_140, 10_000, 18), (3_170, 3_170, 7)])
def test_an_update_costs_the_new_and_the_existing_record(new, old, units):
    assert costs.write_units(new + old) == units


def test_a_namespace_keeps_the_sum_of_its_record_sizes_through_every_change():
    ns = Namespace(4)
    values = np.ones((3, 4), dtype=np.float32)

    def expected() -> int:
        return sum(costs.record_bytes(vid, 4, ns.metadata[row], ns.sparse[row]) for vid, row in ns.rows.items())

    ns.put(["a", "bb", "ccc"], values, [metadata_of(20), None, metadata_of(40)])
    assert ns.bytes == expected() == (1 + 20 + 16) + (2 + 16) + (3 + 40 + 16)
    ns.put(["bb"], values[:1], [metadata_of(100)])  # overwrite
    ns.set_metadata(ns.rows["a"], None)
    ns.set_sparse(ns.rows["ccc"], SparseVector(np.array([7], np.uint32), np.array([1.0], np.float32)))
    assert ns.bytes == expected()
    ns.remove(["a", "missing"])  # swap-with-last keeps each row's size with its record
    assert ns.bytes == expected() == (2 + 100 + 16) + (3 + 40 + 16 + 8)
    ns.remove(["bb", "ccc"])
    assert ns.bytes == 0 and ns.sizes == []


@pytest.mark.parametrize(("payload", "requests"), [(0, 1), (65_536, 1), (65_537, 2), (262_144, 4)])
def test_sqs_bills_a_request_per_64_kib_chunk_of_payload(payload, requests):
    # SQS pricing: "an API action with a 256 KB payload is billed as 4 requests".
    assert billed_requests(payload) == requests


def test_an_sqs_payload_is_the_bodies_and_attributes_sent_or_received():
    attribute = {"kind": {"DataType": "String", "StringValue": "abc"}}
    batch = {"Entries": [{"Id": "1", "MessageBody": "é" * 10}, {"Id": "2", "MessageBody": "x", "MessageAttributes": attribute}]}
    assert payload_bytes("SendMessageBatch", batch, None) == 20 + 1 + len("kind") + len("String") + 3
    assert payload_bytes("ReceiveMessage", {}, {"Messages": [{"Body": "abcd"}, {"Body": "ef"}]}) == 6
    assert payload_bytes("ReceiveMessage", {}, {}) == 0  # an empty receive is still one request
    assert payload_bytes("SendMessage", {"MessageBody": "a\ud800"}, None) == 4  # refused by SQS, but counted
    assert payload_bytes("DeleteMessageBatch", {"Entries": [{"Id": "1", "ReceiptHandle": "r" * 100}]}, None) == 0


def test_a_meter_counts_per_operation_and_a_reset_hands_over_what_it_held():
    meter = Meter(("requests", "read_units"), latency_ms=5)
    meter.add("query", requests=1, read_units=0.25)
    meter.add("query", requests=1, read_units=0.25)
    meter.add("fetch", requests=1, read_units=3)
    held = meter.snapshot(reset=True)
    assert held["operations"] == {"fetch": {"requests": 1, "read_units": 3}, "query": {"requests": 2, "read_units": 0.5}}
    assert held["totals"] == {"requests": 3, "read_units": 3.5} and held["latency_ms"] == 5
    after = meter.snapshot()
    assert after["operations"] == {} and after["totals"] == {"requests": 0, "read_units": 0}
    assert after["since"] >= held["since"]


@pytest.mark.parametrize("bad", [-1, 60_001, "10", None, True])
def test_a_latency_outside_0_to_60_s_is_refused(bad):
    with pytest.raises(ValueError, match="latency_ms must be a number"):
        check_latency_ms(bad)


def test_the_counters_of_a_document_index_are_its_servers():
    from devstack.costs import _bases

    env = {"PINECONE_HOST": "http://127.0.0.1:5081/document-indexes/products", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000/"}
    assert _bases(env) == {"index": "http://127.0.0.1:5081", "aws": "http://127.0.0.1:5000"}
    assert _bases({**env, "PINECONE_HOST": "http://127.0.0.1:5081/"})["index"] == "http://127.0.0.1:5081"
