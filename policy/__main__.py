"""CrossGuard pack wrapping the plain validators in guardrails.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    PolicyPack,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from guardrails import RULES, plain_props  # noqa: E402

try:
    from pulumi_policy.proxy import UnknownValueError
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


PolicyPack(
    name="semantic-search-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[as_policy(name, description, fn) for name, (description, fn) in RULES.items()],
)
