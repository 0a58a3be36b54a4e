import importlib
import re
from pathlib import Path

import pytest
import yaml

from harness import REPO, run_layer
from infra.config import LayerConfig
from infra.layer import LAYER_KEYS, base_tags

LAYERS = ("network", "data", "messaging", "compute")


def resource_class(typ: str):
    """``aws:sqs/queue:Queue`` -> ``pulumi_aws.sqs.Queue``."""
    pkg, mod_path, cls = typ.split(":")
    # pulumi-docker-build's Image is left out: its `tags` are the image's name:tag references.
    module = {"aws": "pulumi_aws", "pinecone": "pinecone_pulumi"}.get(pkg)
    if module is None:
        return None
    mod = mod_path.split("/")[0]
    try:
        return getattr(importlib.import_module(module if mod == "index" else f"{module}.{mod}"), cls)
    except (ImportError, AttributeError):
        return None


def taggable(typ: str) -> bool:
    cls = resource_class(typ)
    return cls is not None and isinstance(getattr(cls, "tags", None), property)


def tags_of(resource) -> dict:
    tags = resource.inputs.get("tags")
    if isinstance(tags, list):  # Auto Scaling group
        return {t["key"]: t["value"] for t in tags}
    return tags or {}


def test_every_taggable_resource_is_tagged(all_runs):
    checked = 0
    for label, run in all_runs.items():
        expected = base_tags(run.project, "prod" if label.endswith("prod") else
                             "quiet" if label.endswith("quiet") else "dev",
                             "prod" if label.endswith("prod") else "dev")
        for r in run.resources:
            if taggable(r.typ) or r.typ == "awsx:ec2:Vpc":
                checked += 1
                assert tags_of(r).items() >= expected.items(), f"{label}: {r} has tags {tags_of(r)}"
    assert checked > 60


def test_taggable_detection_is_not_vacuous():
    assert taggable("aws:sqs/queue:Queue") and taggable("pinecone:index/index:Index")
    assert not taggable("aws:iam/rolePolicy:RolePolicy")
    assert not taggable("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")


def test_gpu_hosts_propagate_tags_to_instances(compute_gpu_run):
    asg = compute_gpu_run.one("aws:autoscaling/group:Group")
    assert all(t["propagateAtLaunch"] for t in asg.inputs["tags"])
    assert {"key": "AmazonECSManaged", "value": "true", "propagateAtLaunch": True} in asg.inputs["tags"]
    lt = compute_gpu_run.one("aws:ec2/launchTemplate:LaunchTemplate")
    kinds = {s["resourceType"]: s["tags"] for s in lt.inputs["tagSpecifications"]}
    assert kinds["instance"]["layer"] == "compute" and kinds["volume"]["project"] == "productsearch"


@pytest.mark.parametrize("layer", LAYERS)
def test_every_config_key_is_declared_with_type_description_default(layer):
    spec = yaml.safe_load((REPO / layer / "Pulumi.yaml").read_text())
    assert spec["name"] == layer and spec["runtime"]["name"] == "python"
    for key, decl in spec["config"].items():
        assert decl.get("type") in ("string", "integer", "boolean", "array", "object"), key
        assert decl.get("description"), key
        if decl.get("secret"):
            assert "default" not in decl, f"{key}: secrets have no default; they must be set"
        else:
            assert "default" in decl, key


@pytest.mark.parametrize("layer", LAYERS)
def test_code_reads_only_declared_keys(layer):
    declared = set(yaml.safe_load((REPO / layer / "Pulumi.yaml").read_text())["config"])
    source = (REPO / layer / "__main__.py").read_text()
    read = set(re.findall(r'cfg\.(?:get|secret)\("([A-Za-z0-9]+)"\)', source))
    stacks = {f"{p}Stack" for p in re.findall(r'layer\.upstream\("([a-z]+)"\)', source)}
    assert read | stacks | LAYER_KEYS <= declared
    # ... and nothing declared is dead.
    assert declared <= read | stacks | LAYER_KEYS


@pytest.mark.parametrize("layer", LAYERS)
def test_example_stack_config_has_no_secrets_and_known_keys(layer):
    path = REPO / layer / "Pulumi.dev.yaml"
    config = yaml.safe_load(path.read_text())["config"]
    declared = set(yaml.safe_load((REPO / layer / "Pulumi.yaml").read_text())["config"])
    for key, value in config.items():
        ns, name = key.split(":", 1)
        assert ns in (layer, "aws"), key
        if ns == layer:
            assert name in declared, key
        assert not (isinstance(value, dict) and "secure" in value), f"{key} is a secret in an example file"


def test_undeclared_key_is_an_error(tmp_path: Path):
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime: python\nconfig:\n  a:\n    type: integer\n"
                                          "    description: d\n    default: 3\n")
    cfg = LayerConfig(tmp_path)
    assert cfg.get("a") == 3
    with pytest.raises(KeyError):
        cfg.get("b")
    with pytest.raises(KeyError):
        cfg.secret("a")


def test_upstream_stack_name_comes_from_config(upstream):
    run = run_layer("compute", {"networkStack": "other/network/shared", "dataStack": "other/data/x",
                                "allowPlainHttp": True},
                    stack="staging", stack_outputs=upstream)
    assert sorted(run.stack_refs) == ["acme/messaging/staging", "other/data/x", "other/network/shared"]


@pytest.mark.parametrize("layer", LAYERS)
def test_readme_documents_every_key_and_export(layer, all_runs):
    readme = (REPO / layer / "README.md").read_text()
    for key in yaml.safe_load((REPO / layer / "Pulumi.yaml").read_text())["config"]:
        assert f"`{key}`" in readme, key
    for export in all_runs[layer].exports:
        assert f"`{export}`" in readme, export


def test_resource_prefix_names_the_physical_resources(messaging_quiet_run):
    assert messaging_quiet_run.one("productsearch:messaging:JobQueues").name == "ps-quiet"
    named = run_layer("messaging", {"resourcePrefix": "acme-quiet"}, stack="quiet")
    assert named.one("productsearch:messaging:JobQueues").name == "acme-quiet"
