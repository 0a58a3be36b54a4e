"""The document index as a Pulumi resource (infra/document_index.py).

The data layer's use of it runs under Pulumi's mocks, as every layer test does. The
mocks never run a dynamic provider's methods, so the provider's create, read, update,
diff and delete are exercised directly, against the real local index server's
control plane through the official SDK (the local stand-in for Pinecone).
"""
from __future__ import annotations

import dill
import pytest
from harness import DATA_SECRETS, run_layer
from pinecone import Pinecone

from infra.document_index import DocumentIndexProvider, normal_schema, product_schema
from tests.system.test_index_server import API_KEY, ServerProcess

SECRETS = DATA_SECRETS
DYNAMIC = "pulumi-python:dynamic:Resource"


@pytest.fixture(scope="module")
def documents_run(data_upstream):
    return run_layer("data", {"pineconeIndexApi": "documents"}, stack="docs", secrets=SECRETS,
                     stack_outputs=data_upstream)


def test_the_data_layer_declares_a_document_index_when_asked(documents_run):
    assert not documents_run.of_type("pinecone:index/index:Index")
    (index,) = documents_run.of_type(DYNAMIC)
    assert index.inputs["name"] == "ps-docs-products"
    fields = index.inputs["schema"]["fields"]
    assert fields["embedding"] == {"type": "dense_vector", "dimension": 384, "metric": "dotproduct"}
    assert fields["text"]["full_text_search"] == {"language": "en", "stemming": True, "stop_words": True}
    assert fields["sku"] == {"type": "string", "full_text_search": {}}
    assert index.inputs["deletion_protection"] == "enabled"
    assert index.inputs["deployment"] == {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
    assert "api_key" in index.secret_paths and index.inputs["api_key"] == "pcsk-test-key"
    component = documents_run.one("productsearch:data:DocumentIndex")
    assert documents_run.opts(DYNAMIC, component.name).protect is True
    assert set(documents_run.exports) >= {"pineconeIndexName", "pineconeIndexHost"}


def test_a_legacy_index_moves_to_a_next_document_index(data_upstream):
    """pineconeNextIndexApi documents: the index `pelican migrate-index` builds is a
    document index beside the legacy primary, exported with the API each speaks."""
    run = run_layer("data", {"pineconeIndexName": "ps-dev-products", "pineconeNextIndexName": "ps-dev-products-docs",
                             "pineconeNextIndexApi": "documents"}, stack="moving", secrets=SECRETS,
                    stack_outputs=data_upstream)
    (legacy,) = run.of_type("pinecone:index/index:Index")
    (document,) = run.of_type(DYNAMIC)
    assert legacy.inputs["name"] == "ps-dev-products" and document.inputs["name"] == "ps-dev-products-docs"
    assert set(document.inputs["schema"]["fields"]) == {"embedding", "text", "sku"}
    e = run.exports
    assert (e["pineconeIndexApi"], e["pineconeNextIndexApi"]) == ("vectors", "documents")
    assert e["pineconeNextIndexName"] == "ps-dev-products-docs"


def test_the_schema_names_the_fields_the_apps_write():
    from productsearch.documents import DENSE_FIELD, SKU_FIELD, TEXT_FIELD

    assert set(product_schema(384)["fields"]) == {DENSE_FIELD, TEXT_FIELD, SKU_FIELD}


def test_the_default_stays_on_the_vectors_api(data_run):
    assert not data_run.of_type(DYNAMIC)
    assert len(data_run.of_type("pinecone:index/index:Index")) == 1


def test_an_unknown_index_api_is_refused(data_upstream):
    with pytest.raises(Exception, match="pineconeIndexApi must be vectors or documents"):
        run_layer("data", {"pineconeIndexApi": "records"}, stack="bad", secrets=SECRETS,
                  stack_outputs=data_upstream)
    with pytest.raises(Exception, match="pineconeNextIndexApi must be vectors or documents"):
        run_layer("data", {"pineconeNextIndexName": "x-next", "pineconeNextIndexApi": "records"}, stack="bad",
                  secrets=SECRETS, stack_outputs=data_upstream)


def test_product_schema_keyword_sides_and_bad_input():
    sparse = product_schema(384, keyword="sparse")["fields"]
    assert set(sparse) == {"embedding", "sparse"} and sparse["sparse"] == {"type": "sparse_vector"}
    for kwargs in ({"dimension": 0}, {"dimension": 8, "metric": "manhattan"}, {"dimension": 8, "keyword": "both"}):
        with pytest.raises(ValueError):
            product_schema(**kwargs)


# ----------------------------------------------------------------------------- the provider
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("pulumi-docindex") / "data").start()
    yield srv
    srv.stop()


