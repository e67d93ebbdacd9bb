#!/usr/bin/env bash
# Builds every fuzz target once, then runs each for SECONDS (default 60) on a copy of its seed
# corpus (fuzz/corpus/<target>, never modified), two targets at a time. Exits non-zero when a
# target crashes, hangs (-timeout) or runs out of memory (-rss_limit_mb); the input that did it
# is saved under fuzz/artifacts/<target>/ and its path printed.
#
#   fuzz/run.sh [SECONDS] [TARGET…]
#
# Environment: FUZZ_TARGET_DIR (cargo's target directory, default fuzz/target),
# FUZZ_JOBS (targets at once, default 2), FUZZ_ARTIFACTS (default fuzz/artifacts).
# With the nightly toolchain, targets are built with AddressSanitizer (cargo-fuzz's default);
# without it, on stable with --sanitizer none (libFuzzer's coverage still works, memory errors
# in unsafe code are not detected).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
target_dir=${FUZZ_TARGET_DIR:-fuzz/target}
jobs=${FUZZ_JOBS:-2}
artifacts=${FUZZ_ARTIFACTS:-fuzz/artifacts}
case $seconds in '' | *[!0-9]*)
    echo "usage: fuzz/run.sh [SECONDS] [TARGET…] (SECONDS is a whole number, not '$seconds')" >&2
    exit 2
    ;;
esac
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install --locked cargo-fuzz" >&2
    exit 2
fi

if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
    build_flags=()
    echo "==> building the fuzz targets (nightly, AddressSanitizer)"
else
    toolchain=()
    build_flags=(--sanitizer none)
    echo "==> building the fuzz targets (no nightly toolchain: stable, --sanitizer none)"
fi
# cargo-fuzz's default triple; the binaries land in <target dir>/<triple>/release/.
triple=$(rustc -vV | sed -n 's/^host: //p')
started=$SECONDS
targets=("$@")
if ((${#targets[@]})); then
    for target in "${targets[@]}"; do
        cargo "${toolchain[@]}" fuzz build "${build_flags[@]}" --target-dir "$target_dir" "$target"
    done
else
    cargo "${toolchain[@]}" fuzz build "${build_flags[@]}" --target-dir "$target_dir"
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi
echo "    built in $((SECONDS - started)) s"
work=$(mktemp -d "${TMPDIR:-/tmp}/solobase-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

run_one() {
    local target=$1 corpus="$work/corpus/$1" log="$work/$1.log"
    mkdir -p "$corpus" "$artifacts/$target"
    cp -r "fuzz/corpus/$target/." "$corpus/" 2>/dev/null || true
    local status=0
    "$target_dir/$triple/release/$target" "$corpus" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$artifacts/$target/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    echo "$status" >"$work/$target.status"
}

echo "==> running ${#targets[@]} targets for $seconds s each, $jobs at a time"
started=$SECONDS
for target in "${targets[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
    run_one "$target" &
done
wait

failed=0
for target in "${targets[@]}"; do
    status=$(cat "$work/$target.status" 2>/dev/null || echo 1)
    log="$work/$target.log"
    # The last status line: runs, coverage, features, corpus, execs/s.
    summary=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    if [ "$status" = 0 ]; then
        printf '%-18s ok      %s\n' "$target" "$summary"
    else
        failed=1
        printf '%-18s FAILED  (exit %s) %s\n' "$target" "$status" "$summary"
        grep -E 'ERROR: libFuzzer|panicked at|SUMMARY|==ERROR' "$log" | head -n 5 | sed 's/^/    /' || true
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        [ -n "$artifact" ] && echo "    input: $artifact (replay: cargo +nightly fuzz run $target $artifact)"
        mkdir -p "$artifacts"
        cp "$log" "$artifacts/$target.log"
        echo "    log: $artifacts/$target.log"
    fi
done
echo "==> fuzzed for $((SECONDS - started)) s"
exit "$failed"
