#!/usr/bin/env bash
# Runs every function under `cargo lambda watch` (Lambda's runtime API,
# emulated locally) against the local stack and invokes each one with its
# sample event from events/ through `cargo lambda invoke`, checking answers:
#   - api: POST /projects answers 202, GET /projects/{id} 200;
#   - each stage: an SqsBatchResponse with no failures for a valid message;
#   - register-services: the failure listed for a poison message (its service
#     answers 503, a retryable error);
#   - dead-letter: the poison project ends failed; malformed body: acknowledged;
#   - access and purge: a suspend of the ready project and a purge=now of the
#     failed one through the API, each run's stages invoked with the run's ids;
#   - sweeper: a sweep report with numeric outbox_resent and runs_rekicked;
#   - reconciler: a report with orphan, missing and drift counts;
#   - migrate: the custom resource reports SUCCESS to its response URL.
# Uses the running stack (.local/env) or starts one and stops it at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { echo "[invoke] $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- tools: cargo-lambda and zig in their own pinned virtualenv ---------------
# shellcheck source=scripts/lambda-tools.sh
source scripts/lambda-tools.sh

# --- stack ---------------------------------------------------------------------
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pkill -f "cargo-lambda lambda watch -A 127.0.0.1 -P ${watch_port:-0}" 2>/dev/null || true
  if [[ ${started_stack:-0} == 1 ]]; then scripts/stack.sh down; fi
}
trap cleanup EXIT
if ! scripts/stack.sh status >/dev/null 2>&1; then
  scripts/stack.sh up
  started_stack=1
fi
# shellcheck disable=SC1091
source .local/env
export VISIBILITY_TIMEOUT=5 RUST_LOG=info
cargo build --quiet --workspace --bins
target/debug/local-dev setup

work=$(mktemp -d)
stub_port=$(free_port)
python3 scripts/registration-stub.py "$stub_port" "$work/failing" "$work/cfn.log" &
pids+=($!)
export AUTH_REGISTRATION_URL="http://127.0.0.1:$stub_port/auth"

watch_port=$(free_port)
cargo lambda watch -A 127.0.0.1 -P "$watch_port" > .local/logs/watch.log 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$watch_port/" && break
  sleep 0.2
done

invoke() { # function event-file -> response JSON on stdout
  cargo lambda invoke -A 127.0.0.1 -P "$watch_port" "$1" --data-file "$2" 2>>.local/logs/watch.log
}
check() { # description python-expression-over-r
  local description=$1 expr=$2 response
  response=$(cat)
  if python3 -c "import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if ($expr) else 1)" "$response"; then
    log "ok   $description"
  else
    log "FAIL $description: $response"
    exit 1
  fi
}
with_ids() { # event-file project run correlation -> new file
  local out; out="$work/$(basename "$1" .json)-$2.json"
  sed -e "s/11111111-2222-4333-8444-555555555555/$2/g" -e "s/22222222-3333-4444-8555-666666666666/$3/g" \
      -e "s/33333333-4444-4555-8666-777777777777/$4/g" "$1" > "$out"
  echo "$out"
}
create_project() { # idempotency-key -> "project run correlation"
  local event="$work/create-$1.json" response
  sed "s/sample-create-0001/$1/" events/api-create-project.json > "$event"
  response=$(invoke api "$event")
  echo "$response" | check "api POST /projects ($1) answers 202" 'r["statusCode"] == 202'
  python3 -c 'import json,sys; b=json.loads(json.loads(sys.argv[1])["body"]); print(b["project_id"], b["run_id"], b["correlation_id"])' "$response"
}
no_failures='r == {"batchItemFailures": []}'

read -r p1 r1 c1 < <(create_project "invoke-$(date +%s)-a")
for stage in validate create-database create-schema register-services generate-api-keys finalize; do
  invoke "$stage" "$(with_ids "events/sqs-$stage.json" "$p1" "$r1" "$c1")" | check "$stage: valid message, no failures" "$no_failures"
