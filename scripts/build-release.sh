#!/usr/bin/env bash
# Builds every function as shipped (`cargo lambda build --release`, x86_64: the
# arm64 target cannot be fetched here; SAM builds arm64 for deployment) and
# prints each bootstrap's size.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lambda-tools.sh
source scripts/lambda-tools.sh
functions=(validate create-database create-schema register-services generate-api-keys finalize access purge dead-letter sweeper reconciler api migrate)
args=()
for f in "${functions[@]}"; do args+=(--bin "$f"); done
start=$(date +%s)
cargo lambda build --release --locked "${args[@]}"
echo "[build] cargo lambda build --release: $(( $(date +%s) - start )) s"
for f in "${functions[@]}"; do
  file="target/lambda/$f/bootstrap"
  [[ -f $file ]] || { echo "[build] missing $file" >&2; exit 1; }
  awk -v f="$f" -v s="$(stat -c %s "$file")" 'BEGIN { printf "[build] %-18s %6.2f MB (%d bytes)\n", f, s / 1e6, s }'
done
