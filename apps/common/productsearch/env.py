"""The one reader of configuration. Each setting is declared once, as a pydantic
field: `Field(description=, ge=, le=)` says what it means and its bounds, a
credential is a SecretStr, and rules between settings are validators.

- `EnvSection`: a settings class whose fields are environment variables (the field's
  validation_alias, else its name), except those marked TUNING, which its
  constructor sets. `read(env)` reads them.
- `Tuning`: values no deployment sets, constructor parameters and command-line
  options (`--field-name`). `EnvTuning`: tuning with a few variables (its fields with
  a validation_alias), emu's and pelican's settings.

A missing or malformed value raises ConfigError naming the variable or option; the
apps turn that into a one-line message and exit code 2.

The declarations are in productsearch.settings (the shared groups) and in each app's
config module; infra.env_contract derives the environment contract from them.
"""

from __future__ import annotations

import argparse
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Self

import annotated_types
from pydantic import SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, CliSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


# json_schema_extra flags of an EnvSection field, for what Field has no parameter for.
URL = {"url": True}  # the value must be an http(s) URL
KEEP_BLANK = {"keep_blank": True}  # a value blank after stripping counts as set (else it means unset)
RAW = {"strip": False, "keep_blank": True}  # taken as given: passwords keep their white space
TUNING = {"variable": False}  # a field no variable sets: the constructor's (tests, the apps' options)


def _flag(field: FieldInfo, name: str, default: bool) -> bool:
    extra = field.json_schema_extra
    return bool(extra.get(name, default)) if isinstance(extra, dict) else default


def meaning_of(field: FieldInfo) -> str:
    """The one line an EnvSection field's `description` says its variable means (for
    the environment contract). Raises TypeError when it has none."""
    if not field.description:
        raise TypeError(f"an EnvSection field lacks its description: {field!r}")
    return field.description


def is_secret(field: FieldInfo) -> bool:
    """Whether a field holds a credential (a SecretStr): ECS passes it as a
    task-definition secret, never as plain environment."""
    return _value_type(field.annotation) is SecretStr


def bounds_of(field: FieldInfo) -> tuple[float | None, float | None]:
    """A field's inclusive bounds, from its Field(ge=, le=)."""
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    return low, high  # type: ignore[return-value]


def variable_of(name: str, field: FieldInfo) -> str:
    """The environment variable field `name` reads: its validation_alias, else its name."""
    return field.validation_alias if isinstance(field.validation_alias, str) else name


