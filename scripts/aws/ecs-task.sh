#!/usr/bin/env bash
# Sourced by run-migration.sh and operator.sh: run one-off operator tasks (pelican's image,
# the operator task definition, role and security group, private subnets) and wait for each.
# Expects STACK and COMPUTE_DIR; defines run_task LABEL SUBCOMMAND [ARGS...].

output() { pulumi stack output "$@" --stack "$STACK" --cwd "$COMPUTE_DIR"; }

REGION="$(pulumi config get aws:region --stack "$STACK" --cwd "$COMPUTE_DIR")"
CLUSTER="$(output operatorClusterName)"
TASK_DEFINITION="$(output operatorTaskDefinitionArn)"
SECURITY_GROUP="$(output operatorSecurityGroupId)"
SUBNETS="$(output privateSubnetIds --json | python3 -c 'import json,sys; print(",".join(json.load(sys.stdin)))')"
LOG_GROUP="$(output operatorLogGroupName)"
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"

run_task() {
  local label="$1"; shift
  local overrides task_arn task_id exit_code reason
  overrides="$(python3 -c 'import json,sys; print(json.dumps({"containerOverrides": [{"name": "operator", "command": sys.argv[1:]}]}))' "$@")"
  echo "==> $label: python -m pelican $*"
  task_arn="$(aws ecs run-task \
    --cluster "$CLUSTER" \
    --task-definition "$TASK_DEFINITION" \
    --launch-type FARGATE \
    --count 1 \
    --started-by "${STARTED_BY:-operator}" \
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
    --query 'tasks[0].containers[?name==`operator`].exitCode | [0]' --output text)"
  reason="$(aws ecs describe-tasks --cluster "$CLUSTER" --tasks "$task_arn" \
    --query 'tasks[0].stoppedReason' --output text)"
  aws logs tail "$LOG_GROUP" --log-stream-names "operator/operator/$task_id" --format short || true
  if [[ "$exit_code" != "0" ]]; then
    echo "$label failed: exit code $exit_code ($reason)" >&2
    return 1
  fi
  echo "    $label done"
}

# pelican's image has ENTRYPOINT ["python", "-m", "pelican"]; an ECS command
# override replaces only CMD, so the tasks are given the subcommand alone.
