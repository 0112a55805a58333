#!/usr/bin/env bash
# The README's test command (`make test`): format check, clippy with warnings as errors, then every
# test of the workspace, ending with one summary line of all test binaries together, and one line
# saying whether the browser test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
.venv-infra/bin/cfn-lint infra/template.yaml
.venv-infra/bin/checkov --quiet --compact --framework cloudformation -f infra/template.yaml

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "\nTests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
# The browser test needs the system Chromium; without it that test cannot run, and this says so.
if [ -x /usr/bin/chromium ]; then
  echo "Browser tests: ran in $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
else
  echo "Browser tests: NOT RUN: no Chromium at /usr/bin/chromium (scripts/bootstrap.sh installs it when run as root)"
fi
exit "$status"
