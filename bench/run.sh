#!/usr/bin/env bash
# Solobase's performance report: builds what it needs (release), runs every measurement side
# by side in one run and prints markdown — raw figures and ratios, each goal met or missed.
#   bench/run.sh > BENCHMARKS.md       defaults: 12 rounds (ABBA order) of 2 s per configuration
#   BENCH_ROUNDS=20 BENCH_SECS=5 bench/run.sh
#   BENCH_ONLY=host,route bench/run.sh    only these sections: host, route, startup, memory,
#                                         reload, webhooks, analytics (micro-benchmarks and
#                                         instruction counts are skipped then)
#   webhooks: BENCH_WEBHOOK_EVENTS=5000, BENCH_WEBHOOK_RATE=150 events/s, BENCH_WEBHOOK_SECS=10
# Uses DATABASE_URL when set, otherwise a throw-away embedded cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
    echo "installing wrk (load generator)…" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "bench/run.sh needs 2 CPUs: one for the server, one for the load generator" >&2
    exit 1
fi
target="${CARGO_TARGET_DIR:-target}"
# The webhooks section's SIGKILL run starts the real binary.
cargo build --release -p solobase -p solobase-bench >&2
echo "# Solobase benchmark — $(date -u +%Y-%m-%d)"
echo
echo "Machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(free -g | awk '/Mem:/{print $2}') GiB of memory, $(uname -sr)."
echo "Command: \`BENCH_ROUNDS=${BENCH_ROUNDS:-12} BENCH_SECS=${BENCH_SECS:-2} bench/run.sh\`, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
echo "Server and its PostgreSQL on CPU 0, wrk on CPU 1. Ratios are medians of per-round ratios of neighbouring runs."
echo
# The server (and its PostgreSQL) on CPU 0; the bench runs wrk on CPU 1.
SOLOBASE_BIN="$target/release/solobase" taskset -c 0 "$target/release/solobase-bench"
if [ -z "${BENCH_ONLY:-}" ]; then
    cargo bench -p solobase-bench --bench micro >&2
    BENCH_MODE=micro-report BENCH_CRITERION_DIR="$target/criterion" "$target/release/solobase-bench"
    echo "## Instructions per request (callgrind: independent of the machine's load)"
    echo
    bench/instructions.sh
    echo
    echo "Where these instructions go, and what each change to the request path saved: [bench/PROFILE.md](bench/PROFILE.md)."
fi
