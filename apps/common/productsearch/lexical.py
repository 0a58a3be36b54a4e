"""Lexical (keyword) retrieval: tokenisation, BM25 sparse vectors and the corpus
statistics they are weighted by. The one home of all three: emu encodes documents,
the frontend's search encodes queries and `pelican refit-lexical` fits the
statistics, each with the functions here.

BM25 is split across the two sides of a sparse dot product, so the index computes
the BM25 score itself (Pinecone hybrid search, dotproduct metric):

    document side, per term:  tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl))
    query side, per distinct term:  idf = ln(1 + (N - df + 0.5) / (df + 0.5))

so query . document = sum over shared terms of idf * tf-part = the document's BM25
score (bm25s method "atire" for the tf part, idf_method "lucene"; tests compare the
two). Each term becomes a sparse index by a stable 32-bit hash (term_id), so no
vocabulary is kept anywhere and a vector written before a refit stays valid after it.

The statistics (N documents, average length, and each term's document frequency)
live in Postgres (schema/000_baseline.sql), fitted from the table by refit().
Between refits they drift a little from the table; nothing breaks: a term no fit has
seen (a product added since, its new SKU) gets the highest idf, so it is found.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import Stemmer

from productsearch import products
from productsearch.documents import SparseVector, lexical_text

log = logging.getLogger(__name__)


def _import_bm25s():
    """bm25s, imported with its optional accelerators jax and numba out of reach.

    When jax is installed, bm25s.selection runs a jax op at import time. With jax[cuda]
    that makes XLA take 75% of the GPU's memory in every process that imports this
    module, and emu then fails to load its model with CUDA out of memory (seen on a GPU
    machine whose image ships jax). On that machine pelican's peak RSS was 658 MiB with
    both imported (jax kept to the CPU by JAX_PLATFORMS=cpu) and 104 MiB without. Only
    bm25s's tokeniser is used here, which needs neither. A module already imported stays
    as it is. The block lasts only while bm25s imports, and every app imports this module
    at start-up on its main thread, before any other thread could import either."""
    blocked = [name for name in ("jax", "numba") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # Python's marker: importing it raises ImportError
    try:
        import bm25s
    finally:
        for name in blocked:
            if sys.modules.get(name, sys) is None:  # still our marker
                del sys.modules[name]
    return bm25s


bm25s = _import_bm25s()

# bm25s's defaults (BM25.__init__), the settings the feasibility run measured.
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75
# A whitespace-separated chunk longer than this is not an identifier a person types
# (a URL, a base64 blob); its pieces still count.
MAX_IDENTIFIER_CHARS = 64

# Snowball's English stemmer (PyStemmer: compiled, no data to download). bm25s's
# English stop words are a list inside the package (bm25s.stopwords), also offline.
_STEMMER = Stemmer.Stemmer("english")
_EDGE_PUNCTUATION = re.compile(r"^\W+|\W+$")
# Word characters joined by - _ . / (SKU-qHUp-446, WH-1000XM4, v2.1, 3.5mm, IL-6).
_JOINED = re.compile(r"\w[-_./]\w")
_DIGIT = re.compile(r"\d")
# bm25s.tokenize's default token pattern: runs of two or more word characters.
_PIECE = re.compile(r"(?u)\b\w\w+\b")


def _identifiers(text: str) -> list[str]:
    """The identifier-like chunks of `text`, lower-cased and whole: a chunk (split on
    whitespace, outer punctuation stripped) that contains a digit or word characters
    joined by - _ . /, unless the plain tokeniser keeps it whole anyway."""
    found = []
    for chunk in text.split():
        chunk = _EDGE_PUNCTUATION.sub("", chunk).lower()
        if not chunk or len(chunk) > MAX_IDENTIFIER_CHARS:
            continue
        if not (_DIGIT.search(chunk) or _JOINED.search(chunk)):
            continue
        if _PIECE.fullmatch(chunk):  # one plain token already (rtx4090, 2024)
            continue
        found.append(chunk)
    return found


# The normal form text is matched in (Unicode Standard Annex #15): compatibility
# composition, so full-width "ＳＫＵ－４４６" and ligatures match their plain forms.
MATCH_NORMAL_FORM = "NFKC"


def match_form(text: str) -> str:
    """`text` as keyword matching sees it: NFKC, case folded (str.casefold: Unicode's
    full case folding, so "ß" matches "ss"), then NFKC again because folding can undo
    a composition. Documents and queries both pass through it (terms_of)."""
    return unicodedata.normalize(MATCH_NORMAL_FORM, unicodedata.normalize(MATCH_NORMAL_FORM, text).casefold())


def terms_of(texts: list[str]) -> list[list[str]]:
    """terms() of each text, tokenising the batch in one bm25s call (it stems each
    distinct word once), for fitting and bulk encoding. Each text is taken in its
    match_form first."""
    if not texts:
        return []
    texts = [match_form(text) for text in texts]
    pieces = bm25s.tokenize(texts, lower=True, stopwords="en", stemmer=_STEMMER, return_ids=False,
                            show_progress=False)
    # return_ids=False: bm25s returns the tokens as strings, though its hints allow ids too.
    return [list(p) + _identifiers(text) for p, text in zip(pieces, texts, strict=True)]  # pyright: ignore[reportReturnType]


def terms(text: str) -> list[str]:
    """The terms BM25 counts in `text`, in order, repeats kept: the text's match_form
    (NFKC, case folded), then bm25s's tokeniser
    (lower-cased runs of 2+ word characters, bm25s's English stop words removed,
    Snowball English stems), plus every identifier-like chunk kept whole and
    lower-cased (`SKU-qHUp-446` -> sku, qhup, 446 and sku-qhup-446), so an exact
    identifier query matches a term that is rare, and therefore weighs most."""
    return terms_of([text])[0]


def matching_spans(text: str, query: str) -> list[tuple[int, int]]:
    """Where `text` holds the query's terms, for highlighting a result: sorted,
    non-overlapping (start, end) character spans. A word (a run of 2+ word characters,
    as bm25s splits) matches when its term (lower-cased, Snowball-stemmed, not a stop
    word: terms()) is one of the query's, so "controllers" in a query marks
    "controller" and "controlling"; an identifier-like chunk (SKU-qHUp-446) matches
    whole when the query holds it whole, and its pieces by the rule for words."""
    wanted = set(terms(query))
    if not wanted or not text:
        return []
    words = list(_PIECE.finditer(text))
    distinct = list(dict.fromkeys(m.group().lower() for m in words))
    term_of = {word: found[0] for word, found in zip(distinct, terms_of(distinct), strict=True) if found}
    spans = [(m.start(), m.end()) for m in words if term_of.get(m.group().lower()) in wanted]
    for chunk in re.finditer(r"\S+", text):
        inner = _EDGE_PUNCTUATION.sub("", chunk.group())
        if inner and inner.lower() in wanted:
            start = chunk.start() + chunk.group().index(inner)
            spans.append((start, start + len(inner)))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def term_id(term: str) -> int:
    """The sparse index of a term: the first 4 bytes of its BLAKE2b hash as an
    unsigned integer (0 <= id < 2**32, Pinecone's uint32 sparse indices). Stable across
    processes, versions and refits; distinct terms rarely share one (then they count
    as one term everywhere: counts, document frequencies and weights)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "big")


