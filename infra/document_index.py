"""A Pinecone document index (Documents API, API version 2026-07), managed as a resource.

The Pinecone Pulumi provider (pinecone-pulumi 2.0.2) declares an index by
``dimension``, ``metric``, ``vector_type``, ``spec`` and ``embed``: it has no
``schema``, so it cannot create a document index. This module is the least code
that can: a Pulumi dynamic provider whose create, read, update and delete call the
official ``pinecone`` SDK (``pc.indexes``), and a component that wraps it with the
same protections as :class:`infra.vector_index.VectorIndex`.

What can change in place (Pinecone's ``configure``): deletion protection and tags.
What forces a replacement (a new, empty index): the name, the schema (Pinecone docs,
Data modeling: "You declare the schema when you create the index, and you can't
change it afterward") and the deployment (cloud, region).
"""
from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic

from infra.layer import component_type
from infra.vector_index import METRICS

# Changes that Pinecone's configure applies to an existing index.
IN_PLACE = ("deletion_protection", "tags")
# Changes that need a new index.
REPLACE = ("name", "schema", "deployment")
KEYWORD_SIDES = ("full_text", "sparse")


def product_schema(dimension: int, metric: str = "dotproduct", keyword: str = "full_text") -> dict[str, Any]:
    """The document schema of the products index: ``embedding``, a ``dense_vector`` of
    emu's vectors, and the keyword side, either ``text`` (the indexed product text,
    full-text search in English with stemming and stop words, as our bm25s tokens are)
    and ``sku`` (full-text search without stemming, so an identifier is matched by its
    parts as written) when *keyword* is ``full_text``, or ``sparse`` (our BM25 sparse
    vectors) when it is ``sparse``. Filterable metadata (price, category, version) is
    not declared: Pinecone indexes undeclared fields for filtering.

    Raises:
        ValueError: a non-positive dimension, an unknown metric or keyword side.
    """
    if dimension <= 0:
        raise ValueError(f"dimension must be positive, got {dimension}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if keyword not in KEYWORD_SIDES:
        raise ValueError(f"keyword must be one of {KEYWORD_SIDES}, got {keyword!r}")
    fields: dict[str, Any] = {"embedding": {"type": "dense_vector", "dimension": dimension, "metric": metric}}
    if keyword == "full_text":
        fields["text"] = {"type": "string",
                          "full_text_search": {"language": "en", "stemming": True, "stop_words": True}}
        fields["sku"] = {"type": "string", "full_text_search": {}}
    else:
        fields["sparse"] = {"type": "sparse_vector"}
    return {"fields": fields}


def _client(props: dict[str, Any]):
    """The SDK's client for *props*: its API key, and ``control_host`` when set (the
    local index server's address; Pinecone's API otherwise)."""
    from pinecone import Pinecone

    host = props.get("control_host") or None
    return Pinecone(api_key=props["api_key"], **({"host": host} if host else {}))


def _described(model: Any) -> dict[str, Any]:
    """The state kept for an index: what Pinecone reports of it."""
    data = model.to_dict()
    return {
        "name": data["name"],
        "host": data.get("host"),
        "schema": normal_schema(_plain(data["schema"])),
        "deletion_protection": data["deletion_protection"],
        "tags": dict(data.get("tags") or {}),
    }


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class DocumentIndexProvider(pulumi.dynamic.ResourceProvider):
    """Create, read, update and delete a document index through the ``pinecone`` SDK.

    Inputs (and outputs): ``name``, ``schema`` (``{"fields": ...}``), ``deployment``
    (``{"deployment_type": "managed", "cloud", "region"}``), ``deletion_protection``
    (``enabled``/``disabled``), ``tags``, ``api_key`` (kept as a secret), and
    ``control_host`` (empty for Pinecone). Outputs add ``host``, the data-plane address."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        model = _client(props).indexes.create(
            name=props["name"], schema=props["schema"], deployment=props["deployment"],
            deletion_protection=props["deletion_protection"], tags=props.get("tags") or None,
        )
        return pulumi.dynamic.CreateResult(id_=props["name"], outs={**props, **_described(model)})

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        """The index as Pinecone has it now; an index that is gone reads as no resource
        (so the next ``pulumi up`` creates it again)."""
        from pinecone.errors import NotFoundError

        try:
            model = _client(props).indexes.describe(id_)
        except NotFoundError:
            return pulumi.dynamic.ReadResult(id_=None, outs={})
        return pulumi.dynamic.ReadResult(id_=id_, outs={**props, **_described(model)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = [k for k in (*REPLACE, *IN_PLACE, "api_key", "control_host")
                   if _normal(k, olds.get(k)) != _normal(k, news.get(k))]
        return pulumi.dynamic.DiffResult(
            changes=bool(changed),
            replaces=[k for k in changed if k in REPLACE],
            stables=["name"] if "name" not in changed else [],
            delete_before_replace=True,  # the replacement keeps the name, which Pinecone holds unique
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        """Applies the in-place changes: deletion protection, and tags (a tag no longer
        declared is sent as ``""``, which Pinecone takes as removing it)."""
        changes: dict[str, Any] = {}
        if olds.get("deletion_protection") != news["deletion_protection"]:
            changes["deletion_protection"] = news["deletion_protection"]
        old_tags, new_tags = dict(olds.get("tags") or {}), dict(news.get("tags") or {})
        if old_tags != new_tags:
            changes["tags"] = {**{k: "" for k in old_tags if k not in new_tags}, **new_tags}
        client = _client(news)
        model = client.indexes.configure(news["name"], **changes) if changes else client.indexes.describe(news["name"])
        return pulumi.dynamic.UpdateResult(outs={**news, **_described(model)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Deletes the index; Pinecone refuses while its deletion protection is on, and
        that refusal is the error Pulumi reports. An index already gone is not an error."""
        from pinecone.errors import NotFoundError

        try:
            _client(props).indexes.delete(id_)
        except NotFoundError:
            pass


def normal_schema(schema: Any) -> dict[str, Any]:
    """*schema* without what only restates a default (the SDK reads ``filterable:
    false`` back on every string field), so a schema read from Pinecone compares equal
    to the one declared and does not look like a change that replaces the index."""
    fields = (schema or {}).get("fields") or {}
    return {"fields": {name: {k: v for k, v in spec.items() if not (k == "filterable" and v is False)}
                       for name, spec in fields.items()}}


def _normal(key: str, value: Any) -> Any:
    if key == "tags":
        return dict(value or {})
    if key == "schema":
        return normal_schema(value)
    return value


class DocumentIndexResource(pulumi.dynamic.Resource):
    """The dynamic resource; use :class:`DocumentIndex`."""

    host: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(DocumentIndexProvider(), name, {**props, "host": None}, opts)


class DocumentIndex(pulumi.ComponentResource):
    """A document index with its schema, deletion protection on by default (as
    :class:`~infra.vector_index.VectorIndex`), the API key kept a secret in state.

    *protect* makes Pulumi refuse to delete or replace it, so a schema or name change
    fails at preview rather than dropping every document; *deletion_protection* is
    Pinecone's own switch. *control_host* points the SDK at another control plane
    (the local index server); empty means Pinecone's."""

    def __init__(
        self,
        name: str,
        *,
        index_name: str,
        schema: dict[str, Any],
        cloud: str,
        region: str,
        api_key: pulumi.Input[str],
        tags: dict[str, str],
        deletion_protection: bool = True,
        protect: bool = True,
        control_host: str = "",
        opts: pulumi.ResourceOptions | None = None,
    ):
        token = component_type("data", "DocumentIndex")
        super().__init__(token, name, None, opts)
        if not schema.get("fields"):
            raise ValueError("a document index needs a schema with fields")
        self.index = DocumentIndexResource(
            name,
            {
                "name": index_name,
                "schema": schema,
                "deployment": {"deployment_type": "managed", "cloud": cloud, "region": region},
                "deletion_protection": "enabled" if deletion_protection else "disabled",
                "tags": dict(tags),
                "api_key": pulumi.Output.secret(api_key),
                "control_host": control_host,
            },
            pulumi.ResourceOptions(parent=self, protect=protect, additional_secret_outputs=["api_key"]),
        )
        self.name = self.index.name
        self.host = self.index.host
        self.register_outputs({"name": self.name, "host": self.host})
