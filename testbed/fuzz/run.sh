#!/usr/bin/env bash
# Run petrel's wire fuzz targets with cargo-fuzz (needs a nightly toolchain).
# Usage: testbed/fuzz/run.sh [SECONDS] [TARGET]   (defaults: 60, decode_message)
# New corpus entries go to testbed/fuzz/corpus/TARGET (ignored by git);
# testbed/fuzz/seeds/TARGET holds hand-built starting inputs. Crashes land in
# testbed/fuzz/artifacts/TARGET: add each as a regression test next to the decoder (crates/bgp/src/wire, ...).
set -euo pipefail
secs="${1:-60}"
target="${2:-decode_message}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "run.sh: no nightly toolchain installed; skipping fuzzing" >&2
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: cargo-fuzz missing; install it with: cargo install cargo-fuzz" >&2
    exit 1
fi
mkdir -p "$here/corpus/$target"
cd "$root"
exec nice -n 10 cargo +nightly fuzz run "$target" --fuzz-dir testbed/fuzz \
    "$here/corpus/$target" "$here/seeds/$target" -- -max_total_time="$secs" -rss_limit_mb=2048
