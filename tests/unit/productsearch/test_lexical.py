"""Tokenisation and BM25 encoding (productsearch.lexical), and the job envelope's
lexical parameters."""

from __future__ import annotations

import math
import unicodedata
import os
import subprocess
import sys

import numpy as np
import pytest

from productsearch import jobs, lexical
from productsearch.documents import MAX_SPARSE_VALUES, SparseVector, lexical_text
from productsearch.lexical import UNFITTED as UNFITTED_STATS
from productsearch.lexical import CorpusStats


def test_identifiers_survive_whole_and_lower_cased_beside_their_pieces():
    words = lexical.terms("Headphones SKU-qHUp-446 (WH-1000XM4), rtx4090 and 3.5mm jack; IL-6.")
    assert {"sku-qhup-446", "wh-1000xm4", "rtx4090", "3.5mm", "il-6"} <= set(words)
    assert {"sku", "qhup", "446", "wh", "1000xm4", "headphon", "jack"} <= set(words)
    assert "and" not in words  # an English stop word
    assert words.count("rtx4090") == 1  # a plain token is not counted twice
    assert lexical.terms("sku-qhup-446") == lexical.terms("SKU-qHUp-446")


def test_stems_and_stop_words_make_inflections_match():
    assert lexical.terms("Running shoes") == lexical.terms("run shoe") == ["run", "shoe"]
    assert lexical.terms("the of and") == [] and lexical.terms("!!! ...") == []


def test_term_ids_are_stable_uint32():
    # Fixed value: a vector written by one release must match a query of the next.
    assert lexical.term_id("sku-qhup-446") == int.from_bytes(
        __import__("hashlib").blake2b(b"sku-qhup-446", digest_size=4).digest(), "big")
    ids = {lexical.term_id(t) for t in ("a", "b", "headphon", "sku-qhup-446")}
    assert len(ids) == 4 and all(0 <= i < 2**32 for i in ids)


def test_nothing_is_downloaded_or_read_from_the_network():
    # A fresh interpreter with every socket refused still tokenises.
    code = ("import socket\n"
            "def refuse(*a, **k): raise RuntimeError('network use')\n"
            "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
            "from productsearch import lexical\n"
            "assert lexical.terms('Walking boots') == ['walk', 'boot']\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_bm25s_is_imported_without_jax_or_numba(tmp_path):
    # bm25s imports jax when it is installed and runs a jax op at import time; with
    # jax[cuda] present, that op makes XLA take 75% of the GPU's memory in every
    # process importing lexical, and emu then cannot load its model (seen on a GPU
    # machine). numba, also optional to bm25s, costs seconds and hundreds of MiB.
    # Stand-ins record any import of either; bm25s's tokeniser must still work.
    log = tmp_path / "imports.log"
    fakes = tmp_path / "fakes"
    for package, body in {
        "jax": "open(__import__('os').environ['IMPORT_LOG'], 'a').write('jax\\n')\n",
        "numba": "open(__import__('os').environ['IMPORT_LOG'], 'a').write('numba\\n')\nraise ImportError('a stand-in')\n",
    }.items():
        (fakes / package).mkdir(parents=True)
        (fakes / package / "__init__.py").write_text(body)
    (fakes / "jax" / "lax.py").write_text(
        "import os\nopen(os.environ['IMPORT_LOG'], 'a').write('jax.lax\\n')\n"
        "def top_k(x, k):\n    open(os.environ['IMPORT_LOG'], 'a').write('top_k\\n')\n    return x[:k], list(range(k))\n")
    code = ("import importlib.util, sys\n"
            "assert importlib.util.find_spec('jax') and importlib.util.find_spec('numba')\n"
            "from productsearch import lexical\n"
            "import bm25s.selection\n"
            "assert not bm25s.selection.JAX_IS_AVAILABLE and not bm25s.NUMBA_AVAILABLE\n"
            "assert lexical.terms('Walking boots') == ['walk', 'boot']\n"
            "assert sys.modules.get('jax', 'absent') == 'absent', sys.modules.get('jax')\n")
    env = {**os.environ, "IMPORT_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(fakes), *filter(None, [os.environ.get("PYTHONPATH")])])}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)
    assert not log.exists(), log.read_text()


def test_a_batch_encodes_each_text_as_alone():
    texts = ["Trail running shoes, waterproof", "", "the and of", "SKU-qHUp-446 WH-1000XM4 headphones",
             "Running runs ran", "x" * 5000 + " boots"]
    stats = [CorpusStats(100, 7.5, 1.5, 0.75), UNFITTED_STATS, CorpusStats(3, 2.0, 1.2, 0.3),
             CorpusStats(10, 4.0, 0.9, 0.0), CorpusStats(100, 7.5, 1.5, 0.75), UNFITTED_STATS]
    assert lexical.encode_documents(texts, stats) == [lexical.encode_document(t, s) for t, s in zip(texts, stats)]
    assert lexical.encode_documents([], []) == []
    with pytest.raises(ValueError, match="2 texts but 1 statistics"):
        lexical.encode_documents(["a b", "c d"], stats[:1])


def test_sparse_vector_is_sorted_positive_and_capped_by_weight():
    vec = SparseVector.from_weights({5: 0.5, 1: 2.0, 9: 0.0, 7: float("nan"), 3: 1.0})
    assert vec.indices == (1, 3, 5) and vec.values == (2.0, 1.0, 0.5)
    weights = {i: float(i + 1) for i in range(MAX_SPARSE_VALUES + 50)}
    capped = SparseVector.from_weights(weights)
    assert len(capped) == MAX_SPARSE_VALUES
    assert min(capped.indices) == 50  # the 50 lowest weights went
    assert capped.to_pinecone() == {"indices": list(capped.indices), "values": list(capped.values)}


def test_a_long_document_keeps_its_highest_weighted_terms():
    text = " ".join(f"word{i}x" for i in range(1500)) + " repeated repeated repeated"
    vec = lexical.encode_document(text, CorpusStats(10, 100.0))
    assert len(vec) == MAX_SPARSE_VALUES
    assert lexical.term_id("repeat") in vec.indices


CORPUS = [
    "Wireless noise cancelling headphones with long battery life",
    "Trail running shoes with a waterproof membrane",
    "Waterproof hiking boots for long trails",
    "Noise cancelling earbuds, wireless charging case",
    "Stainless steel water bottle keeps drinks cold",
    "Running socks, breathable and quick drying",
]


@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (1.2, 0.3), (0.9, 0.0)])
def test_query_dot_document_is_the_bm25_score_bm25s_computes(k1, b):
    import bm25s

    documents, average, frequencies = lexical.document_frequencies(CORPUS)
    stats = CorpusStats(documents, average, k1, b)
    vectors = [lexical.encode_document(text, stats) for text in CORPUS]
    # bm25s with the same formula: tf part as ATIRE (with k1 + 1), idf as Lucene.
    retriever = bm25s.BM25(k1=k1, b=b, method="atire", idf_method="lucene")
    retriever.index([lexical.terms(t) for t in CORPUS], show_progress=False)
    for query in ("waterproof running shoes", "wireless noise cancelling", "long trail boots", "bottle"):
        q = lexical.encode_query(query, frequencies, documents)
        ours = np.array([q.dot(v) for v in vectors])
        theirs = retriever.get_scores(lexical.terms(query))
        assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6), query
        assert ours.max() > 0


