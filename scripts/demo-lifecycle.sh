#!/usr/bin/env bash
# `make demo-lifecycle`: like `make demo`, then carries the sample project through
# suspend, resume, delete, restore and delete; the sweeper purges it once its
# recovery window (5 s here, 7 days by default) has passed. Each run's stages
# are printed as they complete. Tears the stack down.
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
export RECOVERY_WINDOW_SECONDS="${RECOVERY_WINDOW_SECONDS:-5}"
export RUST_LOG="${RUST_LOG:-info}"
target/debug/local-dev demo-lifecycle "$event"
