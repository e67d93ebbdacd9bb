#!/usr/bin/env bash
# Counts CPU instructions per request (valgrind's callgrind), which unlike wall-clock figures
# do not move with the machine's load: bare actix-web, the host's route, an extension's route,
# 5 synthetic extensions disabled and enabled, analytics counting page views.
#   bench/instructions.sh            (BENCH_REQUESTS=2000 by default)
#   BENCH_SCENARIOS="route bare" bench/instructions.sh       some of them
#   BENCH_PROFILE=/tmp/prof bench/instructions.sh            keep callgrind's files (per
#       scenario, the run with requests) for callgrind_annotate
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

# Only the client's window is counted: the counters are zeroed when the client begins and
# dumped when it returns (start-up and shutdown vary from run to run: the metrics exporter's
# clock calibrates itself against the wall clock, connections are made and closed). Client and
# server share the process: every figure holds the same client's work, so differences between
# scenarios are the server's.
count() { # scenario requests -> total instructions
    # SCENARIO-logged: with the server's JSON logs at level info, as `solobase serve` runs.
    local log=
    [[ $1 == *-logged ]] && log=json
    BENCH_LOG=$log BENCH_MODE=instructions BENCH_SCENARIO=${1%-logged} BENCH_REQUESTS=$2 \
        valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
            --zero-before='*blocking_client*' --dump-before='*window_end*' "$bin" >/dev/null 2>&1
    if [ -n "${BENCH_PROFILE:-}" ] && [ "$2" != 0 ]; then
        mkdir -p "$BENCH_PROFILE" && cp "$work/cg.out.1" "$BENCH_PROFILE/$1.out"
    fi
    awk '/^totals:/{print $2; exit}' "$work/cg.out.1"
    rm -f "$work"/cg.out*
}
scenarios=${BENCH_SCENARIOS:-bare none none-logged missing route disabled enabled analytics-off analytics}
# A first run creates the extensions' roles and schemas; the measured runs are restarts, so
# the runs with and without requests do the same start-up work.
count disabled 0 >/dev/null
count analytics-off 0 >/dev/null
declare -A per
for s in $scenarios; do
    base=$(count "$s" 0)
    loaded=$(count "$s" "$n")
    per[$s]=$(( (loaded - base) / n ))
done
declare -A label=(
    [bare]="bare actix-web, GET /ping → \"pong\""
    [none]="host route GET /healthz, no extensions compiled in"
    [none-logged]="the same, with JSON logs at level info (as solobase serve runs)"
    [missing]="GET /missing/page, a path no route has (404), no extensions compiled in"
    [route]="extension route GET /ext/route-1/ping, no hooks"
    [disabled]="GET /healthz, 5 synthetic extensions disabled"
    [enabled]="GET /healthz, 5 synthetic extensions enabled (middleware + pre/post_request each)"
    [analytics-off]="GET /healthz from a browser, analytics disabled"
    [analytics]="GET /healthz from a browser, analytics enabled (a counted page view)"
)
echo "| scenario ($n keep-alive requests, client in the same process) | instructions per request |"
echo "|---|---:|"
for s in $scenarios; do echo "| ${label[$s]} | ${per[$s]} |"; done
echo
diff_row() { # name a b goal
    if [ -n "${per[$2]:-}" ] && [ -n "${per[$3]:-}" ]; then
        echo "| $1 | $(( per[$2] - per[$3] )) | $(awk -v a="${per[$3]}" -v b="${per[$2]}" 'BEGIN{printf "%.3f", a/b}') | $4 |"
    fi
}
echo "| difference | added instructions per request | ratio | goal |"
echo "|---|---:|---:|---|"
diff_row "extension route − bare actix-web" route bare "ratio ≥ 0.85"
diff_row "host route − bare actix-web" none bare ""
diff_row "JSON logs at info − no logging (host route)" none-logged none ""
diff_row "5 synthetic extensions enabled − disabled" enabled disabled "≤ 1,500 added"
diff_row "analytics enabled − disabled" analytics analytics-off ""
