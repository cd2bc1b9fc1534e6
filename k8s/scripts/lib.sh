# Shared settings of the k8s/scripts: sourced, not run.
# NAMESPACE and OVERLAY may be set in the environment; SECRETS_DIR holds the secret files
# (outside the repository, or under the git-ignored .local/).
set -euo pipefail
K8S_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAMESPACE="${NAMESPACE:-credit-risk}"
OVERLAY="${OVERLAY:-oke}"
SECRETS_DIR="${SECRETS_DIR:-$K8S_DIR/../.local/k8s-secrets}"
# The registered model's name comes from its one owner, common/facts.py (stdlib only).
MODEL_NAME="${MODEL_NAME:-$(cd "$K8S_DIR/.." && python3 -m common.facts --get MODEL_NAME)}"
kc() { kubectl --namespace "$NAMESPACE" "$@"; }
die() { echo "error: $*" >&2; exit 1; }
need_file() { [ -s "$1" ] || die "missing $1 (see k8s/README.md, secrets)"; }
# wait_job <job> <seconds>: until the Job completes; on failure print its log and stop.
wait_job() {
  local job=$1 deadline=$((SECONDS + $2)) conditions
  while :; do
    conditions="$(kc get job "$job" -o jsonpath='{.status.conditions[?(@.status=="True")].type}')"
    case " $conditions " in
      *" Complete "*) kc logs "job/$job" --tail=20; return 0 ;;
      *" Failed "*) kc logs "job/$job" --tail=50 || true; die "job $job failed" ;;
    esac
    [ $SECONDS -lt "$deadline" ] || die "job $job not done after $2 s"
    sleep 10
  done
}
