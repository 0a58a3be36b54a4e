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

from guardrails import RULES  # noqa: E402


def as_policy(name, description, validator):
    def validate(args: ResourceValidationArgs, report_violation):
        for message in validator(args.resource_type, dict(args.props)):
            report_violation(message)

    return ResourceValidationPolicy(name=name, description=description, validate=validate)


PolicyPack(
    name="semantic-search-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[as_policy(name, description, fn) for name, (description, fn) in RULES.items()],
)
