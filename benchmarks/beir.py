"""Reads a dataset in the BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Document:
    """One corpus document: its id, title and text."""
    id: str
    title: str
    text: str


@dataclass
class Dataset:
    """A BEIR dataset for one split: the corpus, the judged queries and their qrels."""
    name: str
    corpus: list[Document]
    queries: dict[str, str]          # only the queries that the split judges
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: grade}


def _jsonl(path: Path):
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON: {exc}") from None


def load(folder: Path, split: str = "test") -> Dataset:
    """Reads the BEIR folder for `split`; raises FileNotFoundError when a part is missing and
    ValueError on a line that is not JSON."""
    folder = Path(folder)
    for part in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / part).is_file():
            raise FileNotFoundError(f"{folder} is not a BEIR dataset folder: {part} is missing")
    corpus = [Document(str(d["_id"]), d.get("title") or "", d.get("text") or "") for d in _jsonl(folder / "corpus.jsonl")]
    ids = [d.id for d in corpus]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{folder}/corpus.jsonl repeats document ids")
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if not row or row[0] in ("query-id", "query_id", "qid"):
                continue
            qid, did, grade = row[0], row[1], int(row[2])
            qrels.setdefault(qid, {})[did] = grade
    all_queries = {str(q["_id"]): q.get("text") or "" for q in _jsonl(folder / "queries.jsonl")}
    missing = sorted(set(qrels) - set(all_queries))
    if missing:
        raise ValueError(f"qrels/{split}.tsv judges {len(missing)} quer(ies) missing from queries.jsonl, e.g. {missing[:3]}")
    queries = {qid: all_queries[qid] for qid in qrels}
    return Dataset(name=folder.resolve().name, corpus=corpus, queries=queries, qrels=qrels)
