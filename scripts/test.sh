#!/usr/bin/env bash
# Brings the local stack up, runs every test (unit and integration) against it,
# and tears the stack down whatever happens.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

trap 'scripts/stack.sh down' EXIT
scripts/stack.sh up
# shellcheck disable=SC1091
source .local/env
cargo test --workspace --locked "$@"
