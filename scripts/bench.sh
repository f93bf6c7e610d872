#!/usr/bin/env bash
# `make bench`: a durable local stack (fsync on), the functions built as shipped,
# then the benchmark: floor vs pipeline latency, throughput, scale, and per
# function size, init time and peak RSS. Prints one table, writes
# bench/results.md (with date and machine) and puts it into docs/benchmarks.md.
# Sizes of the series: BENCH_LATENCY (50), BENCH_BURST (100), BENCH_SCALE (2000, over the stack's two clusters),
# BENCH_INIT_RUNS (20). BENCH_BASELINE=DIR also measures the builds in DIR/<function>/bootstrap (size, init)
# in the same run, for a before/after.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/build-release.sh
# The driver is built the same way, so it shares the functions' compiled dependencies.
# shellcheck source=scripts/lambda-tools.sh
source scripts/lambda-tools.sh
cargo lambda build --release --locked --bin bench
trap 'scripts/stack.sh down' EXIT
PG_DURABLE=1 scripts/stack.sh up
# shellcheck disable=SC1091
source .local/env
# The bench reports CPU time by process: it reads these servers' /proc entries
# (every cluster's postmaster: .local/pg, .local/pg2, ...).
BENCH_PG_PID=$(for f in .local/pg/data/postmaster.pid .local/pg[0-9]*/data/postmaster.pid; do
    [[ -f $f ]] && head -n 1 "$f"
done | tr '\n' ' ')
BENCH_MOTO_PID=$(cat .local/moto.pid)
export BENCH_PG_PID BENCH_MOTO_PID
target/lambda/bench/bootstrap

# docs/benchmarks.md shows the latest table, between its bench markers.
python3 - <<'PY'
import re, sys
results = open("bench/results.md").read().split("\n", 2)[2].replace("\n## ", "\n### ")
path = "docs/benchmarks.md"
doc = open(path).read()
start, end = "<!-- bench:start -->", "<!-- bench:end -->"
if start not in doc or end not in doc:
    sys.exit(f"[bench] {path} has no {start} ... {end} markers: nothing updated")
block = f"{start}\n{results.strip()}\n{end}"
doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
open(path, "w").write(doc)
PY
echo "[bench] docs/benchmarks.md updated from bench/results.md"