def counted_ids(found: Iterable[str]) -> Counter[int]:
    """Occurrences of each term id among terms `found` (terms() or terms_of() output)."""
    return Counter(term_id(t) for t in found)


def term_counts(text: str) -> Counter[int]:
    """Occurrences of each term id in `text`."""
    return counted_ids(terms(text))


@dataclass(frozen=True)
class CorpusStats:
    """The corpus-wide BM25 parameters: `documents` (N) and `average_length` (mean
    number of terms per document) as last fitted; k1 and b are the BM25 constants.
    average_length 0 (never fitted) encodes without length normalisation."""

    documents: int
    average_length: float
    k1: float = DEFAULT_K1
    b: float = DEFAULT_B
    fitted_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """What a job message carries (jobs.encode): the document side's parameters."""
        return {"documents": self.documents, "average_length": self.average_length, "k1": self.k1, "b": self.b}

    @classmethod
    def from_json(cls, raw: Any) -> CorpusStats:
        """Raises ValueError when `raw` is not what to_json writes (numbers in range)."""
        if not isinstance(raw, dict):
            raise ValueError("lexical parameters must be an object")
        values = {}
        for name in ("documents", "average_length", "k1", "b"):
            value = raw.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"lexical parameter {name} must be a finite number")
            values[name] = value
        if values["documents"] < 0 or values["average_length"] < 0 or values["k1"] <= 0 or not 0 <= values["b"] <= 1:
            raise ValueError(f"lexical parameters out of range: {values}")
        return cls(int(values["documents"]), float(values["average_length"]), float(values["k1"]), float(values["b"]))


