"""scripts/aws/run-migration.sh against stand-in ``pulumi`` and ``aws`` commands."""
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from harness import REPO

SCRIPT = REPO / "scripts" / "aws" / "run-migration.sh"

FAKE_PULUMI = r"""#!/usr/bin/env bash
echo "pulumi $*" >> "$CALLS"
case "$*" in
  "config get aws:region"*) echo eu-west-1 ;;
  "stack output operatorClusterName"*) echo ps-dev-pelican-abc ;;
  "stack output operatorTaskDefinitionArn"*) echo arn:aws:ecs:eu-west-1:1:task-definition/ps-dev-operator:3 ;;
  "stack output operatorSecurityGroupId"*) echo sg-operator ;;
  "stack output privateSubnetIds"*) echo '["subnet-a","subnet-b"]' ;;
  "stack output operatorLogGroupName"*) echo /ecs/ps-dev/operator ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""

FAKE_AWS = r"""#!/usr/bin/env bash
printf '%s\n' "aws $*" >> "$CALLS"
case "$1 $2" in
  "ecs run-task") n=$(grep -c "ecs run-task" "$CALLS"); echo "arn:aws:ecs:eu-west-1:1:task/ps-dev-pelican-abc/task$n" ;;
  "ecs wait") exit 0 ;;
  "ecs describe-tasks")
    if [[ "$*" == *exitCode* ]]; then
      if [[ "$*" == *"task${FAIL_TASK:-none}"* ]]; then echo 1; else echo 0; fi
    else echo "Essential container in task exited"; fi ;;
  "logs tail") echo "log line" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fakes(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("pulumi", FAKE_PULUMI), ("aws", FAKE_AWS)):
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)}
    return env, calls


def run(env, *args):
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def run_task_commands(calls: Path):
    commands = []
    for line in calls.read_text().splitlines():
        if line.startswith("aws ecs run-task"):
            overrides = line.split("--overrides ", 1)[1].split(" --query", 1)[0]
            (override,) = json.loads(overrides)["containerOverrides"]
            assert override["name"] == "operator"
            commands.append(override["command"])
    return commands


def test_pelican_image_entrypoint_is_what_the_overrides_assume():
    dockerfile = REPO / "apps" / "pelican" / "Dockerfile"
    if not dockerfile.exists():
        pytest.skip("apps/pelican/Dockerfile not there yet")
    assert 'ENTRYPOINT ["python", "-m", "pelican"]' in dockerfile.read_text()


OPERATOR = REPO / "scripts" / "aws" / "operator.sh"


def test_syntax():
    for script in (SCRIPT, OPERATOR, REPO / "scripts" / "aws" / "ecs-task.sh"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script


@pytest.mark.parametrize("args", [["reconcile"], ["reconcile", "--repair"], ["redrive"], ["migrate"], ["grant-roles"]])
def test_operator_runs_one_command(fakes, args):
    env, calls = fakes
    result = subprocess.run(["bash", str(OPERATOR), "--stack", "prod", *args], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert run_task_commands(calls) == [args]
    log = calls.read_text()
    assert "--stack prod" in log and "--started-by operator" in log


def test_operator_without_a_command_is_a_usage_error(fakes):
    env, _ = fakes
    assert subprocess.run(["bash", str(OPERATOR)], env=env, capture_output=True).returncode == 2


def test_migrates_then_loads_catalog_with_stack_outputs(fakes):
    env, calls = fakes
    result = run(env, "--stack", "dev")
    assert result.returncode == 0, result.stderr
    # The image's ENTRYPOINT is `python -m pelican`: overrides carry the subcommand only.
    # grant-roles right after migrate: the apps connect as roles that only it creates and grants.
    assert run_task_commands(calls) == [
        ["migrate"],
        ["grant-roles"],
        ["load-catalog", "/app/data/products.csv"],
    ]
    log = calls.read_text()
    assert "--cluster ps-dev-pelican-abc" in log
    assert "--task-definition arn:aws:ecs:eu-west-1:1:task-definition/ps-dev-operator:3" in log
    assert "subnets=[subnet-a,subnet-b],securityGroups=[sg-operator],assignPublicIp=DISABLED" in log
    assert "--log-stream-names operator/operator/task1" in log
    assert "--launch-type FARGATE" in log
    assert "--stack dev" in log
    assert "Database ready" in result.stdout


def test_backfill_and_skip_catalog(fakes):
    env, calls = fakes
    result = run(env, "--skip-catalog", "--backfill")
    assert result.returncode == 0, result.stderr
    assert run_task_commands(calls) == [["migrate"], ["grant-roles"], ["backfill"]]


def test_failed_migration_stops_before_catalog(fakes):
    env, calls = fakes
    result = run({**env, "FAIL_TASK": "1"})
    assert result.returncode != 0
    assert "schema failed: exit code 1" in result.stderr
    assert len(run_task_commands(calls)) == 1


LAYERS_SCRIPT = REPO / "scripts" / "aws" / "layers.sh"


def test_layers_up_in_dependency_order_and_destroy_in_reverse(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "$CALLS"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)}

    def layers(*args):
        calls.unlink(missing_ok=True)
        result = subprocess.run(["bash", str(LAYERS_SCRIPT), *args], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return [line.split("--cwd ")[1].split()[0].rsplit("/", 1)[1] for line in calls.read_text().splitlines()]

    assert layers("up", "--stack", "prod", "--policy", "--", "--yes") == ["network", "messaging", "data", "compute"]
    first = calls.read_text().splitlines()[0]
    assert first.startswith("up --stack prod") and "--policy-pack" in first and first.endswith("--yes")
    assert layers("destroy") == ["compute", "data", "messaging", "network"]
    assert "--policy-pack" not in calls.read_text()
    bad = subprocess.run(["bash", str(LAYERS_SCRIPT), "deploy"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2


def test_gives_up_waiting_on_a_task_that_never_stops(fakes, tmp_path):
    env, calls = fakes
    aws = Path(env["PATH"].split(":")[0]) / "aws"
    aws.write_text(aws.read_text().replace('"ecs wait") exit 0 ;;', '"ecs wait") exit 255 ;;'))
    result = run({**env, "MIGRATION_WAIT_ROUNDS": "2"})
    assert result.returncode != 0
    assert "has not stopped after 20 minutes" in result.stderr
    assert len(run_task_commands(calls)) == 1
