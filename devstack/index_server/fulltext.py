"""Full-text search for the local server's document indexes, on tantivy.

Pinecone scores a ``string`` field declared with ``full_text_search`` by BM25 and
parses ``query_string`` clauses as Lucene syntax (Pinecone docs: Full-text search,
Full-text search query syntax, Full-text search text processing). The local server
does not score text itself: each namespace of a document index keeps a tantivy
index (a Lucene-like engine in Rust: BM25, positions for phrases, a Lucene-style
query parser), and this module maps Pinecone's analyzer settings and query clauses
onto it.

The analyzer, as the text-processing page lists its steps: split on whitespace and
punctuation, lower-case, stem when ``stemming`` is on (the stemmer named by
``language``), drop stop words when ``stop_words`` is on, cap tokens at 40
characters. Tantivy's ``remove_long`` filter drops a longer token where Pinecone
caps it, and counts UTF-8 bytes, not characters; no product text has such a token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import tantivy

# Pinecone docs, Full-text search text processing: "Cap each token at 40 characters".
MAX_TOKEN_CHARS = 40
# The languages the 2026-07 SDK sends as short codes (schema_builder), mapped to the
# names tantivy's stemmer and stop-word filters take. Pinecone also lists Arabic,
# Greek, Tamil, Romanian and Turkish; tantivy stems them but has no stop words.
LANGUAGES = {
    "ar": "arabic", "da": "danish", "de": "german", "el": "greek", "en": "english",
    "es": "spanish", "fi": "finnish", "fr": "french", "hu": "hungarian", "it": "italian",
    "nl": "dutch", "no": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sv": "swedish", "ta": "tamil", "tr": "turkish",
}
_STOP_WORD_LANGUAGES = frozenset({
    "danish", "dutch", "english", "finnish", "french", "german", "hungarian", "italian",
    "norwegian", "portuguese", "russian", "spanish", "swedish",
})
ID_FIELD = "_id"


class FullTextConfigError(ValueError):
    """A ``full_text_search`` config the server refuses (the API answers 400)."""


def check_config(field: str, config: Any) -> dict[str, Any]:
    """The ``full_text_search`` config of *field*, checked: a dict of ``language``
    (a short code of :data:`LANGUAGES`, default ``en``), ``stemming`` and ``stop_words``
    (booleans, default false; stop words need stemming, as the SDK also checks).
    ``ngram`` is refused: the local server does not serve substring matching.

    Raises:
        FullTextConfigError: anything else, with a message naming the field.
    """
    if not isinstance(config, dict):
        raise FullTextConfigError(f"Field '{field}': full_text_search must be an object")
    unknown = set(config) - {"language", "stemming", "stop_words"}
    if "ngram" in unknown:
        raise FullTextConfigError(
            f"Field '{field}': ngram full-text search is not served by the local index server"
        )
    if unknown:
        raise FullTextConfigError(
            f"Field '{field}': unknown full_text_search option(s) {sorted(unknown)}; "
            f"expected language, stemming, stop_words"
        )
    language = config.get("language", "en")
    if language not in LANGUAGES:
        raise FullTextConfigError(
            f"Field '{field}': unsupported full_text_search language {language!r}; "
            f"supported: {sorted(LANGUAGES)}"
        )
    for key in ("stemming", "stop_words"):
        if key in config and not isinstance(config[key], bool):
            raise FullTextConfigError(f"Field '{field}': full_text_search.{key} must be a boolean")
    if config.get("stop_words") and not config.get("stemming"):
        raise FullTextConfigError(f"Field '{field}': stop_words requires stemming to be enabled")
    if config.get("stop_words") and LANGUAGES[language] not in _STOP_WORD_LANGUAGES:
        raise FullTextConfigError(
            f"Field '{field}': language {language!r} has no stop word list"
        )
    return config


def build_analyzer(config: dict[str, Any]) -> tantivy.TextAnalyzer:
    """The tantivy analyzer for one field's checked ``full_text_search`` config."""
    language = LANGUAGES[config.get("language", "en")]
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_CHARS + 1))
        .filter(tantivy.Filter.lowercase())
    )
    if config.get("stop_words"):  # before stemming: the lists hold whole words
        builder = builder.filter(tantivy.Filter.stopword(language))
    if config.get("stemming"):
        builder = builder.filter(tantivy.Filter.stemmer(language))
    return builder.build()


class QueryError(ValueError):
    """A ``query_string`` the Lucene-style parser cannot read (the API answers 400)."""