# What a job without lexical parameters (sent by a pelican older than them) encodes
# with: no length normalisation (b = 0), which needs no average length.
UNFITTED = CorpusStats(documents=0, average_length=0.0, k1=DEFAULT_K1, b=0.0)


def encode_counts(counts: Mapping[int, int], stats: CorpusStats) -> SparseVector:
    """The document-side BM25 vector of a document given its term-id counts."""
    length = sum(counts.values())
    b = stats.b if stats.average_length > 0 else 0.0
    norm = stats.k1 * (1 - b + (b * length / stats.average_length if b else 0.0))
    return SparseVector.from_weights({i: tf * (stats.k1 + 1) / (tf + norm) for i, tf in counts.items()})


def encode_document(text: str, stats: CorpusStats) -> SparseVector:
    """The document side of BM25 for `text` (see the module docstring): one value per
    distinct term id, tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl)), where len
    is the text's number of terms. Empty when the text has no terms. At most
    documents.MAX_SPARSE_VALUES values: the highest weights are kept."""
    return encode_counts(term_counts(text), stats)


def encode_documents(texts: list[str], stats: list[CorpusStats]) -> list[SparseVector]:
    """encode_document(texts[i], stats[i]) for each i, tokenising the batch in one bm25s
    call: bm25s's setup per call costs more than tokenising a short text, so a batch
    of 64 takes about half the CPU per text of one call each. Raises ValueError
    when the lists differ in length."""
    if len(texts) != len(stats):
        raise ValueError(f"{len(texts)} texts but {len(stats)} statistics")
    return [encode_counts(counted_ids(found), s) for found, s in zip(terms_of(texts), stats, strict=True)]


def idf(document_frequency: int, documents: int) -> float:
    """BM25's idf (Lucene's form, always positive): ln(1 + (N - df + 0.5) / (df + 0.5)).
    df is capped at N, so statistics that lag behind never give less than ln(1 + 1/(2N+1))."""
    df = min(max(document_frequency, 0), max(documents, 0))
    return math.log(1 + (documents - df + 0.5) / (df + 0.5))


def query_term_ids(text: str) -> list[int]:
    """The distinct term ids of a query, in first-seen order."""
    return list(dict.fromkeys(term_id(t) for t in terms(text)))


def encode_query(text: str, document_frequencies: Mapping[int, int], documents: int) -> SparseVector:
    """The query side of BM25: idf of each distinct term of `text`, by its term id.
    document_frequencies maps term id -> df at the last fit (a missing id is df 0: the
    term is newer than the fit, and gets the highest idf); documents is N. Empty when
    the text has no terms (only stop words or punctuation)."""
    return SparseVector.from_weights({i: idf(document_frequencies.get(i, 0), documents) for i in query_term_ids(text)})


