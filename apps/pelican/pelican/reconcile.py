"""Compares the table with the index and, with repair, re-captures the drift.

- missing:  a row with no vector
- stale:    a vector whose metadata (written in the same upsert as the vector, from
            the same row state) is not the row's current content (documents.is_current),
            so the vector embeds old text
- orphaned: a vector with no row

Both sides are streamed in pages (keyset over the table, `list` over the index), so
memory stays flat however large the catalog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tqdm import tqdm

from pelican.recapture import recapture
from productsearch import db, products
from productsearch.documents import is_current, product_id_of
from productsearch.index import ProductIndex
from productsearch.settings import DatabaseSettings, IndexSettings, text_template_from_env

log = logging.getLogger(__name__)

# How many drifting ids the report names: enough to look a few up by hand, short
# enough to read in a terminal; the counts cover the rest.
SHOWN_IDS = 20

@dataclass
class ReconcileReport:
    rows: int = 0
    vectors: int = 0
    missing: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    orphaned: list[int] = field(default_factory=list)
    repaired: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.orphaned)

    def summary_line(self) -> str:
        line = f"missing={len(self.missing)} stale={len(self.stale)} orphaned={len(self.orphaned)}"
        return line + (f" repaired={self.repaired}" if self.repaired else "")

    def report_lines(self, shown: int = SHOWN_IDS) -> list[str]:
        """What `pelican reconcile` prints: a plain verdict, the first `shown` drifting
        ids by kind, what to do next, and summary_line() last (scripts read the last
        line)."""
        drift = len(self.missing) + len(self.stale) + len(self.orphaned)
        sizes = f"{self.rows:,} rows, {self.vectors:,} vectors"
        if not drift:
            return [f"no drift: the index matches the table ({sizes})", self.summary_line()]
        lines = [f"drift found: {drift:,} {'product differs' if drift == 1 else 'products differ'} between the "
                 f"table and the index ({sizes})"]
        left = shown
        for kind, what, ids in (("missing", "a row with no vector", self.missing),
                                ("stale", "a vector of an older text", self.stale),
                                ("orphaned", "a vector whose row is gone", self.orphaned)):
            if not ids:
                continue
            listed = ids[:left]
            text = "ids " + ", ".join(str(i) for i in listed) if listed else "ids not listed"
            if len(ids) > len(listed) and listed:
                text += f" and {len(ids) - len(listed):,} more"
            lines.append(f"  {kind} ({what}): {len(ids):,}: {text}")
            left -= len(listed)
        if self.repaired:
            lines.append(f"repaired: re-captured {self.repaired:,} (each as a repair change); pelican and emu index them as any edit")
        else:
            lines.append("run it again with --repair (make reconcile REPAIR=1) to re-capture them through the pipeline")
        lines.append(self.summary_line())
        return lines


def reconcile(database: DatabaseSettings, index_settings: IndexSettings, *, repair: bool = False,
              page_size: int = 500, progress: bool = True, template: str | None = None) -> ReconcileReport:
    """Compares every row with its vector and every vector with its row, `page_size`
    of each at a time. With repair, every drifted id is re-captured with a version
    above the newest the index holds for it (live or tombstone), so the repair
    overwrites whatever is there and a second run is clean once it is shipped and
    indexed. `template`: INDEXED_TEXT_TEMPLATE, which the index's text fingerprints were
    taken with (None: read from the environment; ConfigError when malformed). Raises
    what the database or the index raise (nothing is repaired then)."""
    template = text_template_from_env() if template is None else template
    report = ReconcileReport()
    index = ProductIndex(index_settings)
    with db.connect(database, application_name="reconcile") as conn:
        total = conn.execute(products.COUNT).fetchone()["n"]
        bar = tqdm(total=total, unit="rows", desc="table -> index", disable=not progress)
        after = 0
        while True:
            rows = conn.execute(products.ROWS_AFTER, (after, page_size)).fetchall()
            conn.commit()
            if not rows:
                break
            after = rows[-1]["id"]
            found = index.fetch([str(r["id"]) for r in rows])
            for row in rows:
                vector = found.get(str(row["id"]))
                if vector is None:
                    report.missing.append(row["id"])
                elif not is_current(row, dict(vector.metadata or {}), template):
                    report.stale.append(row["id"])
            report.rows += len(rows)
            bar.update(len(rows))
        bar.close()

        bar = tqdm(unit="vectors", desc="index -> table", disable=not progress)
        for ids in index.list_ids(page_size=min(page_size, 100)):
            numeric = [pid for pid in (product_id_of(i) for i in ids) if pid is not None]
            present = {r["id"] for r in conn.execute(products.PRESENT_IDS, (numeric,)).fetchall()}
            conn.commit()
            report.orphaned.extend(int(i) for i in numeric if int(i) not in present)
            strays = [i for i in ids if product_id_of(i) is None]
            if strays:
                log.warning("index holds ids that are not product ids", extra={"ids": strays[:10]})
            report.vectors += len(ids)
            bar.update(len(ids))
        bar.close()

        if repair and not report.clean:
            drift = report.missing + report.stale + report.orphaned
            # Past the newest version the index holds for each id, live or tombstone, so
            # the repair wins whatever restores or clocks did to the table's versions.
            known = index.newest_versions([str(i) for i in drift])
            floors = {i: known.get(str(i), 0) + 1 for i in drift}
            report.repaired = recapture(conn, drift, floors)
    log.info("reconcile finished", extra={"rows": report.rows, "vectors": report.vectors, "missing": len(report.missing),
                                          "stale": len(report.stale), "orphaned": len(report.orphaned), "repaired": report.repaired})
    return report
