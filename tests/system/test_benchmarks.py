"""Runs the evaluation and the benchmark scripts at a tiny size, so they cannot rot:
each on its own private stack, checked for well-formed output, not for speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED

from benchmarks import beir, cuda, workload
from benchmarks.metrics import evaluate

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


@pytest.mark.stack
@pytest.mark.timeout(900)
def test_benchmark_at_a_tiny_size(tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--sizes", "120,200", "--freshness-samples", "3",
         "--freshness-spacing", "0.2", "--concurrency", "1,2", "--search-requests", "8", "--output", str(out), "--chart", str(png),
         # Minutes of work each at their fixed sizes: search_load has a tiny-size test in
         # test_query_batching, cost one below; the capture and runtimes benchmarks run under make bench only.
         "--skip-runtimes", "--skip-capture", "--skip-search-load", "--skip-cost"],
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
    assert r["search_breakdown"]["queries"] > 0 and r["search_breakdown"]["embed_ms"]["p50"] > 0
    assert r["search_breakdown"]["embed_ms_1_thread"]["p50"] > 0
    fresh = r["freshness"]
    assert fresh["samples"] == 3 and 0 < fresh["p50_s"] <= fresh["p95_s"] <= fresh["max_s"]
    search = r["search"]
    if (REPO / "apps" / "frontend" / "frontend" / "__main__.py").exists():
        assert set(search["levels"]) == {"1", "2"}
        for level in search["levels"].values():
            assert level["requests"] > 0 and level["errors"] == 0
            assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"] and level["qps"] > 0
    assert "machine:" in proc.stdout and "(b)/(a)" in proc.stdout
    if r["cuda"].get("skipped") and cuda.stored_gpu_backfill() is not None:  # no GPU here: the stored figures are printed
        assert r["cuda"]["backfill"] == cuda.stored_gpu_backfill()
        assert "GPU end-to-end backfill" in proc.stdout and "N=50,000" in proc.stdout


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


def test_ordering_benchmark_runs_both_queue_kinds_at_tiny_size(tmp_path):
    out = tmp_path / "ordering.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.ordering", "--rows", "60", "--rounds", "1",
                           "--freshness-samples", "2", "--freshness-spacing", "0.1", "--output", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["kind"] for r in result["runs"]] == ["standard", "fifo"]
    assert all(r["rows_per_s"] > 0 and r["freshness_p95_s"] > 0 for r in result["runs"])
    assert set(result["fifo_over_standard"]) == {"rows_per_s", "freshness_p50_s", "freshness_p95_s"}
    assert "fifo/std" in done.stdout


def test_capture_benchmark_builds_every_design_and_counts_what_each_captures(tmp_path):
    """benchmarks.capture at a tiny size: every capture design's schema builds, pgbench
    runs against each, the bulk UPDATE's captured rows say which designs capture
    (every row once) and which does not (`none`), and every design stamps versions."""
    out = tmp_path / "capture.json"
    products = 40
    done = subprocess.run([sys.executable, "-m", "benchmarks.capture", "--duration", "1", "--rounds", "1", "--clients", "2",
                           "--products", str(products), "--bulk-rounds", "1", "--freshness-samples", "2",
                           "--freshness-spacing", "0.1", "--idle-window", "1", "--output", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    writers = result["writers"]["variants"]
    assert set(writers) == {"old", "after", "new", "statement", "none"}
    assert all(v["tps_median"] > 0 for v in writers.values())
    captured = {name: v["changes_captured"] for name, v in result["bulk"]["variants"].items()}
    assert captured == {"old": products, "after": products, "new": products, "statement": products, "none": 0}
    # Every design stamps each updated row's version, `none` too: it differs from new by the capture alone.
    assert {name: v["versions_raised"] for name, v in result["bulk"]["variants"].items()} == dict.fromkeys(captured, products)
    assert writers["new"]["notifications_per_s_median"] == 0
    assert {name: f["samples"] for name, f in result["freshness"].items()} == {"new": 2, "old": 2}


@pytest.mark.timeout(900)
def test_cost_benchmark_counts_each_shapes_requests_at_a_tiny_size(tmp_path):
    out = tmp_path / "cost.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cost", "--rows", "300", "--changes", "60", "--burst", "300",
         "--latency-ms", "20", "--output", str(out)],
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
