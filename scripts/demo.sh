#!/usr/bin/env bash
# Set up, then build a 5-node WireGuard mesh in network namespaces, use it, revoke a node, and
# tear everything down (also on Ctrl-C). Needs root: network namespaces and wireguard-go.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "meshd demo: needs root (network namespaces, wireguard-go); run it as root, e.g. sudo bash scripts/demo.sh" >&2
  exit 1
fi
bash scripts/setup.sh
exec .venv/bin/meshd demo "$@"
