.PHONY: demo demo-lifecycle test check build invoke template bench stack-up stack-down

# Provision the sample project end to end on the local stack.
demo:
	scripts/demo.sh

# The sample project through suspend, resume, delete, restore, delete and purge.
demo-lifecycle:
	scripts/demo-lifecycle.sh

# Every test against a fresh local stack: Rust unit + integration tests, every
# function invoked with its sample event (cargo lambda watch), template checks.
test:
	scripts/test.sh

# Formatting and lints, as CI runs them.
check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# Release build of every function (cargo lambda build --release), with sizes.
build:
	scripts/build-release.sh

# Invoke every function with its sample event under cargo lambda watch.
invoke:
	scripts/invoke-local.sh

# sam validate --lint, sam validate, cfn-lint with the serverless rules.
template:
	scripts/check-template.sh

# Benchmarks on a durable stack: table printed, bench/results.md and docs/benchmarks.md updated.
bench:
	scripts/bench.sh

stack-up:
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down