class TextIndex:
    """The full-text side of one namespace: one tantivy index in memory over the
    namespace's full-text fields, each with its own analyzer, keyed by ``_id``.

    Writes are committed at once (a document upserted is searchable on the next
    request). Thread-safe: one lock around writes and searches."""

    def __init__(self, fields: dict[str, dict[str, Any]]) -> None:
        self.fields = dict(fields)
        builder = tantivy.SchemaBuilder()
        builder.add_text_field(ID_FIELD, stored=True, tokenizer_name="raw")
        for name in self.fields:
            builder.add_text_field(name, stored=False, tokenizer_name=_tokenizer_name(name),
                                   index_option="position")
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema)
        self.analyzers = {name: build_analyzer(cfg) for name, cfg in self.fields.items()}
        for name, analyzer in self.analyzers.items():
            self.index.register_tokenizer(_tokenizer_name(name), analyzer)
        self.writer = self.index.writer(heap_size=15_000_000, num_threads=1)
        self._lock = threading.Lock()

    def write(self, upserts: Iterable[tuple[str, dict[str, Any]]], deletes: Iterable[str] = ()) -> None:
        """Index *upserts* (``(_id, document)``: each full-text field's string, where
        present) in place of any earlier version, remove *deletes*, and commit."""
        with self._lock:
            for doc_id in deletes:
                self.writer.delete_documents(ID_FIELD, doc_id)
            for doc_id, document in upserts:
                self.writer.delete_documents(ID_FIELD, doc_id)
                values = {ID_FIELD: [doc_id]}
                for name in self.fields:
                    text = document.get(name)
                    if isinstance(text, str):
                        values[name] = [text]
                self.writer.add_document(tantivy.Document(**values))
            self.writer.commit()
            self.index.reload()

    def clear(self) -> None:
        """Remove every document."""
        with self._lock:
            self.writer.delete_all_documents()
            self.writer.commit()
            self.index.reload()

    def terms(self, field: str, text: str) -> list[str]:
        """*text* as the field's analyzer tokenises it (query and index alike)."""
        return self.analyzers[field].analyze(text)

    def text_query(self, fields: list[str], text: str) -> tantivy.Query | None:
        """A ``type: "text"`` clause: each analysed term of *text* in each of *fields*,
        OR'd, so the BM25 scores of the terms and fields add up. Operators are plain
        text here (Pinecone docs: query syntax, token matching). None when no term
        survives analysis."""
        clauses = []
        for field in fields:
            for term in dict.fromkeys(self.terms(field, text)):
                clauses.append((tantivy.Occur.Should, tantivy.Query.term_query(self.schema, field, term)))
        return tantivy.Query.boolean_query(clauses) if clauses else None

    def query_string(self, text: str) -> tantivy.Query:
        """A ``type: "query_string"`` clause, parsed by tantivy's Lucene-style parser
        over every full-text field (unqualified terms search them all; ``field:term``,
        ``AND``/``OR``/``NOT``, ``+``/``-``, ``"phrases"``, ``^boost`` as in Lucene).

        Raises:
            QueryError: a query the parser rejects, or one naming a field that is
                not a full-text field.
        """
        try:
            return self.index.parse_query(text, list(self.fields))
        except ValueError as exc:
            raise QueryError(f"Invalid query_string {text!r}: {exc}") from None

    def match_query(self, field: str, op: str, text: str) -> tantivy.Query | None:
        """A text-match filter on *field*: ``$match_phrase`` (the analysed words in
        order, adjacent), ``$match_all`` (every word), ``$match_any`` (any word).
        None when no word survives analysis (matches nothing)."""
        terms = self.terms(field, text)
        if not terms:
            return None
        if op == "$match_phrase" and len(terms) > 1:
            words: list[str | tuple[int, str]] = list(terms)
            return tantivy.Query.phrase_query(self.schema, field, words)
        occur = tantivy.Occur.Must if op in ("$match_all", "$match_phrase") else tantivy.Occur.Should
        return tantivy.Query.boolean_query(
            [(occur, tantivy.Query.term_query(self.schema, field, t)) for t in dict.fromkeys(terms)]
        )

    def search(self, query: tantivy.Query, limit: int) -> list[tuple[str, float]]:
        """The best *limit* ``(_id, BM25 score)`` pairs for *query*, best first."""
        with self._lock:
            searcher = self.index.searcher()
            if searcher.num_docs == 0:
                return []
            hits = searcher.search(query, limit=max(1, min(limit, searcher.num_docs))).hits
            return [(searcher.doc(address)[ID_FIELD][0], float(score)) for score, address in hits]

    def matching(self, query: tantivy.Query | None) -> set[str]:
        """Every ``_id`` that *query* matches (none for None)."""
        if query is None:
            return set()
        with self._lock:
            searcher = self.index.searcher()
            if searcher.num_docs == 0:
                return set()
            hits = searcher.search(query, limit=searcher.num_docs).hits
            return {searcher.doc(address)[ID_FIELD][0] for _score, address in hits}


def _tokenizer_name(field: str) -> str:
    return f"pinecone_fts:{field}"
