"""The Pinecone serverless index, managed as a resource."""
from __future__ import annotations

import re

import pinecone_pulumi as pinecone
import pulumi

from infra.layer import component_type

METRICS = ("cosine", "euclidean", "dotproduct")
MAX_INDEX_NAME = 45


def default_index_name(prefix: str) -> str:
    """``<prefix>-products`` as Pinecone allows it (lowercase letters, digits, hyphens, <= 45).

    Index names are unique per Pinecone project: a shared default would make every stack
    after the first fail to create, or two stacks write one index.
    """
    base = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")
    return f"{base}-products"[:MAX_INDEX_NAME].strip("-")


class VectorIndex(pulumi.ComponentResource):
    """A dense serverless index with its own provider (the API key stays a secret).

    `metric` (one of METRICS) applies when the index is created. Pinecone cannot change
    an index's metric, so Pulumi would replace the index (and lose every vector in it);
    the metric is therefore ignored on an existing index, and a new metric is reached by
    building a second index and switching to it (docs/index-migration.md).

    `protect` makes Pulumi refuse to delete or replace the index (``protect``): a new
    pineconeIndexName, dimension or cloud then fails at preview rather than dropping every
    vector. `deletion_protection` is Pinecone's own switch, which refuses deletes from any
    client (Pinecone docs: index deletion protection, in "Manage indexes")."""

    def __init__(
        self,
        name: str,
        *,
        index_name: str,
        dimension: int,
        metric: str,
        cloud: str,
        region: str,
        deletion_protection: bool,
        api_key: pulumi.Input[str],
        tags: dict[str, str],
        protect: bool = True,
        opts: pulumi.ResourceOptions | None = None,
    ):
        token = component_type("data", "VectorIndex")
        super().__init__(token, name, None, opts)
        if metric not in METRICS:
            raise ValueError(f"pineconeMetric must be one of {METRICS}")
        if dimension <= 0:
            raise ValueError("pineconeDimension must be positive")
        provider = pinecone.Provider(f"{name}-pinecone", api_key=api_key,
                                     opts=pulumi.ResourceOptions(parent=self))
        self.index = pinecone.Index(
            name,
            name=index_name,
            dimension=dimension,
            metric=metric,
            vector_type="dense",
            spec={"serverless": {"cloud": cloud, "region": region}},
            deletion_protection="enabled" if deletion_protection else "disabled",
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, protect=protect,
                                        ignore_changes=["metric"]),
        )
        self.name = self.index.name
        self.host = self.index.host
        self.register_outputs({"name": self.name, "host": self.host})
