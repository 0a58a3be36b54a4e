"""``python -m devstack up|down|status``: the Makefile's `make up`, `make down` and
`make status`. up runs devstack.up's flow; down and status act on the stack's
processes (devstack.stack).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from devstack.processes import REPO
from devstack.stack import DevStack, started_index_api
from devstack.up import up


INDEX_APIS = ("vectors", "documents")


def chosen_index_api(option: str | None, environ: Mapping[str, str], env_file: Path) -> str:
    """The products index's Pinecone API for this command: `option` (--index-api), else
    PINECONE_INDEX_API in `environ` (so `PINECONE_INDEX_API=documents make up` works),
    else the one the running stack was started with (its settings file `env_file`),
    else "vectors". Raises SystemExit (status 2) naming the variable when
    PINECONE_INDEX_API names no API: a typo must not start a stack on the other one."""
    from_env = environ.get("PINECONE_INDEX_API", "").strip()
    if not option and from_env and from_env not in INDEX_APIS:
        sys.stderr.write(f"devstack: PINECONE_INDEX_API={from_env!r} is not one of {', '.join(INDEX_APIS)} "
                         "(vectors: a legacy dotproduct index; documents: a document index)\n")
        raise SystemExit(2)
    return option or from_env or started_index_api(env_file) or "vectors"


def main(argv: list[str] | None = None) -> int:
    """Runs one command (up, down or status) on the stack under --root; returns the exit status."""
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--root", type=Path, default=REPO / ".local" / "stack")
    parser.add_argument("--catalog", type=Path, default=REPO / "apps" / "pelican" / "catalog" / "products.csv")
    parser.add_argument("--index-api", choices=INDEX_APIS, default=None,
                        help="the products index's Pinecone API (default PINECONE_INDEX_API, else what the "
                             "running stack was started with, else vectors)")
    args = parser.parse_args(argv)
    stack = DevStack(root=args.root,
                     index_api=chosen_index_api(args.index_api, os.environ, args.root.parent / "stack.env"))
    if args.command == "up":
        up(stack, args.catalog, with_frontend=(REPO / "apps" / "frontend" / "frontend" / "__main__.py").exists())
    elif args.command == "down":
        stack.stop_all()
        print("local stack stopped")
    else:
        lines = stack.status_lines()
        if not lines:
            print("local stack not running (make up starts it)")
        for line in lines + stack.sync_lines():
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
