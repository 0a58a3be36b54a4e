"""The Pinecone serverless index, managed as a resource."""
from __future__ import annotations

import pulumi
import pinecone_pulumi as pinecone

METRICS = ("cosine", "euclidean", "dotproduct")


class VectorIndex(pulumi.ComponentResource):
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
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("semsearch:data:VectorIndex", name, None, opts)
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
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.name = self.index.name
        self.host = self.index.host
        self.register_outputs({"name": self.name, "host": self.host})
