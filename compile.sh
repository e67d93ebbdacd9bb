#!/usr/bin/env bash
# Builds a release binary of Solobase with the chosen extensions compiled in.
#
#   ./compile.sh                   every discovered extension (official, community, custom)
#   ./compile.sh webhooks          only the named ones (names as in their extension.toml)
#   ./compile.sh --none            no extension: the host platform alone
#   ./compile.sh --list            list the discovered extensions and exit
#
# Extra cargo arguments go after `--`, e.g. `./compile.sh webhooks -- --locked`.
set -euo pipefail
cd "$(dirname "$0")"

declare -A tier_of=()
for manifest in extensions/{official,community,custom}/*/extension.toml; do
    [ -f "$manifest" ] || continue
    name=$(sed -n 's/^[[:space:]]*name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$manifest" | head -n1)
    if [ -z "$name" ]; then
        echo "compile.sh: $manifest has no name; fix the manifest (see extensions/README.md)" >&2
        exit 2
    fi
    tier=${manifest#extensions/}
    tier_of[$name]=${tier%%/*}
done
mapfile -t all < <(printf '%s\n' "${!tier_of[@]}" | sort)

wanted=()
cargo_args=()
none=false
while [ $# -gt 0 ]; do
    case "$1" in
        --list)
            for name in "${all[@]}"; do printf '%-24s %s\n' "$name" "${tier_of[$name]}"; done
            exit 0 ;;
        --none) none=true ;;
        --) shift; cargo_args=("$@"); break ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "compile.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *)
            if [ -z "${tier_of[$1]+x}" ]; then
                echo "compile.sh: unknown extension '$1'. Known: ${all[*]:-none}" >&2
                if [ -f "tests/extensions/$1/extension.toml" ]; then
                    echo "  ('$1' is a test-only extension; the test suite compiles it with --all-features)" >&2
                fi
                exit 2
            fi
            wanted+=("$1") ;;
    esac
    shift
done
if ! $none && [ ${#wanted[@]} -eq 0 ]; then
    wanted=("${all[@]}")
fi
features=$(IFS=,; echo "${wanted[*]:-}")

echo "Building Solobase with: ${features:-no extensions}"
cargo build --release --no-default-features ${features:+--features "$features"} "${cargo_args[@]}"
target=${CARGO_TARGET_DIR:-target}
echo
echo "Built $target/release/solobase"
if [ ${#wanted[@]} -gt 0 ]; then
    for name in "${wanted[@]}"; do echo "  + $name (${tier_of[$name]})"; done
else
    echo "  (host platform only)"
fi
