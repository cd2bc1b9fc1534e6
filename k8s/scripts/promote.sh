#!/usr/bin/env bash
# Move @champion to a given version (a promotion, or a rollback of the model for every pod):
# runs `python -m training.promote --version N` in the trainer image, inside the cluster.
# The model servers follow the alias by themselves within SERVING_POLL_INTERVAL: no rollout.
# Usage: promote.sh <version>
source "$(dirname "$0")/lib.sh"
version="${1:?usage: $0 <version>}"
[[ "$version" =~ ^[0-9]+$ ]] || die "version must be a number"
job="promote-v$version-$(date -u +%Y%m%d%H%M%S)"
kc create job "$job" --from=cronjob/trainer --dry-run=client -o yaml \
  | kubectl patch --local -f - --type json -o yaml -p "[{\"op\": \"add\",
      \"path\": \"/spec/template/spec/containers/0/command\",
      \"value\": [\"python\", \"-m\", \"training.promote\", \"--version\", \"$version\"]}]" \
  | kc create -f -
wait_job "$job" 600
