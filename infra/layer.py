"""Layer bootstrap: naming, tagging of every taggable resource, upstream stacks."""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pulumi

from infra.config import LayerConfig

# The system's one name: the `project` tag's value and the component type tokens'
# package; the policy pack (policy/) and the dashboard (compute/) carry it too.
SYSTEM = "productsearch"


# Config keys every layer declares in its Pulumi.yaml and the shared Layer reads,
# rather than the layer's own __main__.py.
LAYER_KEYS = frozenset({"resourcePrefix", "tier"})
# What a stack is for. Every resource carries it as the `tier` tag, and the policy pack
# (policy/guardrails.py) holds resources tagged `prod` to the production rules.
TIERS = ("dev", "prod")


def component_type(layer: str, name: str) -> str:
    """A ComponentResource type token, ``productsearch:<layer>:<Name>``."""
    return f"{SYSTEM}:{layer}:{name}"


def base_tags(layer: str, stack: str, tier: str = "dev") -> dict[str, str]:
    """The tags every taggable resource of a layer gets (``tier`` is one of TIERS)."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    return {
        "project": SYSTEM,
        "layer": layer,
        "stack": stack,
        "tier": tier,
        "managed-by": "pulumi",
    }


_SDK_MODULES = {"aws": "pulumi_aws", "pinecone": "pinecone_pulumi"}


@functools.lru_cache(maxsize=None)
def is_taggable_type(resource_type: str) -> bool:
    """True for resource types whose schema has a ``tags`` input, e.g. ``aws:ec2/subnet:Subnet``.

    Judged by type token, not by object, because the transform also sees the children
    that packaged components (awsx) create in their own process.  Provider SDK classes
    expose each input as a property; ``tags_all`` is an output-only companion.
    """
    package, _, rest = resource_type.partition(":")
    module_name = _SDK_MODULES.get(package)
    if module_name is None or rest.count(":") != 1:
        return False
    module_path, cls_name = rest.split(":")
    submodule = module_path.split("/")[0]
    try:
        module = importlib.import_module(module_name if submodule == "index" else f"{module_name}.{submodule}")
        cls = getattr(module, cls_name)
    except (ImportError, AttributeError):
        return False
    return isinstance(getattr(cls, "tags", None), property)


def _plain(value: Any) -> bool:
    return not isinstance(value, pulumi.Output)


def merge_tags(defaults: Mapping[str, str], existing: Any) -> Any:
    """Stack tags under the resource's own (its own win)."""
    if existing is None:
        return dict(defaults)
    if isinstance(existing, Mapping) and all(_plain(v) for v in existing.values()):
        return {**defaults, **existing}
    return pulumi.Output.from_input(existing).apply(
        lambda current: {**defaults, **(current or {})}
    )


def merge_tag_list(defaults: Mapping[str, str], existing: Any) -> Any:
    """Auto Scaling groups take a list of ``{key, value, propagateAtLaunch}``.

    Stack transforms see properties as the engine names them (camelCase), nested ones too.
    """

    def merge(current):
        current = list(current or [])
        present = {t["key"] for t in current}
        extra = [
            {"key": k, "value": v, "propagateAtLaunch": True}
            for k, v in defaults.items()
            if k not in present
        ]
        return current + extra

    if existing is None:
        return merge([])
    if isinstance(existing, list) and all(isinstance(t, Mapping) and all(_plain(v) for v in t.values())
                                          for t in existing):
        return merge(existing)
    return pulumi.Output.from_input(existing).apply(merge)


LIST_TAGGED_TYPES = ("aws:autoscaling/group:Group",)


def tagging_transform(tags: Mapping[str, str]):
    """Stack transform adding ``tags`` to every taggable custom resource.

    A stack transform (unlike the older transformations) also runs for the resources
    packaged components create - the subnets, NAT gateways, EIPs and route tables of
    awsx's Vpc - so nothing the stack owns goes untagged.
    """

    def transform(args: pulumi.ResourceTransformArgs):
        if not args.custom or not is_taggable_type(args.type_) or not isinstance(args.props, Mapping):
            return None
        props = dict(args.props)
        if args.type_ in LIST_TAGGED_TYPES:
            props["tags"] = merge_tag_list(tags, props.get("tags"))
        else:
            props["tags"] = merge_tags(tags, props.get("tags"))
        return pulumi.ResourceTransformResult(props, args.opts)

    return transform


@dataclass
class Layer:
    name: str
    project_dir: Path
    config: LayerConfig = field(init=False)
    stack: str = field(init=False)
    tags: dict[str, str] = field(init=False)
    tier: str = field(init=False)

    def __post_init__(self) -> None:
        self.config = LayerConfig(self.project_dir)
        self.stack = pulumi.get_stack()
        self.tier = self.config.get("tier")
        self.tags = base_tags(self.name, self.stack, self.tier)

    @property
    def prefix(self) -> str:
        """Short physical-name prefix, e.g. ``ps-dev``: the ``resourcePrefix`` config
        (declared in each layer's Pulumi.yaml), or ``ps-<stack>`` when it is empty.

        Cut to 20 characters so the names built on it stay within AWS's limits: the
        load balancer's ``<prefix>-web`` plus the 8 characters Pulumi's auto-naming
        appends (``-`` and 7 random ones) is 32, the most an ALB or target group name
        may have (AWS docs: CreateLoadBalancer, Name).
        """
        return (self.config.get("resourcePrefix") or f"ps-{self.stack}")[:20]

    def upstream(self, project: str) -> pulumi.StackReference:
        """StackReference to another layer, named by ``<project>Stack`` config.

        Defaults to the same organization and stack name as this stack.
        """
        name = self.config.get(f"{project}Stack") or (
            f"{pulumi.get_organization()}/{project}/{self.stack}"
        )
        return pulumi.StackReference(f"{project}-stack", stack_name=name)


def bootstrap(name: str, project_dir: str | Path) -> Layer:
    """Create the layer context and tag every taggable resource it registers."""
    layer = Layer(name, Path(project_dir).resolve())
    pulumi.runtime.register_stack_transform(tagging_transform(layer.tags))
    return layer


def require_region() -> str:
    """The stack's ``aws:region`` (set with ``pulumi config set aws:region ...``)."""
    region = pulumi.Config("aws").get("region")
    if not region:
        raise pulumi.RunError("set aws:region for this stack (pulumi config set aws:region us-east-1)")
    return region
