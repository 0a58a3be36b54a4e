#!/usr/bin/env bash
# Run one Pulumi command over the four layers in dependency order:
#   up/preview/refresh: network, messaging, data, compute (data's alarms notify messaging's topic)
#   destroy:            compute, data, messaging, network
#
#   scripts/aws/layers.sh up [--stack dev] [--policy] [-- extra pulumi args]
#
# --policy adds the CrossGuard pack in policy/ (preview and up only).
# Stacks must exist and be configured first (docs/deploy.md, steps 2-5).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ACTION="${1:-}"
shift || true
STACK="${PULUMI_STACK:-dev}"
POLICY=0
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stack) STACK="$2"; shift 2 ;;
    --policy) POLICY=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

case "$ACTION" in
  up|preview|refresh) LAYERS=(network messaging data compute) ;;
  destroy) LAYERS=(compute data messaging network) ;;
  *) echo "usage: $0 up|preview|refresh|destroy [--stack NAME] [--policy] [-- pulumi args]" >&2; exit 2 ;;
esac

for layer in "${LAYERS[@]}"; do
  args=("$ACTION" --stack "$STACK" --cwd "$REPO_ROOT/$layer")
  if [[ "$POLICY" == 1 && ( "$ACTION" == up || "$ACTION" == preview ) ]]; then
    args+=(--policy-pack "$REPO_ROOT/policy")
  fi
  echo "==> $layer: pulumi ${args[*]} ${EXTRA[*]:-}"
  pulumi "${args[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
done
