#!/usr/bin/env bash
# Train and (if better) promote to @champion: one Job stamped from the suspended CronJob.
source "$(dirname "$0")/lib.sh"
job="trainer-$(date -u +%Y%m%d%H%M%S)"
kc create job "$job" --from=cronjob/trainer
wait_job "$job" 3600
