#!/usr/bin/env bash
# Apply pelican's schema and load the sample catalog into RDS, with no jump host:
# runs one-off ECS tasks from pelican's own task definition (same image, same
# secrets, same security group, private subnets) and waits for each to finish.
#
#   scripts/aws/run-migration.sh [--stack dev] [--skip-catalog] [--backfill]
#
# Needs: pulumi (logged in to the backend holding the stacks), the AWS CLI v2
# with credentials for the account, python3. Reads the compute stack's outputs.
set -euo pipefail

STACK="${PULUMI_STACK:-dev}"
LOAD_CATALOG=1
BACKFILL=0
CATALOG_PATH="/app/data/products.csv"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMPUTE_DIR="${COMPUTE_DIR:-$REPO_ROOT/compute}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --stack) STACK="$2"; shift 2 ;;
    --skip-catalog) LOAD_CATALOG=0; shift ;;
    --backfill) BACKFILL=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

output() { pulumi stack output "$@" --stack "$STACK" --cwd "$COMPUTE_DIR"; }

REGION="$(pulumi config get aws:region --stack "$STACK" --cwd "$COMPUTE_DIR")"
CLUSTER="$(output pelicanClusterName)"
TASK_DEFINITION="$(output pelicanTaskDefinitionArn)"
SECURITY_GROUP="$(output pelicanSecurityGroupId)"
SUBNETS="$(output privateSubnetIds --json | python3 -c 'import json,sys; print(",".join(json.load(sys.stdin)))')"
LOG_GROUP="$(output logGroupNames --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pelican"])')"
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"

run_task() {
  local label="$1"; shift
  local overrides task_arn task_id exit_code reason
  overrides="$(python3 -c 'import json,sys; print(json.dumps({"containerOverrides": [{"name": "pelican", "command": sys.argv[1:]}]}))' "$@")"
  echo "==> $label: python -m pelican $*"
  task_arn="$(aws ecs run-task \
    --cluster "$CLUSTER" \
    --task-definition "$TASK_DEFINITION" \
    --launch-type FARGATE \
    --count 1 \
    --started-by "run-migration" \
    --network-configuration "awsvpcConfiguration={subnets=[$SUBNETS],securityGroups=[$SECURITY_GROUP],assignPublicIp=DISABLED}" \
    --overrides "$overrides" \
    --query 'tasks[0].taskArn' --output text)"
  if [[ -z "$task_arn" || "$task_arn" == "None" ]]; then
    echo "could not start the $label task" >&2
    return 1
  fi
  task_id="${task_arn##*/}"
  echo "    task $task_id started; waiting for it to stop"
  # The waiter gives up after 10 minutes; a large catalog load may take longer.
  local tries=0
  until aws ecs wait tasks-stopped --cluster "$CLUSTER" --tasks "$task_arn" 2>/dev/null; do
    tries=$((tries + 1))
    if (( tries >= ${MIGRATION_WAIT_ROUNDS:-6} )); then
      echo "$label task $task_id has not stopped after $((tries * 10)) minutes; giving up waiting" >&2
      return 1
    fi
    echo "    still running..."
  done
  exit_code="$(aws ecs describe-tasks --cluster "$CLUSTER" --tasks "$task_arn" \
    --query 'tasks[0].containers[?name==`pelican`].exitCode | [0]' --output text)"
  reason="$(aws ecs describe-tasks --cluster "$CLUSTER" --tasks "$task_arn" \
    --query 'tasks[0].stoppedReason' --output text)"
  aws logs tail "$LOG_GROUP" --log-stream-names "pelican/pelican/$task_id" --format short || true
  if [[ "$exit_code" != "0" ]]; then
    echo "$label failed: exit code $exit_code ($reason)" >&2
    return 1
  fi
  echo "    $label done"
}

# pelican's image has ENTRYPOINT ["python", "-m", "pelican"]; an ECS command
# override replaces only CMD, so the tasks are given the subcommand alone.
run_task "schema" migrate
if [[ "$LOAD_CATALOG" == 1 ]]; then
  run_task "catalog" load-catalog "$CATALOG_PATH"
fi
if [[ "$BACKFILL" == 1 ]]; then
  run_task "backfill" backfill
fi
echo "Database ready (stack $STACK)."