def _value_type(annotation: Any) -> type:
    """int, float or str: the type a (possibly optional) field holds."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


class _MappingSource(PydanticBaseSettingsSource):
    """pydantic-settings source reading one section's variables from a mapping (os.environ,
    or a test's dict): values stripped, and blank ones treated as unset (ECS and
    docker-compose pass an empty string for a variable written without a value)."""

    def __init__(self, settings_cls: type[EnvSection] | type[EnvTuning], env: Mapping[str, str]):
        super().__init__(settings_cls)
        self._section, self._env = settings_cls, env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = variable_of(field_name, field)
        raw = self._env.get(variable)
        if raw is None:
            return None, variable, False
        value = raw.strip() if _flag(field, "strip", True) else raw
        if not value.strip() and not _flag(field, "keep_blank", False):
            return None, variable, False
        return value, variable, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name in self._section.variables().values():
            value, variable, _ = self.get_field_value(self._section.model_fields[name], name)
            if value is not None:
                values[variable] = value
        return values


class EnvSection(BaseSettings):
    """A group of environment variables, declared once: one field per variable, the
    field's name (or validation_alias) being the variable's, with its description and
    bounds. `read(env)` is the
    only reader of configuration; it raises ConfigError naming the first variable that
    is missing ("NAME is not set") or malformed ("NAME must be ..., got ...")."""

    # By field name too, so code and tests can build one in process (DatabaseSettings(database_url=...)).
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True,
                                      validate_by_name=True, validate_by_alias=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Only what `read` was given: no .env file, no secrets directory, no os.environ behind a test's back.
        return (init_settings,)

    @classmethod
    def read(cls, env: Mapping[str, str] = os.environ, **given: Any) -> Self:
        """This section's variables from `env` (and its TUNING fields from `given`).
        Raises ConfigError."""
        try:
            return cls(**_MappingSource(cls, env)(), **given)
        except ValidationError as exc:
            raise _config_error(exc) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """This section read from `env` (os.environ by default). Raises ConfigError
        naming the variable that is missing or malformed."""
        return cls.read(env)

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, raw: Any, info: ValidationInfo) -> Any:
        return _parse_variable(cls, raw, info)

    @classmethod
    def required_names(cls) -> frozenset[str]:
        """The variables this section cannot do without."""
        return frozenset(variable for variable, name in cls.variables().items() if cls.model_fields[name].is_required())

    @classmethod
    def variables(cls) -> dict[str, str]:
        """{variable: field name} of every variable this section reads."""
        return {variable_of(name, field): name for name, field in cls.model_fields.items()
                if _flag(field, "variable", True)}


def _parse_variable(cls: type[EnvSection] | type[EnvTuning], raw: Any, info: ValidationInfo) -> Any:
    """A variable's raw string as its field's int or float, checked against the
    field's bounds and URL flag. Raises ConfigError naming the variable. Other
    values (a constructor's, a TUNING field's) pass as they are."""
    field = cls.model_fields[str(info.field_name)]
    name = variable_of(str(info.field_name), field)
    if not isinstance(raw, str) or name not in cls.variables():
        return raw
    kind = _value_type(field.annotation)
    value: Any = raw
    if kind is int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    elif kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    low, high = bounds_of(field)
    if kind in (int, float) and low is not None:
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name} must be {bound}, got {value}")
    if _flag(field, "url", False) and not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def _config_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    name = first["loc"][0] if first["loc"] else "configuration"
    if first["type"] == "missing":
        return ConfigError(f"{name} is not set")
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, ConfigError):
        return error
    return ConfigError(f"{name}: {first['msg']}, got {first['input']!r}")


def require(section: EnvSection, name: str) -> Any:
    """`section`'s value of variable `name`, which this use of it needs. Raises
    ConfigError when it is unset."""
    value = getattr(section, type(section).variables()[name])
    if value is None:
        raise ConfigError(f"{name} is not set")
    return value


class Tuning(BaseSettings):
    """Values no deployment sets: each field, declared once with its default, bounds
    (`Field(ge=, le=)`) and meaning (`description`), is a constructor parameter in
    process and an option of the app's command line (`--field-name`, kebab case),
    which tests use to scale waits down in a subprocess. None is an environment
    variable. A malformed value raises ConfigError naming the option."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Only the constructor's arguments (and the command line, when one is given).
        return (init_settings,)

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> CliSettingsSource:
        """Add one option per field to `parser`; pass the result, with the parsed
        arguments, to `build`."""
        return CliSettingsSource(cls, root_parser=parser, cli_kebab_case=True)

    @classmethod
    def build(cls, options: CliSettingsSource | None = None, args: argparse.Namespace | None = None, **given: Any):
        """An instance from `given` field values, the command line's options winning.
        Raises ConfigError naming the option that is out of bounds or malformed."""
        try:
            if options is None:
                return cls(**given)
            return cls(_cli_settings_source=options(parsed_args=args), **given)
        except ValidationError as exc:
            first = exc.errors()[0]
            # A validator's own ValueError arrives as the error's context; its message
            # already names what is wrong, so it is shown as it is.
            own = (first.get("ctx") or {}).get("error")
            if isinstance(own, ValueError):
                raise ConfigError(str(own)) from None
            option = "--" + ".".join(str(part).replace("_", "-") for part in first["loc"])
            raise ConfigError(f"{option}: {first['msg']}, got {first['input']!r}") from None

    @classmethod
    def parse(cls, argv: list[str], **given: Any):
        """An instance from command-line options alone (`argv`), as the app's command
        line reads them. Raises ConfigError."""
        parser = argparse.ArgumentParser()
        options = cls.add_options(parser)
        return cls.build(options, parser.parse_args(argv), **given)


class EnvTuning(Tuning):
    """Tuning where a few fields follow from the deployment: each field with a
    validation_alias (declared CliSuppress, so no option sets it) is that environment
    variable, read by from_env like an EnvSection's. In process such a field is set by
    the variable's name (EmuSettings(EMU_STOP_TIMEOUT_SECONDS=5)), not the field's:
    validate_by_name would also make CliSettingsSource accept it as an option."""

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, raw: Any, info: ValidationInfo) -> Any:
        return _parse_variable(cls, raw, info)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """{variable: field name} of the fields that are environment variables."""
        return {field.validation_alias: name for name, field in cls.model_fields.items()
                if isinstance(field.validation_alias, str)}

    @classmethod
    def required_names(cls) -> frozenset[str]:
        """The variables it cannot do without."""
        return frozenset(variable for variable, name in cls.variables().items() if cls.model_fields[name].is_required())

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, options: CliSettingsSource | None = None,
                 args: Any = None, **tuning: Any) -> Self:
        """The variables from `env`, the rest from `tuning` and the command line
        (`options` from add_options, `args` parsed). Raises ConfigError naming the
        variable or option that is malformed."""
        return cls.build(options, args, **_MappingSource(cls, env)(), **tuning)
