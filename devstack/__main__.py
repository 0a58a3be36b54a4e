"""``python -m devstack up|down|status``: the Makefile's `make up`, `make down` and
`make status`. up runs devstack.up's flow; down and status act on the stack's
processes (devstack.stack).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devstack.processes import REPO
from devstack.stack import DevStack, started_index_api
from devstack.up import up


def main(argv: list[str] | None = None) -> int:
    """Runs one command (up, down or status) on the stack under --root; returns the exit status."""
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--root", type=Path, default=REPO / ".local" / "stack")
    parser.add_argument("--catalog", type=Path, default=REPO / "apps" / "pelican" / "catalog" / "products.csv")
    parser.add_argument("--index-api", choices=["vectors", "documents"], default=None,
                        help="the products index's Pinecone API (default PINECONE_INDEX_API, else what the "
                             "running stack was started with, else vectors)")
    args = parser.parse_args(argv)
    stack = DevStack(root=args.root, index_api=args.index_api or os.environ.get("PINECONE_INDEX_API")
                     or started_index_api(args.root.parent / "stack.env") or "vectors")
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
