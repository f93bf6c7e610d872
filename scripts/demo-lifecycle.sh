#!/usr/bin/env bash
# `make demo-lifecycle`: `make demo`, then the sample project through suspend,
# resume, delete, restore and delete; the sweeper purges it once its recovery
# window (5 s here, 7 days by default) has passed.
export RECOVERY_WINDOW_SECONDS="${RECOVERY_WINDOW_SECONDS:-5}"
DEMO=demo-lifecycle exec "$(dirname "${BASH_SOURCE[0]}")/demo.sh" "$@"
