#!/usr/bin/env python3
"""Embedding runtimes on CPU, side by side in one run: torch fp32, ONNX Runtime fp32
(the cached, verified export of productsearch.onnx_export; batches sorted by length
and not), and OpenVINO fp32 on the same ONNX graph when the openvino package is
installed (it is not a dependency: see docs/benchmarks.md).

- texts/s: interleaved rounds, each runtime embedding the same texts once per round,
  batch EMBEDDING_BATCH_SIZE (64), so drift in the machine's speed hits all alike;
  the ratio to torch is taken within each round and the median reported. On the
  sample catalog's texts (short, even) and on SciFact corpus texts (long, uneven)
  when ../shared/data/beir-scifact is there.
- agreement: cosine of each runtime's vector with torch's, over `agreement_texts`
  texts in padded batches of 64 in the given order (not sorted by length);
  min and mean.
- peak RSS: a fresh process per runtime loads it and embeds the texts; its VmHWM
  (ru_maxrss), so each figure holds one runtime only.

Run: .venv/bin/python -m benchmarks.runtimes [--texts 1024] [--rounds 3]
It reports; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import beir, cli, machine, workload
from benchmarks.cli import say
from benchmarks.pipeline import REPO
from productsearch.embedding import Embedder
from productsearch.settings import EmbeddingSettings

SCIFACT = REPO.parent / "shared" / "data" / "beir-scifact"
RUNTIMES = ("torch", "onnx", "onnx-unsorted", "openvino")


def scifact_texts(n: int, template: str, seed: int = 5) -> list[str]:
    """n corpus documents drawn at random (fixed seed), as the pipeline indexes them
    (title as name, abstract as description; benchmarks.evaluate)."""
    # not at import: runtimes' --rss-child imports this module; its peak RSS is the runtime's alone
    from productsearch.documents import indexed_text

    corpus = beir.load(SCIFACT).corpus
    docs = random.Random(seed).sample(corpus, min(n, len(corpus)))
    return [indexed_text({"name": d.title, "description": d.text, "price": 0, "category": "scifact"}, template) for d in docs]


def load(runtime: str, settings):
    """An object with embed(texts) for one of RUNTIMES."""
    if runtime == "torch":
        return Embedder(dataclasses.replace(settings, runtime="torch", device="cpu"), sort_by_length=False)
    if runtime in ("onnx", "onnx-unsorted"):
        return Embedder(dataclasses.replace(settings, runtime="onnx", device="cpu"), sort_by_length=runtime == "onnx")
    if runtime == "openvino":
        return Embedder(dataclasses.replace(settings, runtime="openvino", device="cpu"))
    raise ValueError(runtime)


def available(runtime: str) -> bool:
    """Whether `runtime` can be loaded here (OpenVINO is optional)."""
    if runtime != "openvino":
        return True
    try:
        import openvino  # noqa: F401  # optional extra: openvino
    except ImportError:
        return False
    return True


def peak_rss_mib(runtime: str, texts: list[str], env: dict[str, str]) -> float:
    """VmHWM of a fresh process that loads the runtime and embeds texts, in MiB."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(texts, handle)
    try:
        out = subprocess.run([sys.executable, "-m", "benchmarks.runtimes", "--rss-child", runtime, "--texts-file", handle.name],
                             env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=1800)
    finally:
        os.unlink(handle.name)
    return float(out.stdout.strip().splitlines()[-1])


def _rss_child(runtime: str, texts_file: str) -> None:
    texts = json.loads(Path(texts_file).read_text())
    load(runtime, EmbeddingSettings.from_env()).embed(texts)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forking parent.
    with open("/proc/self/status") as handle:
        peak_kib = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))
    print(round(peak_kib / 1024, 1))


def throughput(embedders: dict, texts: list[str], rounds: int) -> dict:
    """texts/s per embedder over interleaved rounds (order alternating), median and ratio
    to torch within each round."""
    per_round: dict[str, list[float]] = {name: [] for name in embedders}
    for e in embedders.values():
        e.embed(texts[:64])  # warm-up
    for r in range(rounds):
        order = list(embedders) if r % 2 == 0 else list(reversed(embedders))  # no runtime always goes first
        for name in order:
            t = time.perf_counter()
            embedders[name].embed(texts)
            per_round[name].append(len(texts) / (time.perf_counter() - t))
    out = {}
    for name, values in per_round.items():
        ratios = [v / t for v, t in zip(values, per_round["torch"], strict=True)]
        out[name] = {"texts_per_s": round(statistics.median(values), 1), "rounds": [round(v, 1) for v in values],
                     "ratio_to_torch": round(statistics.median(ratios), 3)}
    return out