# -- the statistics in Postgres ----------------------------------------------------------
# Arbitrary but fixed: two refits never interleave.
REFIT_LOCK_KEY = 7_305_117_006
CORPUS_SQL = "SELECT documents, average_length, k1, b, fitted_at FROM lexical_corpus"
# One indexed lookup per search: N and the query terms' document frequencies, read in
# one statement so both come from the same fit.
QUERY_STATISTICS_SQL = """
SELECT c.documents, t.term_id, t.document_frequency
FROM lexical_corpus c LEFT JOIN lexical_terms t ON t.term_id = ANY(%s::bigint[])
"""


def read_corpus(conn) -> CorpusStats:
    """The corpus row (a dict_row connection). Raises LookupError when the row is
    missing (the migration inserts it; only a hand-edited table lacks it)."""
    row = conn.execute(CORPUS_SQL).fetchone()
    if row is None:
        raise LookupError("lexical_corpus has no row; run `pelican migrate`")
    return CorpusStats(int(row["documents"]), float(row["average_length"]), float(row["k1"]), float(row["b"]),
                       row["fitted_at"])


def query_statistics(conn, ids: list[int]) -> tuple[int, dict[int, int]]:
    """(N, {term id: df}) for the given term ids, from the last fit."""
    rows = conn.execute(QUERY_STATISTICS_SQL, (ids,)).fetchall()
    documents = int(rows[0]["documents"]) if rows else 0
    return documents, {int(r["term_id"]): int(r["document_frequency"]) for r in rows if r["term_id"] is not None}


@dataclass(frozen=True)
class RefitResult:
    documents: int
    average_length: float
    terms: int


def refit(conn, template: str, *, k1: float = DEFAULT_K1, b: float = DEFAULT_B, chunk: int = 2000) -> RefitResult:
    """Recomputes the statistics from every row of `products`, in one transaction: the
    corpus row (N, average length, k1, b, fitted_at = now()) and each term id's document
    frequency. Rows are read through a server-side cursor, `chunk` at a time, so memory
    grows with the vocabulary, not the table. Readers see the old statistics until the
    commit. `template` is INDEXED_TEXT_TEMPLATE (documents.lexical_text: what emu
    encodes). Run as the administrator (`pelican refit-lexical`)."""
    if k1 <= 0 or not 0 <= b <= 1:
        raise ValueError(f"k1 must be positive and b within 0..1, got k1={k1}, b={b}")
    frequencies: Counter[int] = Counter()
    documents = total_length = 0
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (REFIT_LOCK_KEY,))
        with conn.cursor(name="lexical_refit") as cursor:
            cursor.itersize = chunk
            cursor.execute(products.ALL_CONTENT)
            while rows := cursor.fetchmany(chunk):
                for words in terms_of([lexical_text(row, template) for row in rows]):
                    ids = counted_ids(words)
                    frequencies.update(ids.keys())
                    total_length += sum(ids.values())
                    documents += 1
        average = total_length / documents if documents else 0.0
        # DELETE, not TRUNCATE: searches keep reading the old rows until the commit
        # instead of queueing behind TRUNCATE's exclusive lock.
        conn.execute("DELETE FROM lexical_terms")
        with conn.cursor() as cursor, cursor.copy("COPY lexical_terms (term_id, document_frequency) FROM STDIN") as copy:
            for item in frequencies.items():
                copy.write_row(item)
        conn.execute("UPDATE lexical_corpus SET documents = %s, average_length = %s, k1 = %s, b = %s, fitted_at = now()",
                     (documents, average, k1, b))
    log.info("lexical statistics refitted", extra={"documents": documents, "average_length": round(average, 2),
                                                   "terms": len(frequencies)})
    return RefitResult(documents, average, len(frequencies))


def document_frequencies(texts: Iterable[str]) -> tuple[int, float, Counter[int]]:
    """(N, average length, {term id: df}) of `texts`, as refit computes them (tests, tools)."""
    frequencies: Counter[int] = Counter()
    documents = total = 0
    for text in texts:
        counts = term_counts(text)
        frequencies.update(counts.keys())
        total += sum(counts.values())
        documents += 1
    return documents, (total / documents if documents else 0.0), frequencies
