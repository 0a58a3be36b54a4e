"""The environment contract: every variable the apps and their one-off tasks read,
which of them reads it, whether it is a secret, and what it means.

The table is derived, not written: the variables, their meanings (each field's
description) and their secret flags (a SecretStr field is a secret) come from the
settings sections (one field per variable): the shared ones in
productsearch.settings and each app's own in pelican.config, emu.config and
frontend.config. It lives here, beside the components that deploy all three apps,
because it is the one place that sees them all. `python -m infra.env_contract`
prints it. `READS` says which sections each process reads, by naming the settings
classes its `from_env` calls build. Only the few variables that libraries read rather than our
settings (LOG_LEVEL, LOG_FORMAT, the AWS SDK's credentials, the temporary and cache directories)
are declared here by hand, in `LIBRARY_VARIABLES`.

The places that pass variables (compute/'s ECS task definitions, devstack's
stack.env, docker-compose.yml) are checked against this table by
tests/infra/test_env_contract.py and tests/infra/test_env_contract_compute.py.

Readers:
  pelican   the `pelican run` service (change data capture: outbox to the jobs queue)
  emu       the `emu run` worker (embeds, upserts and deletes; dead-letter queue and topic)
  frontend  the web app and JSON API
  operator  one-off `pelican` commands as the database's administrator (migrate,
            grant-roles, backfill, reconcile, redrive, migrate-index, refit-lexical):
            compute's operator task, docker-compose's setup service
  tools     tests, benchmarks and scripts run against a local stack
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from emu.config import EmuSettings
from frontend.config import FRONTEND_ENV_SECTIONS
from pelican.config import PelicanSettings
from productsearch.env import EnvSection, EnvTuning, is_secret, meaning_of
from productsearch.settings import (
    AppRoleSettings,
    DatabaseSettings,
    EmbeddingSettings,
    IndexSettings,
    QueueSettings,
    TextTemplateEnv,
)

# A class that declares variables: a settings section, or an app's tuning whose
# aliased fields are variables (emu's and pelican's settings).
Declares = type[EnvSection] | type[EnvTuning]

APPS = ("pelican", "emu", "frontend", "operator")
READERS = (*APPS, "tools")


def _sections(*sections: Declares) -> tuple[Declares, ...]:
    """`sections`, each once, in order."""
    return tuple(dict.fromkeys(sections))


# What each process reads: the settings its entry point builds (apps/*/__main__.py).
READS: dict[str, tuple[Declares, ...]] = {
    "pelican": _sections(DatabaseSettings, QueueSettings, PelicanSettings),
    "emu": _sections(EmbeddingSettings, QueueSettings, EmuSettings, IndexSettings),
    "frontend": FRONTEND_ENV_SECTIONS,
    # Every `pelican` subcommand; refit-lexical reads INDEXED_TEXT_TEMPLATE alone.
    "operator": _sections(DatabaseSettings, QueueSettings, PelicanSettings, AppRoleSettings, IndexSettings,
                          TextTemplateEnv),
}

# Required beyond the sections' own required fields, because of how the process reads them.
ALSO_REQUIRED: dict[str, tuple[str, ...]] = {
    # emu runs QueueSettings.from_env(need_dlq=True): it moves failed jobs there.
    "emu": ("SQS_DLQ_URL",),
}
# One of each group must be set for DatabaseSettings (DatabaseSettings.from_env).
DATABASE_LOCATION = ("DATABASE_URL", "PGHOST")


@dataclass(frozen=True)
class Variable:
    """One environment variable of the contract.

    name: the variable. readers: which of READERS read it. secret: a credential, so
    ECS passes it as a task-definition secret (from Secrets Manager), never as plain
    environment. meaning: one line. declared_in: the settings section (module.class)
    or the library that reads it."""

    name: str
    readers: frozenset[str]
    secret: bool
    meaning: str
    declared_in: str


# Variables read by libraries, not by the settings sections.
LIBRARY_VARIABLES: tuple[Variable, ...] = (
    Variable("LOG_LEVEL", frozenset(APPS), False,
             "the log level of the apps' JSON logs (default INFO)", "productsearch.logs"),
    Variable("LOG_FORMAT", frozenset(APPS), False,
             "json (the default: one JSON object a line, for CloudWatch Logs Insights) or text (for a terminal)",
             "productsearch.logs"),
    Variable("AWS_ACCESS_KEY_ID", frozenset(READERS), True,
             "AWS SDK credentials; local stacks only (ECS tasks use their task role)", "botocore"),
    Variable("AWS_SECRET_ACCESS_KEY", frozenset(READERS), True,
             "AWS SDK credentials; local stacks only (ECS tasks use their task role)", "botocore"),
    Variable("TMPDIR", frozenset({"frontend"}), False,
             "where temporary files go (the frontend's writable scratch under a read-only root)", "tempfile"),
    Variable("GRADIO_TEMP_DIR", frozenset({"frontend"}), False,
             "where Gradio keeps uploads and caches", "gradio"),
    Variable("HF_HOME", frozenset({"emu", "frontend"}), False,
             "the Hugging Face libraries' cache directory", "huggingface_hub"),
    Variable("FRONTEND_URL", frozenset({"tools"}), False,
             "where tests, benchmarks and scripts reach a running frontend", "tests, benchmarks, scripts"),
)


def _derive() -> dict[str, Variable]:
    readers: dict[str, set[str]] = {}
    fields = {}
    for app, sections in READS.items():
        for section in sections:
            for name, field_name in section.variables().items():
                field = section.model_fields[field_name]
                readers.setdefault(name, set()).add(app)
                owner = next(c for c in section.__mro__ if field_name in getattr(c, "__annotations__", {}))
                fields[name] = (field, f"{owner.__module__}.{owner.__qualname__}")
    table = {name: Variable(name, frozenset(readers[name]), is_secret(field), meaning_of(field), where)
             for name, (field, where) in fields.items()}
    for variable in LIBRARY_VARIABLES:
        if variable.name in table:  # e.g. HOME: declared by a section, also read by libraries
            raise ValueError(f"{variable.name} is declared both by a settings section and by hand")
        table[variable.name] = variable
    return dict(sorted(table.items()))


# The contract, by variable name.
VARIABLES: dict[str, Variable] = _derive()


def names_for(reader: str) -> frozenset[str]:
    """Every variable `reader` (one of READERS) reads. Raises KeyError for an unknown reader."""
    if reader not in READERS:
        raise KeyError(reader)
    return frozenset(name for name, variable in VARIABLES.items() if reader in variable.readers)


def required_for(app: str) -> frozenset[str]:
    """The variables `app` (one of APPS) cannot start without, besides one of
    DATABASE_LOCATION when it reads the database (see `missing_for`)."""
    required = {name for section in READS[app] for name in section.required_names()}
    return frozenset(required | set(ALSO_REQUIRED.get(app, ())))


def secrets() -> frozenset[str]:
    """The variables that are credentials (ECS `secrets`, never plain environment)."""
    return frozenset(name for name, variable in VARIABLES.items() if variable.secret)


def missing_for(app: str, names: Iterable[str]) -> list[str]:
    """What an environment holding `names` lacks for `app` to start: required
    variables, and 'DATABASE_URL or PGHOST' for an app that reads the database."""
    names = set(names)
    missing = sorted(required_for(app) - names)
    if "DATABASE_URL" in names_for(app) and not names & set(DATABASE_LOCATION):
        missing.append(" or ".join(DATABASE_LOCATION))
    return missing


def undeclared_for(reader: str, names: Iterable[str]) -> list[str]:
    """The `names` that `reader` does not read (a typo, or a variable nothing uses)."""
    return sorted(set(names) - names_for(reader))


def check_environment(app: str, environment: Mapping[str, object], secret_names: Iterable[str] = ()) -> None:
    """Raise ValueError when a task's plain `environment` and `secret_names` do not fit
    the contract for `app`: an undeclared name, a secret passed as plain environment,
    a plain value passed as a secret, or a required variable left out."""
    plain, secret = set(environment), set(secret_names)
    problems = [f"{name} is not read by {app}" for name in undeclared_for(app, plain | secret)]
    problems += [f"{name} is a secret: pass it from Secrets Manager" for name in sorted(plain & secrets())]
    problems += [f"{name} is not a secret: pass it as plain environment" for name in sorted(secret - secrets())]
    problems += [f"{name} is required" for name in missing_for(app, plain | secret)]
    if problems:
        raise ValueError(f"{app}'s environment breaks the contract: " + "; ".join(problems))


def markdown_table() -> str:
    """The contract as a Markdown table: `python -m infra.env_contract` prints it."""
    lines = ["| Variable | Read by | Secret | Meaning |", "|---|---|---|---|"]
    for name, variable in VARIABLES.items():
        readers = ", ".join(r for r in READERS if r in variable.readers)
        lines.append(f"| `{name}` | {readers} | {'yes' if variable.secret else ''} | {variable.meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
