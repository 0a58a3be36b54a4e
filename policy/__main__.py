"""CrossGuard pack wrapping the plain validators in guardrails.py.

guardrails is imported as a sibling module: Pulumi runs a Python pack with
``python -m pulumi.policy <engine> <pack folder>``, which runs the folder with
runpy.run_path, and run_path puts a folder it runs first on sys.path. The pack
stays self-contained (no ``-e ..``) because `pulumi policy publish` uploads this
folder alone.
"""
from typing import TYPE_CHECKING

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

if TYPE_CHECKING:
    from pulumi_policy import Policy

from guardrails import RULES, STACK_RULES, plain_props

try:
    from pulumi_policy.proxy import UnknownValueError  # pyright: ignore[reportAssignmentType]
except ImportError:  # an SDK without the proxy module: nothing raises on unknowns
    class UnknownValueError(Exception):  # type: ignore[no-redef]
        """Never raised."""


def as_policy(name, description, validator):
    """One CrossGuard policy over a plain validator, judging known values even at preview."""

    def validate(args: ResourceValidationArgs, report_violation):
        props = plain_props(args.props, (UnknownValueError,))
        for message in validator(args.resource_type, props):
            report_violation(message)

    return ResourceValidationPolicy(name=name, description=description, validate=validate)


def as_stack_policy(name, description, validator):
    """One CrossGuard stack policy over a plain validator of ``(type, props)`` pairs."""

    def validate(args: StackValidationArgs, report_violation):
        resources = [(r.resource_type, plain_props(r.props, (UnknownValueError,))) for r in args.resources]
        for message in validator(resources):
            report_violation(message)

    return StackValidationPolicy(name=name, description=description, validate=validate)


policies: list["Policy"] = [as_policy(name, description, fn) for name, (description, fn) in RULES.items()]
policies += [as_stack_policy(name, description, fn) for name, (description, fn) in STACK_RULES.items()]
PolicyPack(
    name="productsearch-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policies,
)
