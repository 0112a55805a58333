#!/usr/bin/env bash
# `make mutants`: cargo-mutants (pinned, installed into .local/ on first use) over the
# protocol-critical code, each mutant tested by the crate's unit tests and the integration tests that
# exercise that code. Far too slow for `make test` (a build and a test run per mutant): on demand.
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

"$tools/bin/cargo-mutants" mutants \
  --package credvault \
  --file shared/src/vault.rs \
  --file 'shared/src/store/*.rs' \
  --file 'shared/src/crypto/*.rs' \
  --file 'shared/src/access/*.rs' \
  --file 'shared/src/identity/*.rs' \
  --file shared/src/oauth/provider.rs \
  --file shared/src/oauth/dialect.rs \
  --test-package credvault --test-package credvault-tests \
  "$@" \
  -- --lib --test lease_protocol --test refresh --test refresh_faults --test concurrency \
     --test storage --test attacks --test service_access --test look_alike_user_ids --test tokens \
     --test provider_dialects
