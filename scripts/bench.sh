#!/usr/bin/env bash
# `make bench`: the README's numbers, then the latency plot (docs/bench-latency.png) from the samples
# the fetch bench wrote to bench-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

stamp=.venv-bench/.requirements
if [ ! -x .venv-bench/bin/python ] || ! cmp -s tests/bench-requirements.txt "$stamp"; then
  python3 -m venv .venv-bench
  .venv-bench/bin/python -m pip install --quiet --disable-pip-version-check -r tests/bench-requirements.txt
  cp tests/bench-requirements.txt "$stamp"
fi

rm -rf bench-output
set +e
cargo bench -p credvault-tests
status=$?
set -e
.venv-bench/bin/python tests/scripts/plot_bench.py bench-output docs/bench-latency.png
exit "$status"
