#!/usr/bin/env bash
# Time to a first extension, as the developer guide (extensions/README.md) tells it: in a copy
# of this source tree, `solobase extensions generate hello` → its own tests, clippy and fmt →
# build the server with `--features hello` → `extensions validate` → serve on the embedded
# database → `extensions enable hello` → curl its endpoint and check the answer → stop; then
# share it: keygen → package → publish → uninstall → install from the registry → build again.
# Prints the time of each step. Fails (non-zero) at the first step that goes wrong.
#
# Run it after the test suite (tests/run.sh does both): it uses the `solobase` and
# `solobase-devtools` binaries that it built, and builds the copy in the same target directory (CARGO_TARGET_DIR, or
# this tree's target/), so that only the crates that changed are compiled again. It must not
# run inside `cargo test`: the outer cargo would hold the target directory's lock.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR" ;; esac
export CARGO_TERM_COLOR=never
name=hello

binary="$CARGO_TARGET_DIR/debug/solobase"
devtools="$CARGO_TARGET_DIR/debug/solobase-devtools"
for program in "$binary" "$devtools"; do
    if [ ! -x "$program" ]; then
        echo "walkthrough: $program is missing: run the tests (tests/run.sh) first" >&2
        exit 1
    fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/solobase-walkthrough.XXXXXX")"
chmod 755 "$work" # the embedded cluster runs as the postgres user when we are root
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

timings=()
step_start=0
step() {
    step_start=$(date +%s%N)
    step_name="$1"
    printf '\n==> walkthrough: %s\n' "$step_name"
}
done_step() {
    local ms=$((($(date +%s%N) - step_start) / 1000000))
    timings+=("$(awk -v n="$step_name" -v ms="$ms" 'BEGIN { printf "%-66s %8.1f s", n, ms / 1000 }')")
}
fail() {
    echo "walkthrough FAILED at \"$step_name\": $*" >&2
    if [ -f "$work/server.log" ]; then
        echo "--- server log (last 40 lines) ---" >&2
        tail -n 40 "$work/server.log" >&2
    fi
    exit 1
}
total_start=$(date +%s%N)

step "copy the source tree (without target/ and .git)"
tar -C "$root" --exclude=./target --exclude=./.git --exclude=./data -cf - . | tar -C "$work" -xf -
mkdir -p "$work/bin"
cp "$binary" "$work/bin/solobase-before"
# `solobase extensions generate|validate|package…` hand over to the tools next to it.
cp "$devtools" "$work/bin/solobase-devtools"
src="$work"
done_step

step "solobase extensions generate $name"
(cd "$src/extensions" && "$work/bin/solobase-before" extensions generate "$name") ||
    fail "generate exited with $?"
[ -f "$src/extensions/custom/$name/src/lib.rs" ] || fail "no extensions/custom/$name/src/lib.rs"
grep -q "^$name = \[\"dep:solobase-ext-$name\"\]" "$src/Cargo.toml" || fail "no feature in Cargo.toml"
done_step

step "cargo test -p solobase-ext-$name (the generated tests)"
(cd "$src" && cargo test --offline -q -p "solobase-ext-$name") || fail "its tests fail"
done_step

step "cargo clippy -D warnings and cargo fmt --check on it"
(cd "$src" && cargo clippy --offline -q -p "solobase-ext-$name" --all-targets -- -D warnings) ||
    fail "clippy complains"
(cd "$src" && cargo fmt --check -p "solobase-ext-$name") || fail "it is not formatted"
done_step

step "cargo build --features $name"
(cd "$src" && cargo build --offline -q --bin solobase --features "$name") || fail "the build fails"
cp "$CARGO_TARGET_DIR/debug/solobase" "$work/bin/solobase"
solobase="$work/bin/solobase"
done_step

step "solobase extensions validate extensions/custom/$name"
(cd "$src" && "$solobase" extensions validate "extensions/custom/$name") || fail "validate finds problems"
done_step

