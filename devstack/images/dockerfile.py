"""Reads a Dockerfile into its global ARGs and its build stages, for the checks
tests/unit/devstack/test_images.py makes without a container engine."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class Stage:
    """One build stage: FROM's image (as written), its name (AS ...; None if unnamed)
    and its instructions after FROM as (KEYWORD, arguments) with continuations joined."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]]

    def args(self) -> dict[str, str | None]:
        """The stage's ARG names and defaults (None: no default)."""
        out: dict[str, str | None] = {}
        for keyword, rest in self.instructions:
            if keyword == "ARG":
                key, _, default = rest.partition("=")
                out[key.strip()] = default.strip() if "=" in rest else None
        return out

    def env(self) -> dict[str, str]:
        """The stage's ENV settings in the KEY=value form (the only form our Dockerfiles use)."""
        out = {}
        for keyword, rest in self.instructions:
            if keyword == "ENV":
                for pair in re.findall(r"(\w+)=(\S+)", rest):
                    out[pair[0]] = pair[1]
        return out

    def runs(self) -> list[str]:
        return [rest for keyword, rest in self.instructions if keyword == "RUN"]


def dockerfile_stages(text: str) -> tuple[dict[str, str | None], list[Stage]]:
    """Parses a Dockerfile's lines into its global ARGs (before the first FROM) and its
    stages. Comments and blank lines are dropped; a line ending in a backslash
    continues on the next. ValueError on an instruction before any FROM other than
    ARG, or a FROM without an image."""
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+ )?(\S+)(?: AS (\S+))?", rest, re.IGNORECASE)
            if not m:
                raise ValueError(f"FROM without an image: {line!r}")
            stages.append(Stage(m.group(1), m.group(2), []))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"{keyword} before the first FROM: {line!r}")
            key, _, default = rest.partition("=")
            global_args[key] = default if "=" in rest else None
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages

