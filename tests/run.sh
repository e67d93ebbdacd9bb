#!/usr/bin/env bash
# The whole test suite: every crate's tests with every feature (so that the test-only `probe`
# extension is compiled in), then the time-to-first-extension walkthrough, which builds a
# generated extension in a copy of the tree and must run after cargo test, not inside it.
# Arguments are passed to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The developer tools are a program of their own, which `solobase extensions package|install…`
# hands over to: built next to the server binary the tests run.
cargo build -p solobase-devtools
cargo test --workspace --all-features "$@"
tests/walkthrough.sh
