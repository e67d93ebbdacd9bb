#!/usr/bin/env bash
# The cost of a TLS handshake, side by side in one run: new connections per second to
# GET /healthz over plain http and over https (wrk with `Connection: close`, so every request
# is a new connection and, over https, a full TLS 1.3 handshake with a P-256 certificate).
# Release build without extensions; the server (and its embedded PostgreSQL) on CPU 0, wrk on
# CPU 1; BENCH_ROUNDS (3) alternating rounds of BENCH_SECONDS (10) each, medians reported.
#   bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin solobase --no-default-features >&2
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/solobase"
rounds=${BENCH_ROUNDS:-3}
seconds=${BENCH_SECONDS:-10}
work=$(mktemp -d /tmp/solobase-tls.XXXXXX)
chmod 755 "$work"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost 2>/dev/null

# Serves with (https) or without TLS on a free port; prints nothing, sets $server and $port.
start() {
    local tls=$1
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    if [ "$tls" = https ]; then
        export SOLOBASE_TLS_CERT="$work/cert.pem" SOLOBASE_TLS_KEY="$work/key.pem"
    else
        unset SOLOBASE_TLS_CERT SOLOBASE_TLS_KEY
    fi
    SOLOBASE_LOG=warn SOLOBASE_WORKERS=1 taskset -c 0 "$bin" serve --bind "127.0.0.1:$port" \
        --data-dir "$work/data" >"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 300); do
        curl -sk -o /dev/null "$tls://localhost:$port/healthz" && return
        sleep 0.1
    done
    echo "the server did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
}

stop() {
    kill -TERM "$server"
    wait "$server" || true
    server=""
}

# New connections per second for $seconds s.
measure() {
    local scheme=$1
    taskset -c 1 wrk -t1 -c8 -d"${seconds}s" -H 'Connection: close' \
        "$scheme://localhost:$port/healthz" | awk '/Requests\/sec/ {print $2}'
}

declare -a plain tls
for _ in $(seq "$rounds"); do
    for scheme in http https; do
        start "$scheme"
        value=$(measure "$scheme")
        stop
        if [ "$scheme" = http ]; then plain+=("$value"); else tls+=("$value"); fi
    done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p=$(median "${plain[@]}")
t=$(median "${tls[@]}")
echo "| new connections per second (GET /healthz, Connection: close) | connections/s |"
echo "|---|---:|"
echo "| plain http | $p |"
echo "| https (TLS 1.3, ECDSA P-256, rustls) | $t |"
awk -v p="$p" -v t="$t" 'BEGIN { printf "\nhttps/http: **%.3f** (every round: http %s; https %s)\n", t / p, "'"${plain[*]}"'", "'"${tls[*]}"'" }'
