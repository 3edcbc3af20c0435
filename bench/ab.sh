#!/usr/bin/env bash
# Two hotspan binaries in alternating runs, on compare.sh's load and configs (hotspan on core 1,
# the load generator and sink on core 0): forwarding, the join with profiles at 10%, or that
# join followed by tail_sampling (`MODE=join-sampling`, every trace kept). On a
# shared machine whose speed drifts by 10% from one run to the next, alternating is what shows
# a change of a few percent. Prints each run, then each binary's medians.
#
#   bench/ab.sh OLD_HOTSPAN NEW_HOTSPAN             # 4 rounds of 12 s, forwarding
#   MODE=join ROUNDS=6 DURATION=20 bench/ab.sh OLD NEW
#
# To keep a binary of an older commit: build it, then copy target/release/hotspan aside.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bench/ab.sh OLD_HOTSPAN NEW_HOTSPAN"; exit 2; }
old=$(realpath "$1") new=$(realpath "$2")
cd "$(dirname "$0")/.."
DURATION="${DURATION:-12}"
CONCURRENCY="${CONCURRENCY:-8}"
BATCH="${BATCH:-512}"
ROUNDS="${ROUNDS:-4}"
PAYLOAD="${PAYLOAD:-realistic}"
MODE="${MODE:-forward}"
case "$MODE" in forward | join | join-sampling) ;; *) echo "MODE is forward, join or join-sampling"; exit 2 ;; esac

[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p hotspan-tests --bin loadgen
LOADGEN=target/release/loadgen
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh

for round in $(seq 1 "$ROUNDS"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    in=$(free_port) sink=$(free_port)
    if [ "$MODE" = join ]; then
      metrics=$(free_port)
      cfg=$(hotspan_join "$in" "$sink" "$metrics")
      out=$(PROFILES=0.1 HOLD=2 METRICS=$metrics measure "$side-$round" "$sink" "$in" "$bin" --config "$cfg")
    elif [ "$MODE" = join-sampling ]; then
      # Spans wait the join's 2 s, then tail_sampling's 1 s.
      metrics=$(free_port)
      cfg=$(hotspan_join_sampling "$in" "$sink" "$metrics")
      out=$(PROFILES=0.1 HOLD=3 METRICS=$metrics measure "$side-$round" "$sink" "$in" "$bin" --config "$cfg")
    else
      cfg=$(hotspan_forward "$in" "$sink")
      out=$(measure "$side-$round" "$sink" "$in" "$bin" --config "$cfg")
    fi
    read -r rate per_million peak accepted received _ <<< "$out"
    [ "$received" -ge "$accepted" ] || echo "round $round $side: the sink got $received of $accepted spans"
    echo "round $round $side: $rate spans/s, $per_million CPU s per million spans, peak $peak MiB"
    echo "$side $rate $per_million" >> "$work/runs"
  done
done
python3 - "$work/runs" <<'PY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1])]
med = {side: [statistics.median(float(r[i]) for r in runs if r[0] == side) for i in (1, 2)] for side in ("old", "new")}
for side, (rate, cpu) in med.items():
    print(f"{side}: median {rate:.0f} spans/s, {cpu:.2f} CPU s per million spans")
print(f"new / old: spans/s {med['new'][0] / med['old'][0]:.3f}, CPU per span {med['new'][1] / med['old'][1]:.3f}")
PY
