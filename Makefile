# The two commands of the README, and their helpers. Every target installs what it needs first.
.PHONY: dev test bench build bootstrap chaos mutants

bootstrap:
	@bash scripts/bootstrap.sh

# Command 1: the local vault (moto, demo provider, gateway, demo page) on 127.0.0.1.
dev: bootstrap
	cargo run -p credvault-tests --bin local-vault

# Command 2: every check and every test.
test:
	@bash scripts/test.sh

# The figures of the README's "Numbers" section.
bench:
	@bash scripts/bench.sh

# The Lambda binaries (arm64, release) with their sizes and start-up times.
build:
	@bash scripts/build.sh

# The chaos suite's full profile and its report table (README, "Chaos suite").
chaos:
	@bash scripts/chaos.sh

# Mutation testing of the protocol-critical code (slow: on demand, never part of `make test`).
mutants:
	@bash scripts/mutants.sh $(ARGS)
