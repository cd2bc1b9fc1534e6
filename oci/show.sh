#!/usr/bin/env bash
# State, containers and private IP of a container instance (what the load balancer backend needs).
# Usage: oci/show.sh <container-instance-ocid>
set -euo pipefail
ocid="${1:?usage: $0 <container-instance-ocid>}"
oci container-instances container-instance get --container-instance-id "$ocid" \
  --query 'data.{state:"lifecycle-state",containers:containers[].{name:"display-name",state:"lifecycle-state"},vnic:vnics[0]."vnic-id"}'
vnic="$(oci container-instances container-instance get --container-instance-id "$ocid" \
  --query 'data.vnics[0]."vnic-id"' --raw-output)"
oci network vnic get --vnic-id "$vnic" --query 'data."private-ip"' --raw-output
