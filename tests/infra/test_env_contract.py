"""The environment contract (infra.env_contract) agrees with what the settings
read, with the apps' code, and with the places that pass variables: docker-compose.yml
and the local stack's stack.env. compute/'s task definitions are checked in
tests/infra/test_env_contract_compute.py (they need the Pulumi mocks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from emu import config as emu_config
from frontend import config as frontend_config
from frontend.config import FrontendSettings
from infra import env_contract as contract
from pelican import config as pelican_config
from productsearch.env import EnvTuning, variable_of
from productsearch import settings

REPO = Path(__file__).resolve().parents[2]

# A complete, valid environment: every settings class can be built from it.
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"
FULL_ENV = {
    "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/products",
    "DATABASE_SECRET_ARN": SECRET,
    "AWS_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
    "SQS_QUEUE_URL": "http://127.0.0.1:3/123456789012/q",
    "SQS_DLQ_URL": "http://127.0.0.1:3/123456789012/dlq",
    "SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t",
    "PINECONE_HOST": "http://127.0.0.1:2",
    "PINECONE_API_KEY": "k",
    "PELICAN_DATABASE_SECRET_ARN": SECRET,
    "FRONTEND_DATABASE_SECRET_ARN": SECRET,
}


class RecordingEnv(dict):
    """A mapping that remembers every name looked up in it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)


def names_read_by(*builders) -> set[str]:
    env = RecordingEnv(FULL_ENV)
    for build in builders:
        build(env)
    return env.asked


def section_names(sections) -> set[str]:
    return {name for section in sections for name in section.variables()}


SETTINGS_CLASSES = [settings.DatabaseSettings, settings.AppRoleSettings, settings.QueueSettings,
                    settings.IndexSettings, settings.EmbeddingSettings, pelican_config.PelicanSettings,
                    emu_config.EmuSettings, FrontendSettings]
# Every module that declares settings sections.
SETTINGS_MODULES = (settings, pelican_config, emu_config, frontend_config)


def all_sections() -> list[type]:
    return [s for module in SETTINGS_MODULES for s in vars(module).values()
            if isinstance(s, type) and issubclass(s, (settings.EnvSection, EnvTuning))
            and s not in (settings.EnvSection, EnvTuning)
            and s.__module__ == module.__name__]


@pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda c: c.__name__)
def test_each_settings_class_reads_exactly_the_variables_of_its_sections(cls):
    sections = frontend_config.FRONTEND_ENV_SECTIONS if cls is FrontendSettings else (cls,)
    assert names_read_by(cls.from_env) == section_names(sections)


def test_every_variable_a_settings_section_declares_is_in_the_table_and_vice_versa():
    sections = all_sections()
    declared = section_names(sections)
    by_hand = {v.name for v in contract.LIBRARY_VARIABLES}
    assert declared <= set(contract.VARIABLES), "declared by a section but nobody reads it (add it to READS)"
    assert set(contract.VARIABLES) - by_hand == declared
    for variable in contract.VARIABLES.values():
        assert variable.meaning and variable.readers <= set(contract.READERS), variable


def test_the_table_says_what_each_app_reads():
    # The entry points' from_env calls, as apps/*/__main__.py make them.
    reads = {
        "pelican": names_read_by(settings.DatabaseSettings.from_env, settings.QueueSettings.from_env,
                                 pelican_config.PelicanSettings.from_env),
        "emu": names_read_by(settings.EmbeddingSettings.from_env, emu_config.EmuSettings.from_env,
                             settings.IndexSettings.from_env,
                             lambda env: settings.QueueSettings.from_env(env, need_dlq=True)),
        "frontend": names_read_by(FrontendSettings.from_env),
        "operator": names_read_by(settings.DatabaseSettings.from_env, settings.AppRoleSettings.from_env,
                                  settings.IndexSettings.from_env, pelican_config.PelicanSettings.from_env,
                                  settings.text_template_from_env,
                                  lambda env: settings.QueueSettings.from_env(env, need_dlq=True)),
    }
    by_hand = {v.name: v for v in contract.LIBRARY_VARIABLES}
    for app, names in reads.items():
        assert contract.names_for(app) - set(by_hand) == names, app


