#!/usr/bin/env bash
# `make build`: the seven Lambda binaries for arm64 (release, stripped) with cargo-lambda, their sizes,
# and each function's time from process start to its first answered event (a release build for this
# machine, behind a minimal Lambda runtime API).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv-infra/bin:$PATH"
rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$' || rustup target add aarch64-unknown-linux-gnu

functions=(login-callback credential-fetch grant-management credential-maintenance credential-events credential-webhooks audit-ingest)
cargo lambda build --release --arm64 $(printf -- '--bin %s ' "${functions[@]}")
echo
echo "arm64 release binaries (stripped):"
for f in "${functions[@]}"; do
  awk -v name="$f" -v bytes="$(stat -c %s "target/lambda/$f/bootstrap")" 'BEGIN { printf "  %-18s %6.1f MB\n", name, bytes / 1048576 }'
done

cargo build --release $(printf -- '--bin %s ' "${functions[@]}")
echo
echo "start-up (x86_64 release build, this machine):"
CREDVAULT_TABLE=init CREDVAULT_DATA_KEY_ID=init CREDVAULT_SIGNING_KEY_ID=init CREDVAULT_ISSUER=https://vault.example.com \
AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=init AWS_SECRET_ACCESS_KEY=init \
  .venv/bin/python tests/scripts/lambda_init.py \
    target/release/login-callback functions/login-callback/events/get-wellknown-openidconfiguration.json \
    target/release/credential-fetch functions/credential-fetch/events/get-api-session-credentials.json \
    target/release/grant-management functions/grant-management/events/get-v1-roles.json
