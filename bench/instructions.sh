#!/usr/bin/env bash
# Counts CPU instructions per request (valgrind's callgrind), which unlike wall-clock figures
# do not move with the machine's load: the 5 synthetic extensions enabled versus disabled.
#   bench/instructions.sh            (BENCH_REQUESTS=2000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
cargo build --release -p solobase-bench >&2
bin="${CARGO_TARGET_DIR:-target}/release/solobase-bench"
n=${BENCH_REQUESTS:-2000}
work=$(mktemp -d /tmp/solobase-instr.XXXXXX)
chmod 755 "$work"
trap 'kill "$pg_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
# A throw-away PostgreSQL for the runs (as the postgres user when we are root).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
mkdir -p "$work/pg" && chown -R "$( [ "$(id -u)" = 0 ] && echo postgres || id -un)" "$work/pg"
as_pg "$bindir/initdb" -D "$work/pg/data" -U solobase -A trust --no-sync >/dev/null
as_pg "$bindir/postgres" -D "$work/pg/data" -c listen_addresses= -c unix_socket_directories="$work/pg" -c fsync=off >/dev/null 2>&1 &
pg_pid=$!
for _ in $(seq 100); do [ -S "$work/pg/.s.PGSQL.5432" ] && break; sleep 0.1; done
as_pg "$bindir/psql" -h "$work/pg" -U solobase -d postgres -qc 'CREATE DATABASE bench' >/dev/null
export DATABASE_URL="host=$work/pg user=solobase dbname=bench"

# Start-up is not counted: the counters are zeroed when the client begins (the metrics
# exporter's clock calibrates itself against the wall clock at start-up, so its instruction
# count varies from run to run).
count() { # extensions requests -> total instructions
    BENCH_MODE=instructions BENCH_EXTENSIONS=$1 BENCH_REQUESTS=$2 \
        valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
            --zero-before='*blocking_client*' "$bin" >/dev/null 2>&1
    awk '/^totals:/{print $2; exit}' "$work/cg.out"
}
# A first run creates the extensions' roles and schemas; the measured runs are restarts, so
# the runs with and without requests do the same start-up work.
count disabled 0 >/dev/null
declare -A per
for mode in disabled enabled; do
    base=$(count "$mode" 0)
    loaded=$(count "$mode" "$n")
    per[$mode]=$(( (loaded - base) / n ))
done
echo "| configuration | instructions per request (GET /healthz, $n requests) |"
echo "|---|---:|"
echo "| 5 synthetic extensions disabled | ${per[disabled]} |"
echo "| 5 synthetic extensions enabled (middleware + pre/post_request each) | ${per[enabled]} |"
awk -v a="${per[disabled]}" -v b="${per[enabled]}" \
    'BEGIN { printf "\nInstruction ratio disabled/enabled: **%.3f** (server and client code, whole process)\n", a / b }'