def test_secrets_are_the_credentials():
    assert contract.secrets() == {"DATABASE_URL", "PGPASSWORD", "PINECONE_API_KEY", "EDITOR_USERNAME",
                                  "EDITOR_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_embedding_dimension_is_declared_once():
    owners = [s for s in all_sections() if any(variable_of(n, s.model_fields[n]) == "EMBEDDING_DIMENSION"
                                               for n in s.__annotations__ if n in s.model_fields)]
    assert owners == [settings.DimensionEnv]
    assert contract.VARIABLES["EMBEDDING_DIMENSION"].readers == {"emu", "frontend", "operator"}


# Reads of one variable by name outside the settings modules: os.environ.get("X"),
# os.environ["X"], os.getenv("X"). Writes (setdefault, assignment) are not reads.
DIRECT_READ = re.compile(r"""(?:environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']|environ\[["']([A-Z][A-Z0-9_]*)["']\](?!\s*=[^=])""")


def test_every_variable_the_apps_read_directly_is_in_the_table():
    found = {}
    for path in (REPO / "apps").glob("*/*/**/*.py"):
        for match in DIRECT_READ.finditer(path.read_text()):
            found.setdefault(match.group(1) or match.group(2), []).append(str(path.relative_to(REPO)))
    undeclared = {name: paths for name, paths in found.items() if name not in contract.VARIABLES}
    assert not undeclared
    assert "LOG_LEVEL" in found  # the pattern does find reads


# docker-compose.yml's services that run our images, and which reader each one is.
COMPOSE_APPS = {"pelican": "pelican", "emu": "emu", "frontend": "frontend", "setup": "operator"}


def compose_services() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def test_compose_runs_only_the_apps_the_contract_knows():
    built = {name for name, service in compose_services().items() if "build" in service}
    assert built == set(COMPOSE_APPS)


@pytest.mark.parametrize("service, app", COMPOSE_APPS.items())
def test_compose_passes_only_declared_variables(service, app):
    environment = compose_services()[service].get("environment") or {}
    assert contract.undeclared_for(app, environment) == []


@pytest.mark.parametrize("service", ["pelican", "emu", "frontend"])
def test_compose_gives_each_app_every_required_variable(service):
    environment = compose_services()[service].get("environment") or {}
    assert contract.missing_for(COMPOSE_APPS[service], environment) == []


def stack_env(tmp_path) -> dict[str, str]:
    from devstack.stack import DevStack

    return DevStack(root=tmp_path).env()


@pytest.mark.parametrize("app", ["pelican", "emu", "frontend"])
def test_the_local_stack_gives_each_app_every_required_variable(tmp_path, app):
    assert contract.missing_for(app, stack_env(tmp_path)) == []


def test_the_local_stack_writes_only_declared_variables(tmp_path):
    env = stack_env(tmp_path)
    assert sorted(set(env) - set(contract.VARIABLES)) == []
    # Each of its variables is read by an app or by the tools that run against the stack.
    assert all(contract.VARIABLES[name].readers for name in env)


def test_check_environment_names_each_breach():
    good = {"AWS_REGION": "r", "SQS_QUEUE_URL": "u", "SQS_DLQ_URL": "d", "PINECONE_HOST": "h"}
    contract.check_environment("emu", good, ["PINECONE_API_KEY"])
    with pytest.raises(ValueError) as exc:
        contract.check_environment("emu", {**good, "PINECONE_API_KEY": "k", "FRONTEND_PORT": "1"},
                                   ["EMU_STOP_TIMEOUT_SECONDS"])
    message = str(exc.value)
    for part in ("FRONTEND_PORT is not read by emu", "PINECONE_API_KEY is a secret",
                 "EMU_STOP_TIMEOUT_SECONDS is not a secret"):
        assert part in message
    with pytest.raises(ValueError, match="DATABASE_URL or PGHOST is required"):
        contract.check_environment("pelican", {"AWS_REGION": "r", "SQS_QUEUE_URL": "u"})
