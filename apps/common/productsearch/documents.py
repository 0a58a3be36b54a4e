"""What a product becomes in the index: its indexed text, its metadata, its id and
the shape of its sparse vector.

Pinecone's documented limits are checked here, before a request is made, so a row
that can never be indexed is recognised as such (and dead-lettered with the reason)
instead of being retried forever.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from productsearch.products import CONTENT_COLUMNS

# Pinecone limits (docs: "Limits" for serverless indexes).
MAX_ID_BYTES = 512
MAX_METADATA_BYTES = 40 * 1024
# The longest indexed text (UTF-8 bytes) the pipeline carries: a job caps each text
# field just above it (jobs.MAX_FIELD_BYTES), so a longer text would reach emu cut
# short and its record could never match the row. The model reads its first 256
# tokens (about 1 KB) anyway.
MAX_TEXT_BYTES = 40 * 1024
MAX_VECTORS_PER_UPSERT = 1000
MAX_UPSERT_REQUEST_BYTES = 2 * 1024 * 1024
# Pinecone docs, Limits: "Sparse vectors can contain no more than 1000 non-zero values."
MAX_SPARSE_VALUES = 1000


@dataclass(frozen=True)
class SparseVector:
    """A Pinecone sparse vector: `indices` sorted, unique uint32; `values` finite and
    positive, one per index. Build it with from_weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    @classmethod
    def from_weights(cls, weights: Mapping[int, float], limit: int = MAX_SPARSE_VALUES) -> SparseVector:
        """From {index: weight}, dropping weights that are not finite and positive and,
        beyond `limit` entries, keeping the highest weights (Pinecone docs: Limits,
        MAX_SPARSE_VALUES)."""
        kept = [(i, float(w)) for i, w in weights.items() if math.isfinite(w) and w > 0]
        if len(kept) > limit:
            kept = sorted(kept, key=lambda item: (-item[1], item[0]))[:limit]
        kept.sort()
        return cls(tuple(i for i, _ in kept), tuple(w for _, w in kept))

    def __bool__(self) -> bool:
        return bool(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def scaled(self, factor: float) -> SparseVector:
        return SparseVector(self.indices, tuple(v * factor for v in self.values))

    def dot(self, other: SparseVector) -> float:
        mine = dict(zip(self.indices, self.values))
        return sum(mine.get(i, 0.0) * v for i, v in zip(other.indices, other.values))

    def to_pinecone(self) -> dict[str, list]:
        """The SDK's and the REST API's shape: {"indices": [...], "values": [...]}."""
        return {"indices": list(self.indices), "values": list(self.values)}


class UnindexableProduct(ValueError):
    """The row can never be indexed as it stands; the message says why."""


def indexed_text(product: dict[str, Any], template: str) -> str:
    values = {column: "" if product.get(column) is None else str(product[column]) for column in CONTENT_COLUMNS}
    return template.format(**values).strip()


def lexical_text(product: dict[str, Any], template: str) -> str:
    """The text of a product's BM25 sparse vector (productsearch.lexical): the indexed
    text, plus the SKU when the template leaves it out, so a product is always found
    by its SKU. emu encodes it and `pelican refit-lexical` counts it, both with the
    deployment's INDEXED_TEXT_TEMPLATE."""
    text = indexed_text(product, template)
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    sku = product.get("sku")
    if "sku" not in fields and sku is not None and str(sku).strip():
        text = f"{text} {str(sku).strip()}".strip()
    return text


def vector_id(product_id: int) -> str:
    return str(product_id)


_ASCII_DIGITS = re.compile(r"[0-9]+")


def is_ascii_digits(text: str) -> bool:
    """Whether `text` is one or more ASCII decimal digits: the only way an id or a
    version is written. str.isdigit() also takes superscripts ("²", which int()
    refuses) and other scripts' digits ("١٢", which int() reads as 12)."""
    return bool(_ASCII_DIGITS.fullmatch(text))


# products.id is a bigint.
MAX_PRODUCT_ID = 2**63 - 1


def product_id_of(vid: str) -> int | None:
    """The product id a vector id names (vector_id's inverse), or None for an id that
    is not ASCII digits within a bigint (a stray record no product could have written)."""
    if not is_ascii_digits(vid) or len(vid) > 19:
        return None
    value = int(vid)
    return value if value <= MAX_PRODUCT_ID else None


def normalise_category(value: Any) -> str:
    """The key a category is compared by: Unicode NFKC, casefolded, stripped; "" for
    none. `Outdoor`, `outdoor` and ` OUTDOOR ` are one category. The row keeps the
    category as written (for display); the index stores this key beside it and the
    search filter normalises the request with this same function, so the UI, the API
    and the index can never disagree."""
    if value is None:
        return ""
    return unicodedata.normalize("NFKC", str(value)).casefold().strip()


# A number written as text, as the page's price boxes and some API clients send it:
# ASCII digits with an optional sign, decimal point and exponent (a JSON number's
# shape, also allowing "+5", "5." and ".5"). Decimal() and float() alone read more:
# "6_0" as 60 (PEP 515's digit grouping) and other scripts' digits ("١٠٠" as 100),
# so a typo or a pasted figure would silently become another price.
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
# The names Decimal() gives a non-finite value, so callers can say "not finite".
_NON_FINITE_TEXT = re.compile(r"[+-]?(?:s?nan|inf|infinity)", re.ASCII | re.IGNORECASE)


def decimal_from_text(text: str) -> Decimal:
    """The number `text` writes, surrounding whitespace ignored: "12", "12.50", "+5",
    ".5", "1e2". A non-finite name ("NaN", "-Infinity", "sNaN") gives that non-finite
    Decimal, for the caller to refuse as not finite. Raises InvalidOperation for any
    other text, including digit grouping ("6_0", "1,000") and non-ASCII digits."""
    stripped = text.strip()
    if _NUMBER_TEXT.fullmatch(stripped) or _NON_FINITE_TEXT.fullmatch(stripped):
        return Decimal(stripped)
    raise InvalidOperation(f"not a number in decimal notation: {text!r}")


def finite_price(value: Any) -> float | None:
    """A price as a JSON-safe float, or None when the value is not a finite number
    (NaN, Infinity, text decimal_from_text refuses, None). Accepts int, float, Decimal
    or str.
    Callers that show a row use this so no stored value can break a JSON answer."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = value if isinstance(value, Decimal) else decimal_from_text(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    as_float = float(number)
    return as_float if math.isfinite(as_float) else None


def text_hash(text: str) -> str:
    """A fingerprint of an indexed text: the first 16 hex digits (64 bits) of its
    SHA-256. Equal fingerprints mean the same text, so the stored dense vector of a
    record whose fingerprint matches still embeds the row's text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# The keys metadata() writes, in its order: a document index search names the fields
# it returns, so this tuple is also what every fetch and search reads back.
METADATA_FIELDS = ("price", "category_key", "text_hash", "version")


def metadata(product: dict[str, Any], version: int, template: str) -> dict[str, Any]:
    """What the index stores beside a product's vectors: only what filters and ranking
    need (the page shows names and descriptions read from Postgres), since every
    query is billed by the namespace's size. `price` and `category_key` are filtered
    on; `version` is the row state's version (products.version; a deletion's for
    tombstones); `text_hash` fingerprints the indexed text (rendered with `template`,
    INDEXED_TEXT_TEMPLATE), so a change that leaves the text alone keeps its dense
    vector without running the model, and reconcile can tell a stale text.

    Raises UnindexableProduct when the price is not a finite, non-negative number:
    the schema refuses such prices (products_price_finite), so this only meets a row
    from a database restored from before that rule, or a malformed job; a vector stored without a
    usable price would break every search that returns it."""
    price = finite_price(product["price"])
    if price is None:
        raise UnindexableProduct(f"price is not a finite number: {product['price']}")
    if price < 0:
        raise UnindexableProduct(f"price is negative: {product['price']}")
    values = (price, normalise_category(product.get("category")), text_hash(indexed_text(product, template)), version)
    return dict(zip(METADATA_FIELDS, values, strict=True))


# The fields of a products document index (Documents API): the dense vector, the
# indexed text and the SKU, both full-text searched (infra.document_index.product_schema
# declares them; a test keeps the two in step).
DENSE_FIELD = "embedding"
TEXT_FIELD = "text"
SKU_FIELD = "sku"


@dataclass(frozen=True)
class IndexRecord:
    """A product as the index stores it. `text`: its indexed text (what the dense
    vector embeds, and what a document index full-text searches); `sku`: its SKU, a
    document index's exact-match field. `sparse`: its BM25 vector (lexical.encode_document
    of lexical_text), written in the same upsert as the dense vector of a legacy index;
    None (or empty) writes the record without sparse values."""

    id: str
    text: str
    metadata: dict[str, Any]
    sparse: SparseVector | None = None
    sku: str = ""

    @property
    def version(self) -> int:
        return int(self.metadata["version"])


def build_record(product: dict[str, Any], version: int, template: str) -> IndexRecord:
    """The index record of `product`, a products row as a dict (products.ROW_COLUMNS),
    at `version`, its text rendered with `template` (INDEXED_TEXT_TEMPLATE). Raises
    UnindexableProduct when the row breaks a limit that retrying cannot fix."""
    record_id = vector_id(product["id"])
    if len(record_id.encode()) > MAX_ID_BYTES:
        raise UnindexableProduct(f"vector id is longer than Pinecone's {MAX_ID_BYTES}-byte limit")
    text = indexed_text(product, template)
    if not text:
        raise UnindexableProduct("indexed text is empty (name and description are blank)")
    check_text_size(text)
    sku = product.get("sku")
    return IndexRecord(id=record_id, text=text, metadata=metadata(product, version, template),
                       sku=str(sku).strip() if sku is not None else "")


def check_text_size(text: str) -> None:
    """Raises UnindexableProduct when `text` is over MAX_TEXT_BYTES in UTF-8."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise UnindexableProduct(f"indexed text is {size} bytes, over the {MAX_TEXT_BYTES}-byte limit this pipeline "
                                 "carries (shorten the description or name)")


def is_current(product: dict[str, Any], indexed: dict[str, Any], template: str) -> bool:
    """True when `indexed` (a vector's metadata as the index returns it) is what
    metadata() writes for `product` (a products row as a dict, products.ROW_COLUMNS)
    with `template`: the index holds the row's current content, so the vector embeds
    its current text.
    Every field metadata() writes is compared except `version`, so a field added there
    is compared here too; a vector that lacks it is not current, and a repair rewrites
    it. Prices compare to the cent (numeric(12,2) in the table, a float in the index).
    A row that cannot be indexed at all (UnindexableProduct) is never current.

    Reconcile's "stale" (not current) and the frontend's "searchable" are both this one
    question."""
    try:
        expected = metadata(product, 0, template)
    except UnindexableProduct:
        return False
    for key, value in expected.items():
        if key == "version":
            continue
        got = indexed.get(key)
        if key == "price":
            try:
                if Decimal(str(got)).quantize(Decimal("0.01")) != Decimal(str(value)).quantize(Decimal("0.01")):
                    return False
            except (InvalidOperation, TypeError, ValueError):
                return False
        elif got != value:
            return False
    return True
