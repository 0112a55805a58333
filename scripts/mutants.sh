#!/usr/bin/env bash
# `make mutants`: cargo-mutants (pinned, installed into .local/ on first use) over the
# protocol-critical code, each mutant tested by the crate's unit tests and the integration tests that
# exercise that code. Far too slow for `make test` (a build and a test run per mutant; about 900
# mutants, hours on two cores): on demand. Arguments go to cargo-mutants, so one area can be run at a
# time, e.g. `make mutants ARGS="--file shared/src/vault.rs"` (named files replace the default list) or `bash scripts/mutants.sh --shard 0/4`.
# Survivors are listed in mutants.out/missed.txt; each needs a test that kills it, or a one-line
# justification in tests/mutants-justified.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

version=27.1.0
tools=.local/cargo-tools
if ! "$tools/bin/cargo-mutants" --version 2>/dev/null | grep -q "$version"; then
  cargo install --locked --quiet --root "$tools" "cargo-mutants@$version"
fi
# nextest runs the tests of both packages in one go; it comes with the machine's toolchain, and a
# machine without it gets the pinned one.
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked --quiet --root "$tools" cargo-nextest@0.9.143
  export PATH="$PWD/$tools/bin:$PATH"
fi

# One moto server for every test process of the run (nextest runs each test in its own process; each
# test makes its own table and keys, so they share it as the suite's processes do).
coproc MOTO { exec .venv/bin/python tests/scripts/moto_launcher.py 0; }
read -r moto_url <&"${MOTO[0]}"
export CREDVAULT_TEST_MOTO_URL="$moto_url"
trap 'exec {MOTO[1]}>&-; wait "$MOTO_PID" 2>/dev/null || true' EXIT

# The shared crate's unit tests (`lib`), and the integration tests of the refresh protocol, storage,
# access control, tokens and provider answers. Only these test targets are built for each mutant
# (`--lib` and one `--test` each, over the workspace: cargo takes a `--test` that one of its packages
# has), which is most of a mutant's cost: `MUTANTS_TESTS="lib attacks tokens"` names them for one
# file's run, `MUTANTS_TESTS=lib` keeps only the unit tests (for pure code), and leaving `lib` out
# saves compiling the crate a second time, as a unit-test binary, for code only the integration
# tests reach (DynamoDB glue).
# cargo-mutants' own baseline would run these in the mutated package alone (where the integration
# tests are not), so it is skipped: `make test` is the baseline, and the timeouts are fixed instead.
tests=(lib lease_protocol refresh refresh_faults concurrency storage attacks service_access
       look_alike_user_ids tokens provider_dialects provider_limits disconnect)
if [ -n "${MUTANTS_TESTS:-}" ]; then
  read -r -a tests <<< "$MUTANTS_TESTS"
fi
# As `--cargo-arg`s, so that the build of each mutant is narrowed too, not only the test run (what
# follows `--` reaches the test run alone, and the build would link every test binary of the suite).
targets=()
# The integration tests live in credvault-tests; with the unit tests alone, that package is not
# built at all (its harness has no unit tests: it would be compiled, and linked, for nothing).
packages=(--test-package credvault)
for t in "${tests[@]}"; do
  if [ "$t" = lib ]; then
    targets+=(--cargo-arg=--lib)
  else
    targets+=("--cargo-arg=--test=$t")
    packages=(--test-package credvault --test-package credvault-tests)
  fi
done

# The protocol-critical files, unless the arguments name files themselves.
files=(--file shared/src/vault.rs --file 'shared/src/store/*.rs' --file 'shared/src/crypto/*.rs'
       --file 'shared/src/access/*.rs' --file 'shared/src/identity/*.rs'
       --file shared/src/oauth/provider.rs --file shared/src/oauth/dialect.rs)
for arg in "$@"; do
  if [ "$arg" = --file ] || [ "${arg#--file=}" != "$arg" ]; then files=(); fi
done

# `BoxFuture` is an alias of `Pin<Box<dyn Future>>`: cargo-mutants' guesses at a value of it
# (`BoxFuture::new()`, `::from(..)`) never compile, and each costs a failed build, so none is made.
"$tools/bin/cargo-mutants" mutants \
  --test-tool nextest \
  --exclude-re 'BoxFuture::' \
  --package credvault \
  "${files[@]}" \
  "${packages[@]}" \
  --baseline=skip --timeout 900 --build-timeout 900 \
  "${targets[@]}" \
  "$@"