def props(server, **overrides) -> dict:
    return {
        "name": "stack-docs", "schema": product_schema(4),
        "deployment": {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
        "deletion_protection": "enabled", "tags": {"team": "search"},
        "api_key": API_KEY, "control_host": server.url, **overrides,
    }


def test_provider_create_read_update_delete(server):
    provider = dill.loads(dill.dumps(DocumentIndexProvider()))  # Pulumi ships it pickled
    created = provider.create(props(server))
    assert created.id == "stack-docs"
    assert created.outs["host"] == f"{server.url}/document-indexes/stack-docs"
    pc = Pinecone(api_key=API_KEY, host=server.url)
    assert pc.indexes.describe("stack-docs").deletion_protection == "enabled"

    read = provider.read("stack-docs", created.outs)
    assert read.id == "stack-docs"
    assert not provider.diff("stack-docs", read.outs, props(server)).changes  # read back = declared

    news = props(server, deletion_protection="disabled", tags={"env": "dev"})
    diff = provider.diff("stack-docs", created.outs, news)
    assert diff.changes and diff.replaces == []
    updated = provider.update("stack-docs", created.outs, news)
    described = pc.indexes.describe("stack-docs")
    assert described.deletion_protection == "disabled" and dict(described.tags) == {"env": "dev"}
    assert updated.outs["tags"] == {"env": "dev"}

    provider.delete("stack-docs", updated.outs)
    assert not pc.indexes.exists("stack-docs")
    assert provider.read("stack-docs", updated.outs).id is None  # gone: the next up creates it
    provider.delete("stack-docs", updated.outs)  # deleting what is gone is not an error


def test_schema_name_and_deployment_changes_replace_the_index(server):
    provider = DocumentIndexProvider()
    olds = props(server)
    for change in ({"schema": product_schema(8)}, {"schema": product_schema(4, keyword="sparse")},
                   {"name": "other-docs"}, {"deployment": {**olds["deployment"], "region": "eu-west-1"}}):
        diff = provider.diff("stack-docs", olds, {**olds, **change})
        assert diff.replaces == list(change), change
        assert diff.delete_before_replace
    assert provider.diff("stack-docs", olds, {**olds, "api_key": "rotated"}).replaces == []


def test_deletion_protection_refuses_a_delete(server):
    provider = DocumentIndexProvider()
    created = provider.create(props(server, name="guarded-docs"))
    with pytest.raises(Exception, match="Deletion protection is enabled"):
        provider.delete("guarded-docs", created.outs)
    assert Pinecone(api_key=API_KEY, host=server.url).indexes.exists("guarded-docs")
    provider.update("guarded-docs", created.outs, {**created.outs, "deletion_protection": "disabled"})
    provider.delete("guarded-docs", created.outs)


def test_normal_schema_drops_only_restated_defaults():
    declared = product_schema(4)
    read_back = {"fields": {k: ({**v, "filterable": False} if v["type"] == "string" else v)
                            for k, v in declared["fields"].items()}}
    assert normal_schema(read_back) == declared
    filterable = {"fields": {"t": {"type": "string", "full_text_search": {}, "filterable": True}}}
    assert normal_schema(filterable) == filterable


def test_the_data_project_installs_the_sdk_the_provider_calls():
    import importlib.metadata
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[2] / "data" / "requirements.txt").read_text().splitlines()
    assert f"pinecone=={importlib.metadata.version('pinecone')}" in lines
