"""The control plane of document indexes (Pinecone's Documents API, API version
2026-07): what ``pc.indexes.create/describe/list/configure/delete`` send.

* ``POST /indexes``          ``{"name", "schema": {"fields": {...}}, "deletion_protection", "tags"}``
* ``GET /indexes``, ``GET|PATCH|DELETE /indexes/{name}``

A schema declares ``dense_vector`` (``dimension``, ``metric``), ``sparse_vector`` and
``string`` fields with ``full_text_search``; integrated embedding (``embed``,
``sparse_embed``) and a legacy vector schema (the reserved ``_values`` field) are
refused with a 400 saying so. Each index's data plane
(:mod:`~devstack.index_server.documents`) is served under its ``host``,
``{server}/document-indexes/{name}``. Sources: Pinecone docs, Documents API, Data
modeling, Operation limits.
"""

from __future__ import annotations

import os
import re
from typing import Any

from devstack.index_server.document_store import DocumentIndex, DocumentIndexes
from devstack.index_server.fulltext import FullTextConfigError, check_config
from devstack.index_server.protocol import ApiError, bad_request
from devstack.index_server.store import METRICS

MAX_DENSE_DIMENSION = 20_000  # Pinecone docs, Limits: max dimensionality for dense vectors
# Pinecone docs, Object limits / the SDK's require_valid_resource_name: index names are
# lower-case letters, digits and hyphens, at most 45 characters.
_INDEX_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$")
HOST_PREFIX = "/document-indexes"