def agreement(embedders: dict, texts: list[str]) -> dict:
    """Cosine of each embedder's vectors with torch's over `texts`: min and mean."""
    reference = embedders["torch"].embed(texts)
    out = {}
    for name, e in embedders.items():
        if name == "torch":
            continue
        sort, e.sort_by_length = e.sort_by_length, False  # padded batches of mixed lengths, as given
        try:
            got = e.embed(texts)
        finally:
            e.sort_by_length = sort
        cos = np.sum(got.astype(np.float64) * reference.astype(np.float64), axis=1)
        out[name] = {"texts": len(texts), "min_cosine": round(float(cos.min()), 8), "mean_cosine": round(float(cos.mean()), 9)}
    return out


def run(texts: int = 1024, rounds: int = 3, agreement_texts: int = 256, scifact_n: int = 512, rss: bool = True,
        runtimes: tuple[str, ...] = RUNTIMES, env: dict[str, str] | None = None) -> dict:
    """Measures the runtimes (see the module's docstring) and returns the figures:
    {"machine", "settings", "datasets": {name: {"texts", "mean_chars", "throughput":
    {runtime: {texts_per_s, rounds, ratio_to_torch}}, "agreement": {runtime:
    {min_cosine, mean_cosine}}}}, "peak_rss_mib": {runtime: MiB}}."""
    env = dict(env or {})
    settings = EmbeddingSettings.from_env({**os.environ, **env})
    runtimes = tuple(r for r in runtimes if available(r))
    datasets = {"catalog": workload.texts(texts, settings.text_template)}
    if SCIFACT.is_dir() and scifact_n:
        datasets["scifact"] = scifact_texts(scifact_n, settings.text_template)
    embedders = {name: load(name, settings) for name in runtimes}
    result: dict = {"measured_at": cli.now_utc(),
                    "machine": machine.describe("cpu"),
                    "settings": {"batch_size": settings.batch_size, "max_tokens": settings.max_tokens,
                                 "threads": settings.threads or len(os.sched_getaffinity(0))},
                    "descriptions": {name: e.description for name, e in embedders.items()},
                    "datasets": {}}
    for name, items in datasets.items():
        say(f"{name}: {len(items)} texts, {rounds} interleaved rounds of {', '.join(embedders)} ...")
        figures = {"texts": len(items), "mean_chars": round(sum(map(len, items)) / len(items)),
                   "throughput": throughput(embedders, items, rounds),
                   "agreement": agreement(embedders, items[:agreement_texts])}
        result["datasets"][name] = figures
        for runtime, f in figures["throughput"].items():
            agree = figures["agreement"].get(runtime)
            say(f"    {runtime:<14} {f['texts_per_s']:>8.1f} texts/s  x{f['ratio_to_torch']:.2f} torch"
                + (f"   cosine vs torch min {agree['min_cosine']:.7f}" if agree else ""))
    if rss:
        say("peak RSS, one fresh process per runtime ...")
        result["peak_rss_mib"] = {name: peak_rss_mib(name, datasets["catalog"], env) for name in runtimes
                                  if name != "onnx-unsorted"}
        say(f"    {result['peak_rss_mib']}")
    return result


def report(r: dict) -> None:
    """Prints run()'s figures."""
    say()
    say(f"machine: {machine.one_line(r['machine'])}")
    say(f"batch {r['settings']['batch_size']}, max {r['settings']['max_tokens']} tokens, {r['settings']['threads']} threads")
    for name, d in r["datasets"].items():
        say(f"{name} ({d['texts']} texts, mean {d['mean_chars']} characters):")
        for runtime, f in d["throughput"].items():
            agree = d["agreement"].get(runtime)
            line = f"  {runtime:<14} {f['texts_per_s']:>8.1f} texts/s  x{f['ratio_to_torch']:.2f} torch fp32"
            if agree:
                line += f"  cosine vs torch over {agree['texts']}: min {agree['min_cosine']:.7f}, mean {agree['mean_cosine']:.8f}"
            say(line)
    if r.get("peak_rss_mib"):
        say("peak RSS of a process that loads the runtime and embeds the catalog texts: "
            + ", ".join(f"{k} {v:.0f} MiB" for k, v in r["peak_rss_mib"].items()))


def main(argv=None) -> int:
    """Command line: run(), printed and written; returns the exit status."""
    p = cli.parser(__doc__, "runtimes.json")
    p.add_argument("--texts", type=int, default=1024, help="catalog texts per round")
    p.add_argument("--scifact", type=int, default=512, help="SciFact corpus texts per round (0: none)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--agreement-texts", type=int, default=256)
    p.add_argument("--runtimes", default=",".join(RUNTIMES))
    p.add_argument("--no-rss", action="store_true")
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    p.add_argument("--texts-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_child:
        _rss_child(args.rss_child, args.texts_file)
        return 0
    result = run(texts=args.texts, rounds=args.rounds, agreement_texts=args.agreement_texts, scifact_n=args.scifact,
                 rss=not args.no_rss, runtimes=tuple(x for x in args.runtimes.split(",") if x))
    cli.finish(result, args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
