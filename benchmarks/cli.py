"""The tail every benchmark shares: its command line's common options, printing as it
goes, percentiles, and writing the figures as JSON next to the machine's description.

A module's `main()` is `parser()` + its own options, `run(...)`, then `finish()`."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import machine
from benchmarks.pipeline import REPO

RESULTS = REPO / "results"


def say(text: str = "") -> None:
    """Prints a line at once (progress lines interleave with the apps' output)."""
    print(text, flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation (numpy's default); NaN for
    no values."""
    return float(np.percentile(values, q)) if values else float("nan")


def now_utc() -> str:
    """The current time as ISO 8601 UTC to the second, the `measured_at` of a result."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def parser(doc: str | None, output: str | None, *, output_aliases: tuple[str, ...] = (),
           output_help: str | None = None, rows: int | None = None, app_env: bool = False) -> argparse.ArgumentParser:
    """An ArgumentParser described by the first paragraph of `doc` (a module's
    docstring) with the common --output option (and its `output_aliases`, e.g.
    "--out"): the results JSON, by default results/<output> (None: no default; the
    module then writes nothing unless asked, or picks a name itself and says so in
    `output_help`). rows: also --rows (catalog rows indexed first, this default) and
    --sync-timeout. app_env: also --app-env KEY=VALUE, repeatable, read as a list of
    (key, value) pairs: `dict(args.app_env)`."""
    # at call time, not import time: the running program's __main__ as it is when the
    # parser is built (runpy and multiprocessing replace sys.modules["__main__"])
    import __main__

    # Under `python -m benchmarks.x` usage lines name the module, not x.py.
    spec = getattr(__main__, "__spec__", None)
    prog = f"python -m {spec.name.removesuffix('.__main__')}" if spec is not None else None
    # The whole module docstring: its first paragraph often ends in a list that follows.
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_help = f"the results JSON (default results/{output})" if output else "the results JSON (default: none written)"
    p.add_argument("--output", *output_aliases, type=Path, default=RESULTS / output if output else None,
                   help=output_help or default_help)
    if rows is not None:
        p.add_argument("--rows", type=int, default=rows, help=f"catalog rows indexed first (default {rows:,})")
        p.add_argument("--sync-timeout", type=float, default=3600.0,
                       help="seconds the index may take to hold every row before the run fails (default 3600)")
    if app_env:
        p.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE", type=setting,
                       help="a setting for the apps and the in-process model, e.g. EMBEDDING_BATCH_SIZE=128 (repeatable)")
    return p


def setting(text: str) -> tuple[str, str]:
    """A KEY=VALUE command-line setting as (KEY, VALUE); argparse.ArgumentTypeError
    (argparse's usage error) when there is no "=" or no key."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def finish(result: dict, output: Path | None, report: Callable[[dict], None] | None = None,
           embedding_device: str | None = None) -> None:
    """Adds the machine's description to `result` when it has none, writes it as JSON
    to `output` (when given; parent folders created), prints it with `report` and says
    where it went."""
    if "machine" not in result:
        result["machine"] = machine.describe(embedding_device)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    if report is not None:
        report(result)
    if output is not None:
        say(f"wrote {output}")
