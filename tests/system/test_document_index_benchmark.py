"""The three-setup measurement (benchmarks/document_index.py) end to end on a tiny
BEIR folder: it starts the real local index server, writes the corpus to a legacy
dotproduct index and to two document indexes through the SDK, tunes the hybrid fusion
on the train split and reports the test split."""

from __future__ import annotations

import json

import pytest

from benchmarks import document_index

pytestmark = pytest.mark.timeout(300)


def write_beir(folder, corpus, queries, qrels):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for split, pairs in qrels.items():
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in pairs))


def test_three_setups_report_every_mode_and_what_a_hybrid_query_costs(tmp_path):
    write_beir(
        tmp_path / "beir",
        corpus=[{"_id": "d1", "title": "Vitamin D", "text": "Vitamin D deficiency raises fracture risk."},
                {"_id": "d2", "title": "Statins", "text": "Statins lower cholesterol in adults."},
                {"_id": "d3", "title": "Sleep", "text": "Short sleep is linked to obesity."},
                {"_id": "d4", "title": "Exercise", "text": "Aerobic exercise improves heart health."}],
        queries=[{"_id": "q1", "text": "does vitamin d deficiency cause fractures"},
                 {"_id": "q2", "text": "cholesterol lowering drugs"},
                 {"_id": "t1", "text": "sleep duration and obesity"},
                 {"_id": "t2", "text": "aerobic exercise heart"}],
        qrels={"test": [("q1", "d1"), ("q2", "d2")], "train": [("t1", "d3"), ("t2", "d4")]},
    )
    out = tmp_path / "result.json"
    assert document_index.main([str(tmp_path / "beir"), "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["split"], result["tune_split"], result["queries"], result["tune_queries"]) == ("test", "train", 2, 2)
    assert set(result["setups"]) == set(document_index.SETUPS)
    for name, setup in result["setups"].items():
        assert setup["records"] == 4 and setup["write_bytes_per_record"] > 4 * 384, name
        for mode in ("semantic", "keyword", "hybrid"):
            # each query's own document shares its rare terms and meaning: found first
            assert setup[mode]["ndcg@10"] == pytest.approx(1.0), (name, mode)
            assert setup[mode]["read_units_per_query"] >= 0.25, (name, mode)  # the documented minimum
    # the legacy index scores dense and sparse in one query; a document index needs two
    assert result["setups"]["legacy"]["hybrid"]["requests_per_query"] == 1.0
    for name in ("documents_sparse", "documents_fulltext"):
        hybrid = result["setups"][name]["hybrid"]
        assert hybrid["requests_per_query"] == 2.0 and hybrid["read_units_per_query"] == pytest.approx(0.5)
        assert hybrid["fusion"] in {"rrf", "weighted_rrf", "score_fusion"} and "train_ndcg@10" in hybrid
    # full-text fields hold the text itself: a bigger record than the sparse vector's
    assert (result["setups"]["documents_fulltext"]["write_bytes_per_record"]
            > result["setups"]["documents_sparse"]["write_bytes_per_record"])
