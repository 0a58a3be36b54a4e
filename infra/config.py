"""Typed access to a layer's config, with Pulumi.yaml as the single source of defaults.

Every key a program reads must be declared in its project's ``Pulumi.yaml``
(type, description, default).  Reading an undeclared key raises, so the
declaration and the code cannot drift apart silently.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import yaml


def load_schema(project_dir: Path | str) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((Path(project_dir) / "Pulumi.yaml").read_text())
    return dict(data.get("config") or {})


class LayerConfig:
    """Reads ``<project>:<key>`` values, falling back to the declared default."""

    def __init__(self, project_dir: Path | str):
        self.schema = load_schema(project_dir)
        self._cfg = pulumi.Config()

    def _decl(self, key: str) -> dict[str, Any]:
        if key not in self.schema:
            raise KeyError(f"config key {key!r} is not declared in Pulumi.yaml")
        return self.schema[key]

    def get(self, key: str) -> Any:
        decl = self._decl(key)
        kind = decl.get("type", "string")
        default = decl.get("default")
        if kind == "integer":
            value = self._cfg.get_int(key)
        elif kind == "boolean":
            value = self._cfg.get_bool(key)
        elif kind in ("array", "object"):
            value = self._cfg.get_object(key)
        else:
            value = self._cfg.get(key)
        return default if value is None else value

    def secret(self, key: str) -> pulumi.Output[str]:
        """A required secret (declared with ``secret: true`` and no default)."""
        decl = self._decl(key)
        if not decl.get("secret"):
            raise KeyError(f"config key {key!r} is not declared secret in Pulumi.yaml")
        return self._cfg.require_secret(key)