class ControlPlaneError(ApiError):
    """A control-plane error, rendered in Pinecone's control-plane shape
    ``{"error": {"code", "message"}, "status"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code


def check_schema(schema: Any) -> dict[str, dict[str, Any]]:
    """The ``fields`` of a create request's *schema*, checked: a non-empty object of
    field name to declaration; ``dense_vector`` with an integer ``dimension``
    (1..20,000) and a ``metric`` (cosine, dotproduct, euclidean; default cosine), at
    most one per index (the SDK: "the index's one dense slot"); ``sparse_vector``;
    ``string`` with ``full_text_search``.

    Raises:
        ApiError: 400 with a message naming the field, for anything else.
    """
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), dict) or not schema["fields"]:
        raise bad_request("schema must be an object with a non-empty 'fields' object")
    fields: dict[str, dict[str, Any]] = {}
    if set(schema["fields"]) & {"_values", "_sparse_values"}:
        raise bad_request(
            "This schema declares a legacy vector index; the local index server serves its "
            "one legacy index from its --dimension and --metric flags, and creates only "
            "document indexes"
        )
    for name, spec in schema["fields"].items():
        if not isinstance(name, str) or not name or name.startswith(("_", "$")) or len(name) > 64:
            raise bad_request(f"Invalid field name {name!r}: 1 to 64 characters, not starting with '_' or '$'")
        if not isinstance(spec, dict):
            raise bad_request(f"Field '{name}' must be an object with a 'type'")
        kind = spec.get("type")
        if kind == "dense_vector":
            dimension = spec.get("dimension")
            if not isinstance(dimension, int) or isinstance(dimension, bool) or not 1 <= dimension <= MAX_DENSE_DIMENSION:
                raise bad_request(f"Field '{name}': dimension must be an integer from 1 to {MAX_DENSE_DIMENSION}")
            metric = spec.get("metric", "cosine")
            if metric not in METRICS:
                raise bad_request(f"Field '{name}': metric must be one of {list(METRICS)}, got {metric!r}")
            fields[name] = {"type": kind, "dimension": dimension, "metric": metric}
        elif kind == "sparse_vector":
            fields[name] = {"type": kind}
        elif kind == "string":
            if "embed" in spec or "sparse_embed" in spec:
                raise bad_request(
                    f"Field '{name}': integrated embedding (embed, sparse_embed) is not served by "
                    f"the local index server"
                )
            if "full_text_search" not in spec:
                raise bad_request(
                    f"Field '{name}': a string field in the schema must declare full_text_search; "
                    f"metadata to filter on is not declared"
                )
            try:
                config = check_config(name, spec["full_text_search"])
            except FullTextConfigError as exc:
                raise bad_request(str(exc)) from None
            fields[name] = {"type": kind, "full_text_search": dict(config)}
        else:
            raise bad_request(
                f"Field '{name}': type must be dense_vector, sparse_vector or string, got {kind!r}"
            )
    if sum(f["type"] == "dense_vector" for f in fields.values()) > 1:
        raise bad_request("A schema may declare at most one dense_vector field")
    return fields



def _check_protection(value: Any) -> str:
    if value not in ("enabled", "disabled"):
        raise ControlPlaneError(400, "INVALID_ARGUMENT", "deletion_protection must be 'enabled' or 'disabled'")
    return value


def _check_tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ControlPlaneError(400, "INVALID_ARGUMENT", "tags must be an object of strings")
    return value


class ControlPlane:
    """The index operations of Pinecone's control plane, for document indexes."""

    def __init__(self, indexes: DocumentIndexes) -> None:
        self.indexes = indexes

    def _get(self, name: str) -> DocumentIndex:
        index = self.indexes.indexes.get(name)
        if index is None:
            raise ControlPlaneError(404, "NOT_FOUND", f"Resource {name} not found")
        return index

    def create(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        """Creates the document index *body* describes (``name``, ``schema``,
        ``deletion_protection``, default disabled, ``tags``, ``deployment``) and answers
        its description, ready at once, its ``host`` on *base_url*.

        Raises:
            ControlPlaneError: 400 for a bad name, schema, protection or tags; 409 when
                the name is taken.
        """
        name = body.get("name")
        if not isinstance(name, str) or not _INDEX_NAME.match(name):
            raise ControlPlaneError(400, "INVALID_ARGUMENT", "Index name must consist of lower case "
                                    "alphanumeric characters or '-', start and end with one, and be at "
                                    f"most 45 characters, got {name!r}")
        fields = check_schema(body.get("schema"))
        protection = _check_protection(body.get("deletion_protection") or "disabled")
        tags = _check_tags(body["tags"]) if body.get("tags") is not None else None
        deployment = body.get("deployment") or {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
        with self.indexes.lock:
            if name in self.indexes.indexes:
                raise ControlPlaneError(409, "ALREADY_EXISTS", f"Resource {name} already exists")
            description = {
                "name": name,
                "status": {"ready": True, "state": "Ready"},
                "schema": {"fields": fields},
                "deployment": deployment,
                "deletion_protection": protection,
                "tags": tags or None,
            }
            path = os.path.join(self.indexes.root, f"{name}.sqlite3")
            if os.path.exists(path):  # left by a delete that could not remove it
                os.remove(path)
            self.indexes.indexes[name] = DocumentIndex(path, description)
        return _hosted(description, base_url)

    def describe(self, name: str, base_url: str) -> dict[str, Any]:
        """The index's description; ControlPlaneError 404 when there is none."""
        return _hosted(self._get(name).description, base_url)

    def list(self, base_url: str) -> dict[str, Any]:
        """``{"indexes": [description, ...]}``, by name."""
        return {"indexes": [_hosted(i.description, base_url) for _n, i in sorted(self.indexes.indexes.items())]}

    def configure(self, name: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        """Deletion protection and tags change in place (a tag set to ``""`` is
        removed); the schema cannot change (Data modeling: "You declare the schema
        when you create the index, and you can't change it afterward")."""
        index = self._get(name)
        with index.lock:
            described = index.description
            if body.get("schema") is not None and check_schema(body["schema"]) != described["schema"]["fields"]:
                raise ControlPlaneError(400, "INVALID_ARGUMENT", "An index's schema cannot be changed after it is created")
            if body.get("deletion_protection") is not None:
                described["deletion_protection"] = _check_protection(body["deletion_protection"])
            if body.get("tags") is not None:
                merged = {**(described.get("tags") or {}), **_check_tags(body["tags"])}
                described["tags"] = {k: v for k, v in merged.items() if v != ""} or None
            index.save_description()
            return _hosted(described, base_url)

    def delete(self, name: str) -> None:
        """Deletes the index and its documents.

        Raises:
            ControlPlaneError: 404 when there is none; 403 while its deletion protection
                is enabled.
        """
        with self.indexes.lock:
            index = self._get(name)
            if index.description["deletion_protection"] == "enabled":
                raise ControlPlaneError(403, "FORBIDDEN", f"Deletion protection is enabled for index {name}. "
                                        "Disable deletion protection before retrying.")
            del self.indexes.indexes[name]
            index.close()
            os.remove(index.path)


def _hosted(description: dict[str, Any], base_url: str) -> dict[str, Any]:
    """*description* with its ``host``: this server's address as the request reached it
    (so it stays right when the server restarts on another port) and the index's path."""
    return {**description, "host": f"{base_url.rstrip('/')}{HOST_PREFIX}/{description['name']}"}

