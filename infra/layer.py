"""Layer bootstrap: naming, tagging of every taggable resource, upstream stacks."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pulumi

from infra.config import LayerConfig

SYSTEM = "semantic-search"


def base_tags(layer: str, stack: str) -> dict[str, str]:
    return {
        "project": SYSTEM,
        "layer": layer,
        "stack": stack,
        "managed-by": "pulumi",
    }


def is_taggable(resource: Any) -> bool:
    """True for custom resources whose schema has a ``tags`` input.

    Provider SDK classes expose each input as a property; ``tags_all`` is an
    output-only companion and is not what we look for.
    """
    return isinstance(resource, pulumi.CustomResource) and isinstance(
        getattr(type(resource), "tags", None), property
    )


def merge_tags(defaults: Mapping[str, str], existing: Any) -> Any:
    if existing is None:
        return dict(defaults)
    return pulumi.Output.from_input(existing).apply(
        lambda current: {**defaults, **(current or {})}
    )


def merge_tag_list(defaults: Mapping[str, str], existing: Any) -> Any:
    """Auto Scaling groups take a list of ``{key, value, propagate_at_launch}``."""

    def merge(current):
        current = list(current or [])
        present = {t["key"] for t in current}
        extra = [
            {"key": k, "value": v, "propagate_at_launch": True}
            for k, v in defaults.items()
            if k not in present
        ]
        return current + extra

    if existing is None:
        return merge([])
    return pulumi.Output.from_input(existing).apply(merge)


LIST_TAGGED_TYPES = ("aws:autoscaling/group:Group",)


def _tagging_transformation(tags: Mapping[str, str]):
    def transform(args: pulumi.ResourceTransformationArgs):
        if not is_taggable(args.resource) or not isinstance(args.props, dict):
            return None
        props = dict(args.props)
        if args.type_ in LIST_TAGGED_TYPES:
            props["tags"] = merge_tag_list(tags, props.get("tags"))
        else:
            props["tags"] = merge_tags(tags, props.get("tags"))
        return pulumi.ResourceTransformationResult(props, args.opts)

    return transform


@dataclass
class Layer:
    name: str
    project_dir: Path
    config: LayerConfig = field(init=False)
    stack: str = field(init=False)
    tags: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.config = LayerConfig(self.project_dir)
        self.stack = pulumi.get_stack()
        self.tags = base_tags(self.name, self.stack)

    @property
    def prefix(self) -> str:
        """Short physical-name prefix, e.g. ``ss-dev``."""
        return f"ss-{self.stack}"[:20]

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
    pulumi.runtime.register_stack_transformation(_tagging_transformation(layer.tags))
    return layer


def require_region() -> str:
    """The stack's ``aws:region`` (set with ``pulumi config set aws:region ...``)."""
    region = pulumi.Config("aws").get("region")
    if not region:
        raise pulumi.RunError("set aws:region for this stack (pulumi config set aws:region us-east-1)")
    return region
