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
echo "== pytest"
rc=0; pytest -p no:cacheprovider --durations=25 "$@" || rc=$?
# 5 = no test collected: that is a failure here, never a pass.
exit "$rc"
