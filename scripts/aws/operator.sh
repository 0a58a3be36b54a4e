#!/usr/bin/env bash
# Run one pelican command as a one-off operator task on AWS and wait for it:
#
#   scripts/aws/operator.sh [--stack dev] migrate
#   scripts/aws/operator.sh [--stack dev] grant-roles     # after migrate, or after changing an app's DB secret
#   scripts/aws/operator.sh [--stack dev] reconcile [--repair]
#   scripts/aws/operator.sh [--stack dev] redrive
#   scripts/aws/operator.sh [--stack dev] <any pelican subcommand and arguments>
#
# The task uses pelican's image with the operator task definition (compute layer): the
# database as its administrator (the RDS master secret) and the app roles' secrets, the
# Pinecone key, SQS_QUEUE_URL and SQS_DLQ_URL, send to the jobs queue and receive/delete on the DLQ. Needs pulumi, the AWS CLI v2 and python3, like run-migration.sh.
set -euo pipefail

STACK="${PULUMI_STACK:-dev}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMPUTE_DIR="${COMPUTE_DIR:-$REPO_ROOT/compute}"

case "${1:-}" in
  --stack) STACK="$2"; shift 2 ;;
  -h|--help|"") sed -n '2,12p' "$0"; exit 2 ;;
esac
if [[ $# -eq 0 ]]; then
  echo "usage: $0 [--stack NAME] <pelican subcommand> [args...]" >&2
  exit 2
fi

STARTED_BY="operator"
# shellcheck source=scripts/aws/ecs-task.sh
source "$(dirname "${BASH_SOURCE[0]}")/ecs-task.sh"

run_task "$1" "$@"
