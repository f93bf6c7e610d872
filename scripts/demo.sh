#!/usr/bin/env bash
# Brings the local stack up, provisions the sample project end to end through
# the stage functions (local event-source runner), prints each stage, tears down.
# DEMO=demo-lifecycle (scripts/demo-lifecycle.sh) carries it on through its lifecycle.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
event="${1:-events/create-project.json}"

cargo build --quiet -p local-dev --bin local-dev
trap 'scripts/stack.sh down' EXIT
scripts/stack.sh up
# shellcheck disable=SC1091
source .local/env
export VISIBILITY_TIMEOUT="${VISIBILITY_TIMEOUT:-5}"
export RUST_LOG="${RUST_LOG:-info}"
target/debug/local-dev "${DEMO:-demo}" "$event"
