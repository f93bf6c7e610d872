#!/usr/bin/env bash
# `make test`: brings a fresh local stack up (TLS on), runs every Rust test
# (unit and integration) against it, invokes every function with its sample
# event under `cargo lambda watch`, validates template.yaml, tears the stack
# down whatever happens, and closes with one summary line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

trap 'scripts/stack.sh down' EXIT
# TLS on, so the sslmode=require test runs against a real certificate.
PG_SSL=1 scripts/stack.sh up
# shellcheck disable=SC1091
source .local/env
mkdir -p .local/logs
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee .local/logs/test.log || status=$?
passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' .local/logs/test.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' .local/logs/test.log | awk '{s+=$1} END {print s+0}')


for step in scripts/invoke-local.sh scripts/check-template.sh; do
  if "$step" 2>&1 | tee ".local/logs/$(basename "$step" .sh).log"; then
    passed=$((passed + 1))
  else
    echo "FAILED: $step" >&2
    failed=$((failed + 1))
    status=1
  fi

done
# Stop the stack first, so the summary is the last line printed.
trap - EXIT
scripts/stack.sh down
echo
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
