#!/usr/bin/env bash
# Runs Solobase's benchmarks and prints a markdown report.
#   bench/run.sh                      defaults: 12 rounds (ABBA order) of 2 s per configuration
#   BENCH_ROUNDS=20 BENCH_SECS=5 bench/run.sh
#   bench/run.sh analytics            the analytics extension: sustained ingest, hook cost
# Uses DATABASE_URL when set, otherwise a throw-away embedded cluster.
set -euo pipefail
if [ "${1:-}" = analytics ]; then
    export BENCH_MODE=analytics
fi
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
    echo "installing wrk (load generator)…" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -p solobase-bench >&2
if [ "$(nproc)" -lt 2 ]; then
    echo "bench/run.sh needs 2 CPUs: one for the server, one for the load generator" >&2
    exit 1
fi
echo "# Solobase benchmark — $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
echo
# The server (and its PostgreSQL) on CPU 0; the bench runs wrk on CPU 1.
taskset -c 0 "${CARGO_TARGET_DIR:-target}/release/solobase-bench"
