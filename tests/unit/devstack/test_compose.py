"""docker-compose.yml's Pinecone Local index has the shape the apps expect: the
dotproduct metric (hybrid queries send dense and sparse values together) and the
embedding's dimension, as data/ creates the index on AWS and `make up` starts the local
index server."""

from __future__ import annotations

import yaml
from productsearch.settings import DimensionEnv

from devstack.processes import REPO


def pinecone_service() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["pinecone"]


def pulumi_default(key: str):
    return yaml.safe_load((REPO / "data" / "Pulumi.yaml").read_text())["config"][key]["default"]


def test_the_index_is_dotproduct_like_data_creates_it():
    environment = pinecone_service()["environment"]
    assert pulumi_default("pineconeMetric") == "dotproduct"
    assert environment["METRIC"] == pulumi_default("pineconeMetric")


def test_the_index_has_the_embedding_dimension():
    environment = pinecone_service()["environment"]
    assert int(environment["DIMENSION"]) == DimensionEnv.model_fields["dimension"].default
    assert int(environment["DIMENSION"]) == pulumi_default("pineconeDimension")


def test_the_index_is_a_dense_serverless_index_the_apps_can_query():
    environment = pinecone_service()["environment"]
    # a sparse-only index takes no dense values; hybrid needs both in one record
    assert (environment["INDEX_TYPE"], environment["VECTOR_TYPE"]) == ("serverless", "dense")
    assert "pinecone-index" in pinecone_service()["image"]
