"""Secrets reach AWS only through Secrets Manager: never in exports, never in a task's
plain environment, never in an image (Dockerfile) or example stack config."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import DATA_SECRETS

REPO = Path(__file__).resolve().parents[2]
SECRET_VALUES = list(DATA_SECRETS.values())
SECRET_NAMES = re.compile(r"(PASSWORD|API_KEY|SECRET(?!_ARN$)|TOKEN)", re.I)  # a secret's ARN is no secret


def test_exports_hold_no_secret_values(network_run, data_run, messaging_run, compute_run):
    for run in (network_run, data_run, messaging_run, compute_run):
        dumped = json.dumps(run.exports, default=str)
        for value in SECRET_VALUES:
            assert value not in dumped, f"{run.project} exports a secret"


def test_task_definitions_pass_secrets_only_by_reference(compute_run):
    for task in compute_run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        containers = task.inputs["containerDefinitions"]
        containers = json.loads(containers) if isinstance(containers, str) else containers
        for container in containers:
            for variable in container.get("environment", []):
                assert not SECRET_NAMES.search(variable["name"]), f"{variable['name']} is a plain environment variable"
                assert variable["value"] not in SECRET_VALUES
            for secret in container.get("secrets", []):
                assert secret["valueFrom"].startswith("arn:aws:secretsmanager:")


def test_images_and_example_configs_carry_no_secrets():
    for dockerfile in (REPO / "apps").glob("*/Dockerfile"):
        for line in dockerfile.read_text().splitlines():
            if line.strip().upper().startswith(("ENV ", "ARG ")):
                assert not SECRET_NAMES.search(line), f"{dockerfile}: {line}"
    for config in REPO.glob("*/Pulumi.*.yaml"):
        text = config.read_text()
        for match in re.finditer(r"(?im)^\s+[\w:]*(password|apikey|api_key|token)\w*:\s*(.+)$", text):
            assert match.group(2).strip().startswith("secure:"), f"{config}: {match.group(0).strip()}"