def test_an_unseen_term_gets_the_highest_idf():
    documents, _, frequencies = lexical.document_frequencies(CORPUS)
    q = lexical.encode_query("waterproof SKU-NEW-1", frequencies, documents)
    weights = dict(zip(q.indices, q.values))
    unseen = weights[lexical.term_id("sku-new-1")]
    assert unseen == pytest.approx(math.log(1 + (documents + 0.5) / 0.5))
    assert unseen == max(weights.values()) > weights[lexical.term_id("waterproof")]


def test_without_parameters_documents_are_not_length_normalised():
    short, long = "boots", "boots " + " ".join(f"filler{i}x" for i in range(50))
    a, b = (lexical.encode_document(t, lexical.UNFITTED) for t in (short, long))
    boot = lexical.term_id("boot")
    assert dict(zip(a.indices, a.values))[boot] == dict(zip(b.indices, b.values))[boot] == pytest.approx(1.0)


def test_the_lexical_text_always_holds_the_sku():
    row = {"name": "Desk lamp", "sku": "LAMP-01", "description": "LED", "price": "9", "category": "home"}
    assert lexical_text(row, "{name} {description}") == "Desk lamp LED LAMP-01"
    assert lexical_text(row, "{sku}: {name}") == "LAMP-01: Desk lamp"


def test_the_job_envelope_carries_the_parameters_and_reads_without_them():
    change = jobs.Change(1, 5, {"name": "n", "sku": "s", "description": "d", "price": "1"})
    stats = CorpusStats(120, 33.5, 1.5, 0.75)
    job = jobs.read(jobs.encode([change], stats))
    assert job.lexical == stats and job.changes == [change]
    old = jobs.read(jobs.encode([change]))
    assert old.lexical is None and old.lexical_problem is None and old.changes == [change]
    body = jobs.encode([change]).replace('"changes"', '"lexical":{"documents":1,"average_length":-3,"k1":1,"b":2},"changes"')
    bad = jobs.read(body)
    assert bad.lexical is None and "out of range" in bad.lexical_problem and bad.changes == [change]


def test_full_width_decomposed_and_case_folded_forms_give_the_same_terms():
    plain = lexical.terms("SKU-qHUp-446 Crème Straße")
    for variant in ("ＳＫＵ－ｑＨＵｐ－４４６ Crème Straße",  # full-width (CJK keyboard width)
                    unicodedata.normalize("NFD", "SKU-qHUp-446 Crème Straße"),  # decomposed
                    "sku-qhup-446 CRÈME STRASSE"):  # case folding: ß is ss
        assert lexical.terms(variant) == plain, variant
    assert "sku-qhup-446" in plain
    assert lexical.match_form("ﬁne ＡＢ") == "fine ab"
