"""The benchmark's data: the sample catalog's own rows, then generated rows in the same
style beyond its 9,999 (a name and a description from two different catalog rows), and
search queries made of catalog phrases."""

from __future__ import annotations

import random
from pathlib import Path

from benchmarks.pipeline import REPO
from productsearch.catalog import LoadReport, parse_rows
from productsearch.documents import indexed_text

CATALOG = REPO / "apps" / "pelican" / "catalog" / "products.csv"


def catalog_rows(path: Path = CATALOG) -> list[dict]:
    """The sample catalog's rows (productsearch.catalog's parser), as dicts."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(parse_rows(handle, LoadReport()))


def rows(n: int, base: list[dict] | None = None) -> list[dict]:
    """n product rows: the catalog's first, then generated ones with unique SKUs."""
    base = base if base is not None else catalog_rows()
    out = [dict(r) for r in base[:n]]
    b = len(base)
    for i in range(len(out), n):
        name_row = base[i % b]
        text_row = base[(7 * i + 3 + i // b) % b]
        out.append({"name": name_row["name"], "sku": f"GEN-{i:08d}", "description": text_row["description"],
                    "price": name_row["price"], "category": name_row["category"]})
    return out


def queries(n: int, base: list[dict], seed: int = 7) -> list[str]:
    """Short shopper-style queries: a few words of a catalog description plus a product kind."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        row = rnd.choice(base)
        words = row["description"].replace("This is a ", "").replace(" product with", "").rstrip(".").split()
        start = rnd.randrange(max(1, len(words) - 3))
        out.append(" ".join(words[start : start + rnd.randint(2, 4)] + [row["category"]]))
    return out


def texts(n: int, template: str, base: list[dict] | None = None) -> list[str]:
    """The texts emu would embed for rows(n): productsearch.documents.indexed_text with
    the EMBEDDING_TEXT_TEMPLATE `template`."""
    return [indexed_text(r, template) for r in rows(n, base)]
