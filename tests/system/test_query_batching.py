"""The frontend's query embedding under concurrency (frontend.query_embedding): the
real all-MiniLM-L6-v2 Embedder behind a thin recording wrapper, so batches, cache hits
and failures are counted on real forward passes. Interleavings are made deterministic
by holding one forward pass until the other callers have queued behind it; nothing
here asserts on time."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from devstack.waiting import wait_until
from frontend.config import FrontendSettings, FrontendTuning, QueryEmbeddingSettings
from frontend.query_embedding import (
    BatchingEmbedder,
    QueryEmbedderClosed,
    QueryEmbeddingTimeout,
    QueryVectorCache,
    for_queries,
)
from productsearch.settings import ConfigError
from tests.kit.embedders import Recording

QUERIES = ["wireless controller for gaming", "ergonomic office chair", "stainless steel water bottle",
           "noise cancelling headphones", "kids rain jacket", "cast iron skillet", "usb-c charging cable",
           "trail running shoes", "organic green tea", "mechanical keyboard with backlight", "yoga mat",
           "portable bluetooth speaker"]


@pytest.fixture
def recording(embedder):
    rec = Recording(embedder)
    yield rec
    rec.release.set()


def batcher(rec, **kw) -> BatchingEmbedder:
    options = {"window_s": 0.005, "max_batch": 32, "cache": None, "timeout_s": 60.0, **kw}
    return BatchingEmbedder(rec, **options)


def hold_worker(b: BatchingEmbedder, rec: Recording) -> dict:
    """Starts a forward pass that stays running until rec.release is set."""
    rec.hold_on = "<gate>"
    out: dict = {}

    def gate():
        try:
            out["vector"] = b.embed(["<gate>"])
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            out["error"] = exc

    thread = threading.Thread(target=gate, daemon=True)
    thread.start()
    assert rec.held.wait(60), "the gate's forward pass did not start"
    out["thread"] = thread
    return out


def together(b: BatchingEmbedder, texts: list[str]) -> tuple[list, list[threading.Thread]]:
    """One thread per text, released at once by a barrier; results[i] is texts[i]'s
    row or the exception its embed raised."""
    results: list = [None] * len(texts)
    barrier = threading.Barrier(len(texts))

    def call(i):
        barrier.wait()
        try:
            results[i] = b.embed([texts[i]])[0]
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(len(texts))]
    for t in threads:
        t.start()
    return results, threads


def join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a caller is still waiting"


# -- batching ------------------------------------------------------------------------------
def test_concurrent_queries_are_embedded_in_one_forward_pass_with_their_own_rows(recording, embedder):
    b = batcher(recording)
    try:
        gate = hold_worker(b, recording)
        results, threads = together(b, QUERIES)
        wait_until(lambda: b.waiting_callers == len(QUERIES) + 1, 60, 0.01, what="every caller queued")
        recording.release.set()
        join(threads)
        gate["thread"].join(60)
    finally:
        b.close()
    assert len(recording.calls) == 2, recording.calls
    assert recording.calls[0] == ["<gate>"]
    assert sorted(recording.calls[1]) == sorted(QUERIES)  # one forward pass for all twelve
    for text, row in zip(QUERIES, results):
        assert isinstance(row, np.ndarray), row
        assert row.dtype == np.float32 and row.shape == (embedder.settings.dimension,)
        # Padding in a batch moves only the last bits against embedding the text alone.
        np.testing.assert_allclose(row, embedder.embed([text])[0], rtol=0, atol=1e-5)


def test_identical_concurrent_queries_share_one_slot(recording):
    b = batcher(recording)
    texts = ["cast iron skillet"] * 6 + ["yoga mat"] * 3
    try:
        hold_worker(b, recording)
        results, threads = together(b, texts)
        wait_until(lambda: b.waiting_callers == len(texts) + 1, 60, 0.01, what="every caller waiting")
        assert b.queued == 2
        recording.release.set()
        join(threads)
    finally:
        b.close()
    assert len(recording.calls) == 2, recording.calls
    assert sorted(recording.calls[1]) == ["cast iron skillet", "yoga mat"]
    for row in results[1:6]:
        np.testing.assert_array_equal(row, results[0])


def test_the_batch_is_capped_at_max_batch(recording):
    b = batcher(recording, max_batch=5)
    try:
        hold_worker(b, recording)
        results, threads = together(b, QUERIES)
        wait_until(lambda: b.waiting_callers == len(QUERIES) + 1, 60, 0.01, what="every caller queued")
        recording.release.set()
        join(threads)
    finally:
        b.close()
    sizes = [len(call) for call in recording.calls[1:]]
    assert sizes == [5, 5, 2], sizes
    assert all(isinstance(r, np.ndarray) for r in results)


def test_a_lone_query_on_an_idle_embedder_does_not_wait_for_the_window(recording):
    # An hour's window: if a lone query waited for companions it would hit the timeout.
    b = batcher(recording, window_s=3600.0, timeout_s=30.0)
    try:
        for text in QUERIES[:3]:
            assert b.embed([text]).shape == (1, recording.settings.dimension)
    finally:
        b.close()
    assert recording.calls == [[t] for t in QUERIES[:3]]


def test_a_failing_forward_pass_raises_in_every_waiting_caller(recording):
    b = batcher(recording)
    try:
        gate = hold_worker(b, recording)
        results, threads = together(b, QUERIES[:8])
        wait_until(lambda: b.waiting_callers == 9, 60, 0.01, what="every caller queued")
        broken = RuntimeError("forward pass broke")
        recording.fail = broken
        recording.release.set()
        join(threads)
        gate["thread"].join(60)
        assert gate.get("error") is broken
        assert all(r is broken for r in results), results
        recording.fail = None
        assert b.embed(["after the failure"]).shape == (1, recording.settings.dimension)  # the worker lives on
    finally:
        b.close()


def test_a_caller_never_waits_forever(recording):
    b = batcher(recording, timeout_s=0.5)
    try:
        hold_worker(b, recording)
        with pytest.raises(QueryEmbeddingTimeout, match="did not finish within 0.5 s"):
            b.embed(["stuck behind a forward pass that never ends"])
    finally:
        recording.release.set()
        b.close()


def test_close_fails_queued_callers_and_refuses_new_ones(recording):
    b = batcher(recording)
    gate = hold_worker(b, recording)
    results, threads = together(b, QUERIES[:3])
    wait_until(lambda: b.waiting_callers == 4, 60, 0.01, what="every caller queued")
    b.close(timeout_s=0)  # the worker is held in a forward pass: do not wait for it
    recording.release.set()
    join(threads)
    gate["thread"].join(60)
    assert isinstance(gate.get("vector"), np.ndarray)  # the running pass still completes
    assert all(isinstance(r, QueryEmbedderClosed) for r in results), results
    with pytest.raises(QueryEmbedderClosed):
        b.embed(["too late"])
    b._worker.join(60)
    assert not b._worker.is_alive()


def test_submit_returns_while_the_forward_pass_runs_and_result_waits_for_it(recording, embedder):
    b = batcher(recording)
    try:
        gate = hold_worker(b, recording)
        pending = b.submit(["yoga mat", "cast iron skillet"])  # returns although no pass can run yet
        assert b.waiting_callers == 2 and b.queued == 2
        recording.release.set()
        rows = pending.result()
        assert np.array_equal(pending.result(), rows)  # asked again: the same rows
        gate["thread"].join(60)
    finally:
        b.close()
    assert rows.shape == (2, embedder.settings.dimension) and rows.dtype == np.float32
    alone = embedder.embed(["yoga mat", "cast iron skillet"])
    assert float(np.min(np.sum(rows * alone, axis=1))) > 0.9999
    assert recording.calls == [["<gate>"], ["yoga mat", "cast iron skillet"]]
    assert b.waiting_callers == 0


def test_a_discarded_submit_stops_waiting_but_its_text_still_serves_a_caller_sharing_it(recording, embedder):
    b = batcher(recording)
    try:
        gate = hold_worker(b, recording)
        dropped = b.submit(["kids rain jacket"])
        results, threads = together(b, ["kids rain jacket"])  # the same text, in flight: one slot
        wait_until(lambda: b.waiting_callers == 3, 60, 0.01, what="the second caller waiting")
        dropped.discard()
        dropped.discard()  # idempotent: counted once
        assert b.waiting_callers == 2
        recording.release.set()
        join(threads)
        gate["thread"].join(60)
    finally:
        b.close()
    assert isinstance(results[0], np.ndarray)
    assert recording.calls == [["<gate>"], ["kids rain jacket"]]
    assert b.waiting_callers == 0


def test_many_texts_in_one_call_come_back_in_order(recording, embedder):
    b = batcher(recording, cache=QueryVectorCache(16))
    try:
        b.embed(["yoga mat"])
        out = b.embed(["kids rain jacket", "yoga mat", "kids rain jacket"])
    finally:
        b.close()
    assert out.shape == (3, embedder.settings.dimension) and out.dtype == np.float32
    assert recording.calls == [["yoga mat"], ["kids rain jacket"]]  # cached and duplicate texts are not re-embedded
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_allclose(out[1], embedder.embed(["yoga mat"])[0], rtol=0, atol=1e-5)
    assert b.embed([]).shape == (0, embedder.settings.dimension)


# -- the cache -------------------------------------------------------------------------------
def test_the_cache_answers_without_a_model_call_and_evicts_the_least_recently_used(recording):
    cache = QueryVectorCache(2)
    b = batcher(recording, cache=cache)
    try:
        first = b.embed(["organic green tea"])[0]
        again = b.embed(["organic green tea"])[0]
        assert recording.calls == [["organic green tea"]]
        np.testing.assert_array_equal(first, again)
        again[0] = 42.0  # a caller's array is its own: the cached vector does not change
        np.testing.assert_array_equal(b.embed(["organic green tea"])[0], first)

        b.embed(["yoga mat"])
        b.embed(["organic green tea"])  # now the most recently used
        b.embed(["trail running shoes"])  # a third entry: "yoga mat" goes
        assert len(cache) == 2
        assert "yoga mat" not in cache and "organic green tea" in cache and "trail running shoes" in cache
        calls = len(recording.calls)
        b.embed(["yoga mat"])
        assert len(recording.calls) == calls + 1
        assert cache.hits >= 3
    finally:
        b.close()


def test_a_cache_of_size_zero_stores_nothing():
    cache = QueryVectorCache(0)
    cache.put("a", np.ones(3, dtype=np.float32))
    assert len(cache) == 0 and cache.get("a") is None


# -- settings and wiring ------------------------------------------------------------------------
def test_query_embedding_settings_defaults():
    s = FrontendTuning.parse([]).query_embedding
    assert (s.batch_window_ms, s.max_batch, s.cache_size, s.timeout_seconds) == (3, 32, 4096, 10)


@pytest.mark.parametrize("name, value", [
    ("--query-embedding.max-batch", "0"), ("--query-embedding.max-batch", "257"),
    ("--query-embedding.max-batch", "2.5"), ("--query-embedding.cache-size", "-1"),
    ("--query-embedding.cache-size", "100001"), ("--query-embedding.cache-size", "lots"),
])
def test_bad_query_embedding_settings_are_refused(name, value):
    with pytest.raises(ConfigError, match=name):
        FrontendTuning.parse([name, value])


def test_batching_and_cache_off_leave_the_embedder_unwrapped(recording):
    off = QueryEmbeddingSettings(batch_window_ms=3, max_batch=1, cache_size=0)
    assert for_queries(recording, off) is recording
    cache_only = for_queries(recording, QueryEmbeddingSettings(max_batch=1, cache_size=10))
    try:
        assert isinstance(cache_only, BatchingEmbedder) and cache_only.max_batch == 1
    finally:
        cache_only.close()


@pytest.mark.stack
def test_the_frontends_search_path_uses_the_batching_embedder(parts, recording):
    from frontend.services import Services

    services = Services(FrontendSettings.from_env(parts.env, query_embedding=QueryEmbeddingSettings(cache_size=8)),
                        embedder=recording)
    try:
        search = services.search  # what the UI and the API both search with
        wrapper = search.embedder
        assert isinstance(wrapper, BatchingEmbedder) and wrapper.embedder is recording
        assert services.search.embedder is wrapper  # one batcher and cache per process, not per request
        wrapper.embed(["wireless controller for gaming"])
        services.search.embedder.embed(["wireless controller for gaming"])
        assert recording.calls == [["wireless controller for gaming"]]
    finally:
        services.close()
    assert not wrapper._worker.is_alive()

    plain = Services(FrontendSettings.from_env(parts.env, query_embedding=QueryEmbeddingSettings(max_batch=1, cache_size=0)),
                     embedder=recording)
    try:
        assert plain.search.embedder is recording
    finally:
        plain.close()


# -- through the running frontend ------------------------------------------------------------------
@pytest.mark.stack
def test_concurrent_api_searches_answer_as_lone_ones(stack):
    from tests.e2e import frontend_stack

    # No cache: the lone searches afterwards must embed again, each in a batch of one.
    front = frontend_stack.start(stack, rows=60, editor=None, frontend_options={"query_embedding.cache_size": 0})
    try:
        log = stack.log_path("frontend").read_text(errors="replace")
        assert "queries batched (window 3 ms, at most 32), no cache" in log
        answers: list = [None] * len(QUERIES)
        barrier = threading.Barrier(len(QUERIES))

        def ask(i):
            barrier.wait()
            answers[i] = front.api("/api/search", "POST", {"query": QUERIES[i], "top_k": 5})

        threads = [threading.Thread(target=ask, args=(i,), daemon=True) for i in range(len(QUERIES))]
        for t in threads:
            t.start()
        join(threads)
        for query, answer in zip(QUERIES, answers):
            assert answer.status == 200, (answer.body, frontend_stack._log_tails(stack, ("frontend",)))
            alone = front.search(query, top_k=5)
            assert [r["id"] for r in answer.body["results"]] == [r["id"] for r in alone], query
            assert [r["score"] for r in answer.body["results"]] == pytest.approx([r["score"] for r in alone], abs=1e-4)
    finally:
        frontend_stack.stop(front)
