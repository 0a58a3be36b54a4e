"""Runs the evaluation and the benchmark scripts at a tiny size, so they cannot rot:
each on its own private stack, checked for well-formed output, not for speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED

from benchmarks import beir, search_load, workload
from benchmarks.metrics import evaluate
from devstack.stack import free_port

SCIFACT = SHARED / "data" / "beir-scifact"


def tiny_beir(folder, n_docs: int = 50, n_queries: int = 4):
    """The first n_docs SciFact documents plus the documents the first n_queries judged
    test queries need, in BEIR layout."""
    full = beir.load(SCIFACT)
    qids = list(full.qrels)[:n_queries]
    wanted = {d for q in qids for d in full.qrels[q]}
    docs = [d for i, d in enumerate(full.corpus) if i < n_docs or d.id in wanted]
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for q in qids:
            f.write(json.dumps({"_id": q, "text": full.queries[q]}) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in qids:
            for d, grade in full.qrels[q].items():
                f.write(f"{q}\t{d}\t{grade}\n")
    return docs, qids


@pytest.fixture
def scifact_subset(tmp_path):
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"{SCIFACT} is not here")
    folder = tmp_path / "scifact-tiny"
    docs, qids = tiny_beir(folder)
    return folder, docs, qids


def test_a_hand_built_perfect_ranking_scores_one(scifact_subset):
    folder, _, _ = scifact_subset
    data = beir.load(folder)
    perfect = {q: sorted(judged, key=judged.get, reverse=True) for q, judged in data.qrels.items()}
    scores = evaluate(perfect, data.qrels)
    assert scores["ndcg@10"] == pytest.approx(1.0) and scores["recall@100"] == pytest.approx(1.0)
    assert evaluate({}, data.qrels)["ndcg@10"] == 0.0


def test_generated_rows_extend_the_catalog_with_unique_skus():
    base = workload.catalog_rows()
    rows = workload.rows(len(base) + 500, base)
    assert rows[: len(base)] == base
    assert len({r["sku"] for r in rows}) == len(rows)
    assert all(r["name"] and r["description"] for r in rows[len(base):])
    assert len(workload.queries(20, base)) == 20


@pytest.mark.stack
@pytest.mark.timeout(600)
def test_evaluate_beir_on_a_tiny_subset(scifact_subset, tmp_path):
    folder, docs, qids = scifact_subset
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.evaluate", str(folder), "--output", str(out),
                           "--min-ndcg", "0.0"], cwd=REPO, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["documents"] == len(docs) and result["queries"] == len(qids)
    assert 0.0 <= result["ndcg@10"] <= 1.0 and 0.0 <= result["recall@100"] <= 1.0
    # With the relevant abstracts among ~50, a working id mapping finds some of them.
    assert result["ndcg@10"] > 0.3 and result["recall@100"] > 0.5
    assert set(result["per_query"]) == set(qids)
    assert result["results_outside_dataset"] == 0 and result["refused_queries"] == {}
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert "nDCG@10" in proc.stdout and "machine:" in proc.stdout

    # --min-ndcg that cannot be met makes the command fail.
    proc = subprocess.run([sys.executable, "-m", "benchmarks.evaluate", str(folder), "--output",
                           str(tmp_path / "eval2.json"), "--limit-queries", "1", "--min-ndcg", "1.01"],
                          cwd=REPO, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAIL" in proc.stdout


@pytest.mark.slow
@pytest.mark.stack
@pytest.mark.timeout(900)
def test_benchmark_at_a_tiny_size(tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--sizes", "120,200", "--freshness-samples", "3",
         "--freshness-spacing", "0.2", "--concurrency", "1,2", "--search-requests", "8", "--output", str(out), "--chart", str(png),
         # Minutes of work at its fixed sizes: the cost benchmark has a tiny-size test of its own below.
         "--skip-cost"],
        cwd=REPO, capture_output=True, text=True, timeout=880,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r["raw_embedding"]["texts"] == 120 and r["raw_embedding"]["texts_per_s"] > 0
    assert [b["rows"] for b in r["backfill"]] == [120, 200]
    for run in r["backfill"]:
        assert run["rows_per_s"] > 0 and run["missing_among_last_1000"] == 0
        assert run["memory_kib"]["pelican"]["peak_rss_kib"] > 0 and run["memory_kib"]["emu"]["peak_rss_kib"] > 0
        assert run["series"][-1][1] >= run["rows"]
        before, after = run["raw_texts_per_s_before_after"]
        assert before > 0 and after > 0
        assert run["ratio_to_raw"] == pytest.approx(run["rows_per_s"] / ((before + after) / 2), abs=0.002)
    # each (b) is bracketed by (a) runs: the second's "before" is the first's "after"
    assert r["backfill"][1]["raw_texts_per_s_before_after"][0] == r["backfill"][0]["raw_texts_per_s_before_after"][1]
    assert r["backfill"][0]["raw_texts_per_s_before_after"][0] == r["raw_embedding"]["texts_per_s"]
    assert r["ratio_b_over_a"] == r["backfill"][0]["ratio_to_raw"] and r["ratio_b_over_a_per_cpu_s"] > 0
    fresh = r["freshness"]
    assert fresh["samples"] == 3 and 0 < fresh["p50_s"] <= fresh["p95_s"] <= fresh["max_s"]
    search = r["search"]
    assert search["rows_indexed"] == 120 and set(search["levels"]) == {"1", "2"}
    for level in search["levels"].values():
        assert level["requests"] == 8 and level["errors"] == 0
        assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"] and level["qps"] > 0
    assert search["frontend_memory_kib"]["peak_rss_kib"] > 0
    stages = search["breakdown"]
    assert stages["queries"] > 0 and stages["query_runtime"]
    assert all(stages[k]["p50"] > 0 for k in ("embed_ms", "index_query_ms", "postgres_rows_ms"))
    assert "machine:" in proc.stdout and "(b)/(a)" in proc.stdout and "search,  2 client(s)" in proc.stdout


@pytest.mark.stack
@pytest.mark.timeout(600)
def test_evaluate_beir_against_a_running_stack_leaves_its_rows_out_and_cleans_up(parts, stack, scifact_subset, tmp_path):
    folder, docs, qids = scifact_subset
    stack.start_app("pelican", options={"poll_interval_seconds": 1})
    stack.start_app("emu")
    catalog = parts.insert_many(30, prefix="catalog")  # rows of the running stack that must not compete
    env_file = tmp_path / "stack.env"
    stack.write_env_file(env_file)
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.evaluate", str(folder), "--use-running-stack",
                           str(env_file), "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["documents"] == len(docs) and result["results_outside_dataset"] == 0
    assert result["ndcg@10"] > 0.3 and "category=beir-scifact-tiny" in result["search_path"]
    left = parts.conn.execute("SELECT count(*) AS n FROM products WHERE category = 'beir-scifact-tiny'").fetchone()["n"]
    assert left == 0
    assert parts.conn.execute("SELECT count(*) AS n FROM products").fetchone()["n"] == len(catalog)


@pytest.mark.timeout(900)
def test_cost_benchmark_counts_each_shapes_requests_at_a_tiny_size(tmp_path):
    out = tmp_path / "cost.json"
    proc = subprocess.run(
        # Each shape's own deadline, well inside the test's, so a run that never settles
        # ends with the benchmark's account of what it waited for and tears its stack down.
        [sys.executable, "-m", "benchmarks.cost", "--rows", "300", "--changes", "60", "--burst", "300",
         "--latency-ms", "20", "--timeout", "180", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=880,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    shapes = r["shapes"]
    assert set(shapes) == {"backfill", "scattered", "text", "hot"}
    # The model runs once per new row and per edited text, never for a price change.
    assert shapes["backfill"]["model_texts"] == shapes["text"]["model_texts"] == 1000.0
    assert shapes["scattered"]["model_texts"] == shapes["hot"]["model_texts"] == 0.0
    assert shapes["scattered"]["vectors_kept"] == 1000.0
    for name, shape in shapes.items():
        ops = shape["index_requests_by_operation"]
        assert shape["index_requests"] == pytest.approx(sum(ops.values()), abs=0.05), name
        # One lookup (and one tombstone check) per write, and never more fetches than upserts need.
        assert ops["upsert"] > 0 and ops["fetch"] > 0, name
        assert shape["write_units"] > 0 and shape["sqs_requests"] > 0 and shape["emu_cpu_s_per_change"] > 0, name
    # A bulk insert is written a lookup at a time: far fewer requests than rows.
    assert shapes["backfill"]["index_requests"] < 100
    b = r["record_bytes"]
    assert b["dense"] == 4 * 384 and b["metadata"] < 200 and b["total"] == pytest.approx(
        b["id"] + b["metadata"] + b["dense"] + b["sparse"], abs=0.2)
    assert 0 < r["price_only_over_text_cpu"] < 1
    lo = r["latency_overlap"]
    assert lo["added_ms"] == 20 and len(lo["ratios"]) == len(lo["ratios_everywhere"]) == 3 and lo["ratio"] > 0
    assert "index requests per 1,000 rows of a bulk insert" in proc.stdout


# -- search under concurrency (benchmarks.search_load) ------------------------------------------
def test_the_search_workload_never_repeats_a_query_and_says_when_it_runs_out():
    base = workload.catalog_rows()
    fresh = search_load.UniqueQueries(base, 600)
    texts = [fresh.take() for _ in range(len(fresh))]
    assert len(texts) > 500 and len(set(texts)) == len(texts)
    with pytest.raises(RuntimeError, match="distinct queries are used up"):
        fresh.take()


def test_the_load_generators_client_counts_a_refused_connection_as_an_error():
    with pytest.raises(ValueError, match="http://"):
        search_load.SearchClient("https://127.0.0.1:1")
    client = search_load.SearchClient(f"http://127.0.0.1:{free_port()}", timeout=5)
    assert client.search({"query": "lamp"}) is False  # nothing listens: an error, not an exception
    client.close()


@pytest.mark.stack
@pytest.mark.timeout(600)
def test_the_search_load_benchmark_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "search-load.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.search_load", "--rows", "30", "--concurrency", "1,4",
                           "--requests", "12", "--output", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["rows"] == 30 and set(r["levels"]) == {"1", "4"}
    for level in r["levels"].values():
        assert level["requests"] == 12 and level["errors"] == 0 and level["qps"] > 0 and level["p95_ms"] > 0
        assert level["client_cpu_ms_per_request"] > 0  # the load generator's own cost is reported
    # The breakdown embeds with the frontend's query runtime (on a CPU: ONNX Runtime on one
    # thread), not emu's torch.
    assert "via onnxruntime" in r["breakdown"]["query_runtime"] and "1 thread)" in r["breakdown"]["query_runtime"]
    assert r["machine"]["cores"] >= 1 and "machine:" in proc.stdout and "search,  4 client(s)" in proc.stdout
