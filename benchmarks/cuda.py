"""Embedding throughput on a CUDA GPU: fp16 through emu's own code paths.

Measures, side by side in one run, on texts given as JSON (--texts) or the sample
catalog's own texts (benchmarks.workload; no database needed either way):

- raw texts/s of productsearch.embedding.Embedder on CUDA (fp16), per batch size;
- texts/s through emu's model process (emu.embedding_process.EmbeddingProcess: the
  pipe, pickling and the child process included), which bounds what emu's backfill
  can reach on that GPU;
- agreement with CPU fp32 vectors computed on the development machine (cosine, per
  text), so a faster path is only reported together with how equal its vectors are.

Rounds are interleaved (A B A B ...) and the median round is reported, as the other
benchmarks do. Run directly (writes results/cuda.json unless --output says otherwise):

    python -m benchmarks.cuda [--model DIR] [--texts texts.json] [--reference ref.npz] [--output cuda.json]

texts.json: {"catalog": [str, ...], "scifact": [str, ...]} (default: the sample
catalog's texts, benchmarks.workload); ref.npz: arrays `texts` (the reference texts)
and `vectors` (float32, (n, 384), CPU fp32).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import cli, workload
from emu.embedding_process import EmbeddingProcess
from productsearch.embedding import Embedder
from productsearch.settings import EmbeddingSettings


def _embedder(model: str, device: str, batch_size: int):
    return Embedder(EmbeddingSettings.from_env({"EMBEDDING_MODEL_PATH": model, "EMBEDDING_DEVICE": device,
                                                "EMBEDDING_BATCH_SIZE": str(batch_size)}))


def _rate(embed, texts: list[str]) -> float:
    started = time.perf_counter()
    embed(texts)
    return len(texts) / (time.perf_counter() - started)


def run(model: str, corpora: dict[str, list[str]], *, batch_sizes=(64, 256), rounds: int = 3,
        reference: tuple[list[str], "object"] | None = None) -> dict:
    """Returns {"gpu", "torch", "corpora": {name: {"texts", "raw_fp16": {batch: texts/s},
    "emu_process_fp16": texts/s}}, "agreement": {...}, "peak_gpu_mib"}. Raises
    RuntimeError when torch sees no GPU."""
    import torch  # heavy: torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: this benchmark measures the GPU path")

    out: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "corpora": {}}
    embedders = {b: _embedder(model, "cuda", b) for b in batch_sizes}
    process = EmbeddingProcess(EmbeddingSettings.from_env({"EMBEDDING_MODEL_PATH": model, "EMBEDDING_DEVICE": "cuda",
                                                           "EMBEDDING_BATCH_SIZE": str(max(batch_sizes))}))
    try:
        for name, texts in corpora.items():
            for e in embedders.values():
                e.embed(texts[:512])  # warm-up: kernels, allocator
            process.embed(texts[:512])
            raw: dict[int, list[float]] = {b: [] for b in batch_sizes}
            piped: list[float] = []
            for _ in range(rounds):
                for b, e in embedders.items():
                    raw[b].append(_rate(e.embed, texts))
                piped.append(_rate(process.embed, texts))
            out["corpora"][name] = {
                "texts": len(texts),
                "raw_fp16_texts_per_s": {str(b): round(statistics.median(v), 1) for b, v in raw.items()},
                "emu_process_fp16_texts_per_s": round(statistics.median(piped), 1),
            }
    finally:
        process.close()
    if reference is not None:
        ref_texts, ref_vectors = reference
        got = embedders[batch_sizes[0]].embed(list(ref_texts))
        cosines = (got * ref_vectors).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref_vectors, axis=1))
        out["agreement_with_cpu_fp32"] = {"texts": len(ref_texts), "min_cosine": float(cosines.min()),
                                          "mean_cosine": float(cosines.mean())}
    out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def default_corpora(template: str, n: int = 10000) -> dict[str, list[str]]:
    """The texts measured when none are given: the first n catalog rows' indexed texts
    (benchmarks.workload), as emu would embed them with EMBEDDING_TEXT_TEMPLATE `template`."""
    return {"catalog": workload.texts(n, template)}


# `make bench` run on a GPU machine with EMBEDDING_DEVICE=cuda (see docs/benchmarks.md, GPU).
STORED_GPU_BENCH = "bench-gpu.json"


def stored_gpu_backfill(path: Path | None = None) -> dict | None:
    """The end-to-end backfill figures of the last `make bench` on a GPU machine
    (results/bench-gpu.json): {"gpu", "measured_at", "runs": [{"rows", "rows_per_s",
    "seconds", "ratio_to_raw", "raw_texts_per_s_before_after", "cpu_s_during_backfill"}]}
    (ratio_to_raw: against the mean of the raw runs just before and after, as
    benchmarks.all measures it); None when there is none."""
    path = path or cli.RESULTS / STORED_GPU_BENCH
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    keys = ("rows", "rows_per_s", "seconds", "ratio_to_raw", "raw_texts_per_s_before_after", "cpu_s_during_backfill")
    return {"gpu": saved["machine"].get("gpu"), "measured_at": saved["measured_at"],
            "runs": [{k: run[k] for k in keys} for run in saved["backfill"]]}


def figures(log=print) -> dict:
    """CUDA fp16 figures for `make bench`: measured here (run() on default_corpora) when
    this machine has a GPU; otherwise the last ones measured on one (results/cuda.json,
    and under "backfill" stored_gpu_backfill()), marked as such, or {"skipped": ...}
    when there are none."""
    import torch  # heavy: torch

    if torch.cuda.is_available():
        settings = EmbeddingSettings.from_env(os.environ)
        log("CUDA fp16 embedding throughput ...")
        return run(settings.model_path, default_corpora(settings.text_template))
    stored = cli.RESULTS / "cuda.json"
    if not stored.exists():
        return {"skipped": "no GPU here and no results/cuda.json"}
    saved = json.loads(stored.read_text())
    out = {"skipped": f"figures below from {saved.get('gpu')} ({saved.get('measured', 'earlier')}), results/cuda.json",
           **{k: saved[k] for k in ("gpu", "corpora", "agreement_with_cpu_fp32") if k in saved}}
    backfill = stored_gpu_backfill()
    if backfill:
        out["backfill"] = backfill
    return out


def main(argv=None) -> int:
    """Command line: run() on the given or the catalog's texts; returns the exit status."""
    parser = cli.parser(__doc__, "cuda.json", output_aliases=("--out",))
    parser.add_argument("--model", help="model folder (default: EMBEDDING_MODEL_PATH's, as emu loads it)")
    parser.add_argument("--texts", type=Path, help="JSON {corpus name: [text, ...]} (default: the catalog's texts "
                        "from benchmarks.workload)")
    parser.add_argument("--reference", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    settings = EmbeddingSettings.from_env(os.environ)
    corpora = json.loads(args.texts.read_text()) if args.texts else default_corpora(settings.text_template)
    reference = None
    if args.reference:
        data = np.load(args.reference)
        reference = ([str(t) for t in data["texts"]], data["vectors"])
    result = run(args.model or settings.model_path, corpora, rounds=args.rounds, reference=reference)
    result["measured_at"] = cli.now_utc()
    cli.finish(result, args.output, lambda r: cli.say(json.dumps(r, indent=2)), embedding_device="cuda")
    return 0


if __name__ == "__main__":
    sys.exit(main())
