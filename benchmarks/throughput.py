"""Raw embedding throughput, (a) of `make bench`: the configured model alone on the
sample catalog's texts, same batch size, device and settings as emu, in this process
(texts/s, and texts per CPU second of this process).

    .venv/bin/python -m benchmarks.throughput [--texts 10000] [--app-env KEY=VALUE ...]

Prints the figures with the machine's description and writes results/throughput.json.
It reports; it asserts nothing about time.
"""

from __future__ import annotations

import os
import sys
import time

from benchmarks import cli, machine, workload
from benchmarks.pipeline import machine_busy_seconds
from productsearch.embedding import Embedder
from productsearch.settings import EmbeddingSettings


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def raw_throughput(texts: list[str], env: dict[str, str]) -> dict:
    """Loads productsearch.embedding.Embedder with the EmbeddingSettings of `env`, warms
    it up on one batch and times embedding `texts` (see time_embedding). Adds "model",
    "device" and the loaded embedder under "_embedder" (pop it before storing)."""
    embedder = Embedder(EmbeddingSettings.from_env(env))
    embedder.embed(texts[: embedder.settings.batch_size])  # warm-up: lazy initialisation, allocator
    return {**time_embedding(embedder, texts), "model": embedder.description, "device": str(embedder.device), "_embedder": embedder}


def time_embedding(embedder, texts: list[str]) -> dict:
    """One timed embed(texts): texts, seconds, texts_per_s, this process's CPU seconds
    (cpu_s, texts_per_cpu_s) and the CPU seconds other processes on the machine used
    meanwhile (from /proc/stat)."""
    busy, mine = machine_busy_seconds(), _own_cpu()
    t = time.perf_counter()
    embedder.embed(texts)
    elapsed = time.perf_counter() - t
    used = _own_cpu() - mine
    others = (machine_busy_seconds() - busy) - used
    return {"texts": len(texts), "seconds": round(elapsed, 2), "texts_per_s": round(len(texts) / elapsed, 1),
            "cpu_s": round(used, 1), "texts_per_cpu_s": round(len(texts) / used, 2) if used > 0 else None,
            "cpu_s_used_by_other_processes": round(others, 1)}


def report(r: dict) -> None:
    """Prints raw_throughput()'s figures."""
    cli.say()
    cli.say(f"machine: {machine.one_line(r['machine'])}")
    cli.say(f"model:   {r['model']}")
    cli.say(f"raw embedding {r['texts_per_s']:.1f} texts/s ({r['texts']:,} catalog texts in {r['seconds']:.1f}s; "
            f"{r['texts_per_cpu_s']} texts per CPU s; other processes used {r['cpu_s_used_by_other_processes']} CPU s)")


def main(argv=None) -> int:
    """Command line: raw_throughput() on --texts catalog texts; returns the exit status."""
    p = cli.parser(__doc__, "throughput.json", app_env=True)
    p.add_argument("--texts", type=int, default=10000, help="catalog texts to embed")
    args = p.parse_args(argv)
    env = {**os.environ, **dict(args.app_env)}
    texts = workload.texts(args.texts, EmbeddingSettings.from_env(env).text_template)
    result = raw_throughput(texts, env)
    result.pop("_embedder")
    result["measured_at"] = cli.now_utc()
    cli.finish(result, args.output, report, embedding_device=result["device"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