done
invoke api "$(with_ids events/api-get-project.json "$p1" - -)" \
  | check "api GET /projects/{id}: 200 and ready" 'r["statusCode"] == 200 and json.loads(r["body"])["status"] == "ready"'

read -r p2 r2 c2 < <(create_project "invoke-$(date +%s)-b")
echo "$p2" > "$work/failing"
for stage in validate create-database create-schema; do
  invoke "$stage" "$(with_ids "events/sqs-$stage.json" "$p2" "$r2" "$c2")" | check "$stage: second project" "$no_failures"
done
invoke register-services "$(with_ids events/sqs-register-services.json "$p2" "$r2" "$c2")" \
  | check "register-services: poison message listed as a failure" \
      'r["batchItemFailures"] == [{"itemIdentifier": "0e4c0d1a-5b2c-4f0e-9a1b-000000000004"}]'
invoke dead-letter "$(with_ids events/sqs-dead-letter.json "$p2" "$r2" "$c2")" | check "dead-letter: acknowledged" "$no_failures"
invoke api "$(with_ids events/api-get-project.json "$p2" - -)" \
  | check "api GET /projects/{id}: dead-lettered project is failed" 'json.loads(r["body"])["status"] == "failed"'
start_run() { # api-event-file project description -> "run correlation"
  local response
  response=$(invoke api "$1")
  echo "$response" | check "$3 answers 202" 'r["statusCode"] == 202'
  python3 -c 'import json,sys; b=json.loads(json.loads(sys.argv[1])["body"]); print(b["run_id"], b["correlation_id"])' "$response"
}
read -r sr sc < <(start_run "$(with_ids events/api-suspend-project.json "$p1" - -)" "$p1" "api POST /projects/{id}/suspend")
invoke access "$(with_ids events/sqs-access.json "$p1" "$sr" "$sc")" | check "access: the suspend run's message, no failures" "$no_failures"
invoke api "$(with_ids events/api-get-project.json "$p1" - -)" \
  | check "api GET /projects/{id}: suspended, its suspend run succeeded" \
      'json.loads(r["body"])["status"] == "suspended" and json.loads(r["body"])["run"]["status"] == "succeeded"'
sed 's/"rawQueryString": ""/"rawQueryString": "purge=now"/' events/api-delete-project.json > "$work/api-purge-now.json"
read -r dr dc < <(start_run "$(with_ids "$work/api-purge-now.json" "$p2" - -)" "$p2" "api DELETE /projects/{id}?purge=now of the failed project")
invoke access "$(with_ids events/sqs-access.json "$p2" "$dr" "$dc")" | check "access: the delete run's message, no failures" "$no_failures"
invoke purge "$(with_ids events/sqs-purge.json "$p2" "$dr" "$dc")" | check "purge: the delete run's purge, no failures" "$no_failures"
invoke api "$(with_ids events/api-get-project.json "$p2" - -)" \
  | check "api GET /projects/{id}: the failed project is purged" 'json.loads(r["body"])["status"] == "purged"'
invoke validate events/sqs-malformed.json | check "validate: malformed body acknowledged" "$no_failures"
invoke sweeper events/scheduled-sweep.json \
  | check "sweeper: scheduled sweep reports what it re-sent and re-kicked" \
      'all(type(r.get(k)) is int and r[k] >= 0 for k in ("outbox_resent", "runs_rekicked"))'

invoke reconciler events/scheduled-reconcile.json \
  | check "reconciler: a report with orphan, missing and drift counts" \
      'all(type(r[k]["databases"]) is int for k in ("orphans", "missing")) and type(r["drift"]) is int'

sed "s#http://127.0.0.1:9/cloudformation-response#http://127.0.0.1:$stub_port/cloudformation-response#" \
  events/cfn-migrate-create.json > "$work/cfn.json"
invoke migrate "$work/cfn.json" | check "migrate: custom resource answered SUCCESS" 'r["Status"] == "SUCCESS"'
grep -q '"Status":"SUCCESS"' "$work/cfn.log" && log "ok   migrate: CloudFormation got SUCCESS at its response URL"
log "all functions answered their sample events"
