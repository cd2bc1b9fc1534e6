#!/usr/bin/env bash
# Delete a container instance (graceful: containers get SIGTERM, then the shutdown timeout).
# Usage: oci/delete.sh <container-instance-ocid>
set -euo pipefail
ocid="${1:?usage: $0 <container-instance-ocid>}"
oci container-instances container-instance delete --container-instance-id "$ocid" --force \
  --wait-for-state DELETED --max-wait-seconds 900
