"""compute/'s ECS task definitions pass each app exactly what the environment
contract (infra.env_contract) says it reads: only declared names, every
required one, credentials only as secrets and nothing else as a secret."""

import json

import pytest

from harness import TASKDEF
from infra import env_contract as contract

TASKS = ("frontend", "pelican", "emu", "operator")


def container(run, task):
    (definition,) = json.loads(run.one(TASKDEF, f"-{task}").inputs["containerDefinitions"])
    return definition


@pytest.mark.parametrize("shape", ["compute_run", "compute_plain_run", "compute_gpu_run"])
@pytest.mark.parametrize("task", TASKS)
def test_each_task_definition_keeps_the_contract(request, shape, task):
    definition = container(request.getfixturevalue(shape), task)
    environment = {e["name"]: e["value"] for e in definition["environment"]}
    secret_names = [s["name"] for s in definition["secrets"]]
    contract.check_environment(task, environment, secret_names)


def test_the_editor_credentials_and_the_api_key_come_from_secrets_manager(compute_run):
    secret_names = {s["name"] for s in container(compute_run, "frontend")["secrets"]}
    assert secret_names == {"PINECONE_API_KEY", "EDITOR_USERNAME", "EDITOR_PASSWORD"}
    assert secret_names <= contract.secrets()
