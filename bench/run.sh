#!/usr/bin/env bash
# Runs Solobase's benchmarks and prints a markdown report.
#   bench/run.sh                      defaults: 3 alternating rounds of 5 s per configuration
#   BENCH_ROUNDS=5 BENCH_SECS=10 bench/run.sh
# Uses DATABASE_URL when set, otherwise a throw-away embedded cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
    echo "installing wrk (load generator)…" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -p solobase-bench >&2
echo "# Solobase benchmark — $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
echo
"${CARGO_TARGET_DIR:-target}/release/solobase-bench"
