#!/usr/bin/env bash
# Solobase's soak test: the release server under steady mixed load for MINUTES (default 30),
# then a report of failures, latency over time, resident memory, events produced versus
# delivered and tracking events sent versus stored. Not part of the test suite.
#   bench/soak.sh            30 minutes (SOAK_MINUTES=… works too)
#   bench/soak.sh 3          a short run
# Writes the report to stdout and to target/soak/report.md, the per-interval figures to
# target/soak/intervals.csv (SOAK_OUT=DIR elsewhere). Exit status 1 when a goal is missed.
# Rates (per s): SOAK_RATE_HOST=150 SOAK_RATE_AUTH=1 (sign-up + login) SOAK_RATE_STORAGE=10 (×3)
#   SOAK_RATE_EXTENSION=40 SOAK_RATE_STATS=1.5 (analytics dashboard queries)
#   SOAK_RATE_TRACKING=100 SOAK_RATE_FAULTY=10; periods (s):
#   SOAK_RELOAD_SECS=15 SOAK_API_CONFIG_SECS=10 SOAK_TOGGLE_SECS=90 SOAK_TOGGLE_OFF_SECS=15;
#   SOAK_INTERVAL_SECS=60 SOAK_DRAIN_SECS=120 SOAK_RSS_SLOPE_MAX=20 (MiB/h).
# Uses DATABASE_URL when set, otherwise a throw-away embedded cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_MINUTES="${1:-${SOAK_MINUTES:-30}}"
target="${CARGO_TARGET_DIR:-target}"
# The server with the shipped extensions and the test-only probe (the faulty extension).
cargo build --release -p solobase -p solobase-bench --features solobase/probe --bin solobase --bin soak >&2
out="${SOAK_OUT:-$target/soak}"
mkdir -p "$out"
{
    echo "# Solobase soak test — $(date -u +%Y-%m-%d)"
    echo
    echo "Machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(free -g | awk '/Mem:/{print $2}') GiB of memory, $(uname -sr)."
    echo "Command: \`bench/soak.sh $SOAK_MINUTES\`, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), started $(date -u +%H:%M) UTC."
    echo
} > "$out/header.md"
cat "$out/header.md"
status=0
SOLOBASE_BIN="$target/release/solobase" SOAK_OUT="$out" "$target/release/soak" || status=$?
# report.md: the header, then what the driver wrote.
if [ -f "$out/report.md" ]; then
    cat "$out/header.md" "$out/report.md" > "$out/report.tmp" && mv "$out/report.tmp" "$out/report.md"
fi
rm -f "$out/header.md"
exit "$status"
