#!/usr/bin/env bash
# Install what meshd and its tests need on a Debian machine: system packages (as root) and a
# virtual environment in .venv with meshd installed in editable mode. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv python3-dev gcc libgmp-dev iproute2 iputils-ping
              wireguard-go wireguard-tools babeld bird2 serf bc procps nftables iptables
              systemd)  # systemd-analyze verifies the shipped units

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "meshd setup: missing Debian packages: ${missing[*]}; run this script as root to install them" >&2
    exit 1
  fi
  echo "meshd setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Some of these packages would start a daemon of theirs and enable it at boot (BIRD,
  # serf, babeld): the tests and the demo start their own, in namespaces, and stop them.
  # Kept from starting while installed (policy-rc.d) and disabled after, for those this
  # run installed only: a machine's own BIRD or babeld is left as it was.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  for p in "${missing[@]}"; do
    case $p in
      bird2) service=bird ;;
      serf | babeld) service=$p ;;
      *) continue ;;
    esac
    systemctl disable --quiet "$service.service" >/dev/null 2>&1 || true
    update-rc.d "$service" disable >/dev/null 2>&1 || true
  done
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.meshd-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "meshd setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
    | grep -v "is neither a file nor a directory" || true
  .venv/bin/python -c "import meshd, libp2p, nacl, msgpack, trio, pyroute2, typer" \
    || { echo "meshd setup: the Python install failed" >&2; exit 1; }
  touch "$stamp"
fi
