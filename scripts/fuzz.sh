#!/usr/bin/env bash
# Runs every fuzz target for a short while (default 10 s each): decoders of outside input must
# refuse, never panic. cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable
# toolchain (the only one this machine has) provide them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
log=$(mktemp)
for target in $(cargo fuzz list); do
  echo "== fuzzing $target for ${seconds}s"
  if ! cargo fuzz run "$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz target $target failed"
    exit 1
  fi
  grep -E "^Done [0-9]+ runs" "$log"
done
rm -f "$log"
