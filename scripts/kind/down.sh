#!/usr/bin/env bash
# Delete the kind cluster made by scripts/kind/up.sh (its CA, secrets and config in ~/.cache/datalake-hub/kind are kept).
set -euo pipefail
kind delete cluster --name "${CLUSTER:-datalake-hub}"
