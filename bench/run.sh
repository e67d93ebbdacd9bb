#!/usr/bin/env bash
# Runs Solobase's benchmarks and prints a markdown report.
#   bench/run.sh                      defaults: 12 rounds (ABBA order) of 2 s per configuration
#   BENCH_ROUNDS=20 BENCH_SECS=5 bench/run.sh
#   bench/run.sh webhooks             webhook deliveries/s, event → first attempt latency and a
#                                     SIGKILL-under-load run (BENCH_WEBHOOK_EVENTS=5000,
#                                     BENCH_WEBHOOK_RATE=150 events/s, BENCH_SECS=10)
# Uses DATABASE_URL when set, otherwise a throw-away embedded cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = webhooks ]; then
    # The SIGKILL run starts the real binary, with the extension compiled in.
    cargo build --release -p solobase -p solobase-bench >&2
    echo "# Solobase webhooks benchmark — $(date -u +%Y-%m-%d), $(nproc) cores"
    echo
    BENCH_MODE=webhooks SOLOBASE_BIN="${CARGO_TARGET_DIR:-target}/release/solobase" \
        exec "${CARGO_TARGET_DIR:-target}/release/solobase-bench"
fi
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
