#!/usr/bin/env bash
# Set up everything and run every check: lint, types, the whole test suite.
# As root (CI is root) the tests that need network namespaces, wireguard-go and babeld run too;
# in CI (CI=true) they must run: missing prerequisites fail the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check meshd tests benchmarks scripts
ruff format --check --quiet meshd tests benchmarks scripts
echo "== mypy"; mypy
if [[ $# -gt 0 ]]; then
  echo "== pytest $*"
  rc=0; pytest -p no:cacheprovider --durations=25 "$@" || rc=$?
  # 5 = no test collected: that is a failure here, never a pass.
  exit "$rc"
fi
# The whole suite in two runs. Most tests run on two workers, each module on one of them
# (tests/conftest.py). The root tests (network namespaces, wireguard-go, babeld, real NATs)
# and those marked `alone` (floods) run after them, one at a time, with the machine to
# themselves: their waits are bounds measured on a quiet machine.
echo "== pytest: two workers"
rc=0; pytest -p no:cacheprovider -n 2 --dist loadgroup -m "not root and not alone" \
  --durations=15 || rc=$?
echo "== pytest: root and flood tests, one at a time"
rc_root=0; pytest -p no:cacheprovider -m "root or alone" --durations=15 || rc_root=$?
# 5 = no test collected: that is a failure here, never a pass.
if [[ $rc -ne 0 ]]; then exit "$rc"; fi
exit "$rc_root"
