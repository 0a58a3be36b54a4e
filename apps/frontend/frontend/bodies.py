"""Request bodies as pydantic models, and the one place where their validation errors
become the plain reasons that the API and the page show.

Each field is checked by a `mode="before"` validator that raises a ValueError whose
message already names the field ("price must be a finite number"). pydantic would
wrap that message in its own wording ("Value error, ..."), so `RequestBody.parse`
unwraps it. A body is answered with one reason only, in the order a reader fixes
them: first a body that is not an object, then unknown fields (all of them, with the
fields the model takes), then the first field in declaration order that is missing or
bad, and last a rule that spans fields."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails


class InvalidBody(ValueError):
    """A body that its model refuses. The message names the field and is safe to show."""


class RequestBody(BaseModel):
    """Base of the request models: unknown fields are refused rather than ignored, so
    a typo in a field name is an error, never a silent no-op. Subclasses word their
    refusals through the class variables below."""

    model_config = ConfigDict(extra="forbid")

    not_an_object: ClassVar[str] = "request body must be a JSON object"
    unknown_fields: ClassVar[str] = "unknown field(s)"
    allowed_fields: ClassVar[str] = "allowed"

    @classmethod
    def parse(cls, body: Any) -> Self:
        """`body` (parsed JSON: any value) as this model. Raises InvalidBody with one
        reason (the module docstring gives the order)."""
        if not isinstance(body, dict):
            raise InvalidBody(cls.not_an_object)
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise InvalidBody(cls.reason(exc.errors())) from None

    @classmethod
    def reason(cls, errors: list[ErrorDetails]) -> str:
        """The one reason shown for pydantic's `errors` (never empty)."""
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        if unknown:
            return f"{cls.unknown_fields}: {', '.join(unknown)} ({cls.allowed_fields}: {', '.join(cls.model_fields)})"
        first = errors[0]
        field = ".".join(str(part) for part in first["loc"])
        if first["type"] == "missing":
            return f"{field} is missing"
        if first["type"] == "bool_type":  # a StrictBool field given anything but a JSON boolean
            return f"{field} must be true or false"
        # A validator's own ValueError arrives as the error's context, its message intact.
        own = first.get("ctx", {}).get("error")
        if own is not None:
            return str(own)
        return f"{field}: {first['msg']}" if field else first["msg"]
