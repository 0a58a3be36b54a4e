"""The document-index measurement (benchmarks/document_index.py) end to end on a tiny
BEIR folder: it starts the real local index server, indexes the corpus as documents
through the SDK and scores full-text keyword search."""

from __future__ import annotations

import json

import pytest

from benchmarks import document_index

pytestmark = pytest.mark.timeout(120)


def write_beir(folder, corpus, queries, qrels):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels))


def test_keyword_search_scores_and_counts_one_request_per_query(tmp_path):
    write_beir(
        tmp_path / "beir",
        corpus=[{"_id": "d1", "title": "Vitamin D", "text": "Vitamin D deficiency raises fracture risk."},
                {"_id": "d2", "title": "Statins", "text": "Statins lower cholesterol in adults."},
                {"_id": "d3", "title": "Sleep", "text": "Short sleep is linked to obesity."}],
        queries=[{"_id": "q1", "text": "does vitamin d deficiency cause fractures"},
                 {"_id": "q2", "text": "cholesterol lowering drugs"},
                 {"_id": "q3", "text": "quantum chromodynamics"}],
        qrels=[("q1", "d1"), ("q2", "d2"), ("q3", "d3")],
    )
    out = tmp_path / "result.json"
    assert document_index.main([str(tmp_path / "beir"), "--no-dense", "--sparse", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    keyword = result["keyword"]
    # q1 and q2 find their document first; q3 shares no term with any document and scores 0
    assert keyword["ndcg@10"] == pytest.approx(2 / 3, abs=1e-4)
    assert keyword["requests_per_query"] == 1.0
    assert keyword["read_units_per_query"] == pytest.approx(0.25)  # the documented minimum
    assert "semantic" not in result
    # our own BM25 sparse vectors in a sparse_vector field find the same two; q3's
    # terms, unseen in the corpus, share no index with a document, so nothing matches
    assert result["keyword_sparse"]["ndcg@10"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["keyword_sparse"]["requests_per_query"] == 1.0


def test_rrf_fuses_rankings_by_rank():
    # c: 1/63 + 1/61 beats b: 1/62 + 1/62, by a hair; a, in one ranking only, comes last
    assert document_index.rrf([["a", "b", "c"], ["c", "b"]]) == ["c", "b", "a"]
