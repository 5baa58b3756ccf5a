#!/usr/bin/env bash
# Runs every cargo fuzz target for a bounded time:
#   scripts/fuzz.sh [seconds per target, default 60] [--quick]
# New interesting inputs go to target/fuzz-corpus/<target> (kept between runs, not committed);
# the committed seeds in fuzz/seeds/<target> start each run. On a failure cargo fuzz prints the
# input's file (fuzz/artifacts/<target>/...): copy it to fuzz/regressions/<target>/ under a name
# that says what it found, fix the bug, and `cargo test -p pseudonym-fuzz` replays it forever.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
# --quick: an unoptimized build without a sanitizer, a third of the build time; what the test
# command runs as a smoke test. Without it: optimized, with AddressSanitizer (real fuzzing).
build=(--target-dir target/fuzz)
if [ "${2:-}" = "--quick" ]; then
  build=(--dev -s none --target-dir target/fuzz-quick)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# cargo fuzz passes -Z sanitizer flags; this lets the installed stable toolchain take them.
export RUSTC_BOOTSTRAP=1

for target in token request siv arrow preserving; do
  corpus="target/fuzz-corpus/$target"
  mkdir -p "$corpus"
  printf '\n== fuzz %s for %ss\n' "$target" "$seconds"
  log="target/fuzz-$target.log"
  if ! cargo fuzz run --features libfuzzer "${build[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 >"$log" 2>&1; then
    tail -n 80 "$log"
    echo "fuzz $target failed: see $log and the artifact it names" >&2
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "$log"
done
