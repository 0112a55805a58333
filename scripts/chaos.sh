#!/usr/bin/env bash
# `make chaos`: the chaos suite's full profile (README, "Chaos suite"): several vault processes, one
# moto, one fake provider, 1,000 fetches at 50 concurrent over 20 users, every fault; prints the
# report table and exits 1 if an invariant broke. Arguments go to the chaos binary (`--short`);
# CHAOS_FETCHES, CHAOS_CONCURRENCY, CHAOS_USERS, CHAOS_PROCESSES and CHAOS_FAULT_<KIND> change counts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
cargo build -p credvault-tests --bin vault-process --bin chaos
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
echo "chaos: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GB"
exec "$target_dir/debug/chaos" "$@"