step "solobase serve (embedded database; the extension starts disabled)"
mkdir -p "$work/config/extensions"
cat >"$work/solobase.toml" <<EOF
[extensions]
config_dir = "$work/config/extensions"
grant_on_first_sight = false
EOF
echo 'greeting = "Howdy"' >"$work/config/extensions/$name.toml"
for key in $(env | sed -n 's/^\(SOLOBASE_[A-Z_]*\|DATABASE_URL\)=.*/\1/p'); do unset "$key"; done
export SOLOBASE_LOG_FORMAT=json
flags=(--config "$work/solobase.toml")
location=(--data-dir "$work/data")
(cd "$src" && exec "$solobase" "${flags[@]}" serve --bind 127.0.0.1:0 "${location[@]}") >"$work/server.log" 2>&1 &
server=$!
port=""
for _ in $(seq 1 600); do
    kill -0 "$server" 2>/dev/null || fail "the server exited"
    port="$(sed -n 's/.*"message":"listening".*"port":\([0-9]*\).*/\1/p' "$work/server.log" | head -n1)"
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done
[ -n "$port" ] || fail "the server did not say where it listens"
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || fail "the server is not ready"
status="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ext/$name/hello")"
[ "$status" = 404 ] || fail "a disabled extension's route answered $status, not 404"
done_step

step "solobase extensions enable $name --grant-all"
(cd "$src" && "$solobase" "${flags[@]}" extensions enable "$name" --grant-all "${location[@]}") ||
    fail "enable exited with $?"
done_step

step "curl /ext/$name/hello"
body=""
# Until the route answers with its hook's header: a request that began while the extension
# was being enabled may meet its route but not yet its hooks.
for _ in $(seq 1 100); do
    body="$(curl -s -D "$work/headers" "http://127.0.0.1:$port/ext/$name/hello")" || true
    grep -q '^HTTP/[0-9.]* 200' "$work/headers" && grep -qi "^x-$name: 1" "$work/headers" && break
    sleep 0.05
done
echo "$body"
grep -q '^HTTP/[0-9.]* 200' "$work/headers" || fail "the route did not answer 200: $(head -n1 "$work/headers")"
[ "$body" = '{"message":"Howdy, world!"}' ] || fail "unexpected answer: $body"
grep -qi "^x-$name: 1" "$work/headers" || fail "no x-$name header: the pre_response hook did not run"
done_step

step "stop the server"
kill -TERM "$server"
wait "$server" || fail "the server exited with $? on SIGTERM"
server=""
done_step

step "share it: keygen, package (signed), publish into a registry folder"
"$solobase" extensions keygen --output "$work/signing.key" >/dev/null || fail "keygen exited with $?"
(cd "$src" && "$solobase" extensions package "$name" --key "$work/signing.key" --output "$work/dist") ||
    fail "package exited with $?"
cat >"$work/share.toml" <<EOF
[extensions]
trusted_keys = ["$(sed -n 2p "$work/signing.key.pub")"]
registry = "$work/registry"
EOF
share=(--config "$work/share.toml")
"$solobase" "${share[@]}" extensions publish "$work/dist/$name-0.1.0.tar.gz" || fail "publish exited with $?"
done_step

step "uninstall $name, install it again from the registry"
(cd "$src" && "$solobase" "${share[@]}" extensions uninstall "$name") || fail "uninstall exited with $?"
[ ! -e "$src/extensions/custom/$name" ] || fail "uninstall left extensions/custom/$name"
(cd "$src" && "$solobase" "${share[@]}" extensions install "$name") || fail "install exited with $?"
[ -f "$src/extensions/community/$name/src/lib.rs" ] || fail "no extensions/community/$name/src/lib.rs"
done_step

step "cargo build --features $name (the installed copy), validate it"
(cd "$src" && cargo build --offline -q --bin solobase --features "$name") ||
    fail "the build with the installed extension fails"
(cd "$src" && "$CARGO_TARGET_DIR/debug/solobase" extensions validate "extensions/community/$name") ||
    fail "validate finds problems in the installed copy"
done_step

printf '\nTime to a first extension:\n'
printf '  %s\n' "${timings[@]}"
awk -v ns="$(($(date +%s%N) - total_start))" 'BEGIN { printf "  %-66s %8.1f s\n", "total", ns / 1e9 }'
