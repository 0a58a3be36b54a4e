#!/usr/bin/env bash
# Apply pelican's schema, create the apps' database roles and load the sample catalog
# into RDS, with no jump host:
# runs one-off ECS tasks from the operator task definition (pelican's image, its own
# role, secrets and security group, private subnets) and waits for each to finish.
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

STARTED_BY="run-migration"
# shellcheck source=scripts/aws/ecs-task.sh
source "$(dirname "${BASH_SOURCE[0]}")/ecs-task.sh"

run_task "schema" migrate
# After every migrate: the apps connect as their own roles, which exist and hold their
# grants (on the tables the migration may have added) only once this has run.
run_task "roles" grant-roles
if [[ "$LOAD_CATALOG" == 1 ]]; then
  run_task "catalog" load-catalog "$CATALOG_PATH"
fi
if [[ "$BACKFILL" == 1 ]]; then
  run_task "backfill" backfill
fi
echo "Database ready (stack $STACK)."
