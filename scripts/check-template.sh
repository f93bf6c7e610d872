#!/usr/bin/env bash
# Validates template.yaml offline with three tools, failing on any finding:
#   1. sam validate --lint      (SAM CLI's bundled cfn-lint on the *transformed* template)
#   2. sam validate --language-extensions  (the SAM translator itself, on the template with its
#                               Fn::ForEach loops expanded: catches SAM-level mistakes lint misses)
#   3. cfn-lint -a cfn_lint_serverless.rules  (serverless best-practice rules, ES*/WS*)
#
# Tools are pinned and installed into project-local virtualenvs on first use (SAM CLI pins older
# boto3/click, so it gets its own venv); a venv is rebuilt only when its pins change.
# Needs PyPI once; no AWS account, no Docker, no network afterwards. Non-interactive (CI=true).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$root"

SAM_VENV="$root/.local/sam-venv"
LINT_VENV="$root/.local/lint-venv"
SAM_PINS=(aws-sam-cli==1.170.0)
LINT_PINS=(cfn-lint==1.58.0 cfn-lint-serverless==0.3.6)
TEMPLATE=template.yaml

log() { printf '[template] %s\n' "$*" >&2; }
die() {
    printf '[template] error: %s\n' "$*" >&2
    exit 1
}

# ensure_venv DIR PIN... : (re)build DIR with exactly these pins unless its stamp already matches.
ensure_venv() {
    local dir=$1
    shift
    local want="$*" stamp="$dir/.pins"
    if [[ -x $dir/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    log "installing $want into ${dir#"$root"/} (one-time)"
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    if ! python3 -m venv "$dir" 2>/dev/null; then
        # Debian ships venv/ensurepip separately.
        if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null ||
                { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
            python3 -m venv "$dir" || die "python3 -m venv fails even with python3-venv installed"
        else
            die "python3 -m venv failed: install python3-venv"
        fi
    fi
    local pip_log="$dir/pip-install.log"
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$dir/bin/pip" install --quiet "$@" >"$pip_log" 2>&1; then
        tail -n 20 "$pip_log" >&2
        die "pip install $want failed (full log: ${pip_log#"$root"/})"
    fi
    printf '%s\n' "$want" >"$stamp" # written last: a half-built venv is never trusted
}

[[ -f $TEMPLATE ]] || die "$TEMPLATE not found in $root"
ensure_venv "$SAM_VENV" "${SAM_PINS[@]}"
ensure_venv "$LINT_VENV" "${LINT_PINS[@]}"

export CI=true
export SAM_CLI_TELEMETRY=0
# Plain `sam validate` builds a boto3 client for the translator and needs a region; validation
# itself is offline (it never calls AWS) and works without credentials (checked with SAM CLI
# 1.170.0 on a machine with none), so none are given. A developer's AWS_PROFILE is dropped so that
# a missing or expired profile cannot break an offline check.
export AWS_DEFAULT_REGION=us-east-1
export AWS_REGION=us-east-1
unset AWS_PROFILE

failed=0
# run NAME CMD... : print the tool's output indented; any non-zero exit is a finding.
run() {
    local name=$1
    shift
    local out status=0
    out=$("$@" 2>&1) || status=$?
    printf '%s\n' "--- $name (exit $status)"
    [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/    /'
    if [[ $status != 0 ]]; then
        failed=1
        log "$name: FAILED"
    fi
}

run "sam validate --lint" "$SAM_VENV/bin/sam" validate --lint --template "$TEMPLATE"
# The template uses AWS::LanguageExtensions (Fn::ForEach). SAM CLI expands it locally only when asked
# (--language-extensions, SAM CLI >= 1.160); without it the translator fails on the loops. --lint
# needs no flag: it lints the template as written, and cfn-lint expands the loops itself.
run "sam validate --language-extensions" "$SAM_VENV/bin/sam" validate --language-extensions --template "$TEMPLATE"
# The template file must come before -a (otherwise -a swallows it as a rules directory).
run "cfn-lint + cfn-lint-serverless" "$LINT_VENV/bin/cfn-lint" "$TEMPLATE" -a cfn_lint_serverless.rules

if [[ $failed != 0 ]]; then
    die "$TEMPLATE has findings (see above)"
fi
log "$TEMPLATE ok (sam validate --lint, sam validate --language-extensions, cfn-lint + serverless rules: no findings)"
