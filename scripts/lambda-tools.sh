# Sourced by scripts that need cargo-lambda: installs cargo-lambda and zig into
# a pinned project-local virtualenv (once) and puts it first on PATH, where
# cargo-lambda looks for zig (through python3).
lambda_venv=".local/lambda-venv"
lambda_pins="cargo-lambda==1.9.2 ziglang==0.17.1"
if [[ ! -x $lambda_venv/bin/cargo-lambda || "$(cat "$lambda_venv/.pins" 2>/dev/null)" != "$lambda_pins" ]]; then
  echo "[lambda-tools] installing $lambda_pins into $lambda_venv" >&2
  rm -rf "$lambda_venv"
  python3 -m venv "$lambda_venv"
  # shellcheck disable=SC2086
  "$lambda_venv/bin/pip" install --quiet --disable-pip-version-check $lambda_pins
  echo "$lambda_pins" > "$lambda_venv/.pins"
fi
PATH="$PWD/$lambda_venv/bin:$PATH"
export PATH
