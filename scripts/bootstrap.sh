#!/usr/bin/env bash
# Installs what a bare machine lacks for credvault's local stack and checks: the Python venv with
# moto, and the Rust components the checks use. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (rustup toolchain)" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done

# Chromium for the browser test (Playwright drives the system browser). Installed with the OS package
# manager where this runs as root, as CI does; elsewhere the test summary says it is missing.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium (apt-get) for the browser test"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
    || echo "chromium could not be installed: the browser test will say so" >&2
fi

stamp=.venv/.requirements
if [ ! -x .venv/bin/python ] || ! cmp -s tests/requirements.txt "$stamp"; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$stamp"
fi

# Template checks (cfn-lint, checkov) in a venv of their own.
infra_stamp=.venv-infra/.requirements
if [ ! -x .venv-infra/bin/python ] || ! cmp -s infra/requirements.txt "$infra_stamp"; then
  python3 -m venv .venv-infra
  .venv-infra/bin/python -m pip install --quiet --disable-pip-version-check -r infra/requirements.txt
  cp infra/requirements.txt "$infra_stamp"
fi

# The Authress JavaScript SDKs the interoperability tests drive, and oidc-provider (pinned in
# tests/js/package-lock.json).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are required for the Authress SDK test" >&2
  exit 1
fi
js_stamp=tests/js/node_modules/.package-lock.json
if [ ! -f "$js_stamp" ] || [ tests/js/package-lock.json -nt "$js_stamp" ]; then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
