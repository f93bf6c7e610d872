.PHONY: demo test check stack-up stack-down

# Provision the sample project end to end on the local stack.
demo:
	scripts/demo.sh

# Every test (unit + integration) against a fresh local stack.
test:
	scripts/test.sh

# Formatting and lints, as CI runs them.
check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

stack-up:
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down
