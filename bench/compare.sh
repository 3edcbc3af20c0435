#!/usr/bin/env bash
# Side by side, in one run: Rotel, hotspan and the OpenTelemetry Collector (tests/peers/otelcol,
# built by scripts/peers.sh) forwarding OTLP/gRPC -> batch -> OTLP/gRPC (gzip, level 6 on all
# three: Rotel's and tonic's fixed level, otelcol's default) to a counting sink, each collector
# pinned to core 1 with the load generator and the sink on core 0; gzip level 6 alone on the
# same requests and core, the floor under every collector's CPU a span; then hotspan with the
# spanprofile join and profiles at 10% of span volume; then, once per run: latency with one
# request in flight (the sink's own too), the join's resident memory per held span (all held,
# and in a steady state where released spans' memory is reused), that of a span waiting in
# tail_sampling (hotspan's and otelcol's), a sidecar at 5,000 spans/s with
# `wait: 20s`, and an idle sidecar's memory. Prints one table and each round's ratios, and
# checks that the sink got every span.
#
#   bench/compare.sh                 # 3 rounds of 20 s of load per measurement
#   ROUNDS=5 DURATION=60 CONCURRENCY=8 bench/compare.sh
#   PAYLOAD=uniform bench/compare.sh # the earlier load: every value alike (compresses 3x better)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-20}"
CONCURRENCY="${CONCURRENCY:-8}"
BATCH="${BATCH:-512}"
ROUNDS="${ROUNDS:-3}"
ROTEL_VERSION="${ROTEL_VERSION:-0.0.1a15}"
PAYLOAD="${PAYLOAD:-realistic}"
LATENCY_DURATION="${LATENCY_DURATION:-10}"
LATENCY_RATE="${LATENCY_RATE:-10000}"
SIDECAR_RATE="${SIDECAR_RATE:-5000}"

[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p hotspan --bin hotspan -p hotspan-tests --bin loadgen
HOTSPAN=target/release/hotspan
LOADGEN=target/release/loadgen
PATH="$PATH:/usr/local/go/bin"
OTELCOL=$(scripts/peers.sh | awk '$1 == "otelcol" {print $3}')
[ -x "$OTELCOL" ] || { echo "otelcol not built: scripts/peers.sh (needs Go 1.26 at /usr/local/go/bin)"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

python3 -m venv "$work/venv" >/dev/null
"$work/venv/bin/pip" install -q "rotel==$ROTEL_VERSION" || "$work/venv/bin/pip" install -q rotel
ROTEL=$(find "$work/venv" -name rotel-agent -type f | head -n 1)
[ -x "$ROTEL" ] || { echo "rotel-agent not found in the rotel package"; exit 1; }

# shellcheck source=bench/lib.sh
. bench/lib.sh

rotel_cmd() { # IN_PORT SINK_PORT
  local h; h=$(free_port)
  echo "$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$1" --otlp-http-endpoint "127.0.0.1:$h" --exporter otlp \
    --otlp-exporter-endpoint "http://127.0.0.1:$2" --otlp-exporter-compression gzip \
    --pid-file "$work/rotel.pid" --log-file "$work/rotel-agent.log"
}

echo "measuring Rotel $("$ROTEL" --version 2>/dev/null | head -n 1), otelcol $("$OTELCOL" --version 2>/dev/null | awk '{print $NF}') and hotspan $(git rev-parse --short HEAD), $ROUNDS rounds of ${DURATION}s each, concurrency $CONCURRENCY, $BATCH spans a request"
echo "payload $PAYLOAD: $("$LOADGEN" describe --payload "$PAYLOAD" --batch "$BATCH")"
# Rounds alternate the four so drift on a shared machine hits each alike; the table shows
# medians, and every round's ratios are printed too.
: > "$work/results"
: > "$work/joins"
: > "$work/gzip6"
for round in $(seq 1 "$ROUNDS"); do
  s=$(free_port); i=$(free_port)
  # shellcheck disable=SC2046
  echo "rotel $(measure rotel "$s" "$i" $(rotel_cmd "$i" "$s"))" >> "$work/results"
  s=$(free_port); i=$(free_port)
  echo "hotspan $(measure hotspan "$s" "$i" "$HOTSPAN" --config "$(hotspan_forward "$i" "$s")")" >> "$work/results"
  # gzip level 6 alone on the collectors' core, between the runs it bounds: what any
  # collector compressing at that level must spend a span, whatever else it does.
  echo "gzip6 $(json "$(taskset -c 1 "$LOADGEN" describe --payload "$PAYLOAD" --batch "$BATCH")" "[\"gzip6_us_per_span\"]")" >> "$work/gzip6"
  # otelcol runs the very same config file (it is in otelcol's shape).
  s=$(free_port); i=$(free_port)
  echo "otelcol $(measure otelcol "$s" "$i" "$OTELCOL" --config "$(hotspan_forward "$i" "$s")")" >> "$work/results"
  s=$(free_port); i=$(free_port); m=$(free_port)
  echo "join $(PROFILES=0.1 METRICS=$m HOLD=2 measure join "$s" "$i" "$HOTSPAN" --config "$(hotspan_join "$i" "$s" "$m")")" >> "$work/results"
  read -r joined late unjoined early < "$work/join.join"
  echo "$round $joined $late $unjoined $early $(awk '{print $5}' < <(tail -n 1 "$work/results"))" >> "$work/joins"
  # The same join keeping held spans as received (`held_compression: none`).
  s=$(free_port); i=$(free_port); m=$(free_port)
  echo "join_plain $(PROFILES=0.1 METRICS=$m HOLD=2 measure join_plain "$s" "$i" "$HOTSPAN" --config "$(hotspan_join "$i" "$s" "$m" none)")" >> "$work/results"
  echo "round $round done"
done
median() { python3 - "$work/results" "$1" "$2" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.split()[0] == sys.argv[2]]
print(f"{statistics.median(float(r[int(sys.argv[3])]) for r in rows):.10g}" if rows else "")
PY
}
gzip6_us=$(python3 -c 'import statistics,sys; print(f"{statistics.median(float(l.split()[1]) for l in open(sys.argv[1])):.3f}")' "$work/gzip6")
for n in rotel hotspan otelcol join join_plain; do
  read -r "${n}_rate" "${n}_cpu" "${n}_rss" < <(echo "$(median $n 1) $(median $n 2) $(median $n 3)")
done
per_round=$(python3 - "$work/results" "$work/gzip6" <<'PY'
import sys
rows = {}
for l in open(sys.argv[1]).readlines() + open(sys.argv[2]).readlines():
    f = l.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
out = []
for r, h, o, j, p, g in zip(rows["rotel"], rows["hotspan"], rows["otelcol"], rows["join"], rows["join_plain"], rows["gzip6"]):
    out.append(f"spans/s {h[0]/r[0]:.2f}x Rotel, {h[0]/o[0]:.2f}x otelcol; CPU per span {h[1]/r[1]:.2f}x Rotel's, "
               f"{h[1]/o[1]:.2f}x otelcol's; join {j[0]/h[0]:.2f} of forwarding ({p[0]/h[0]:.2f} held uncompressed); "
               f"gzip 6 alone {g[0]:.2f} µs a span, {g[0]/h[1]:.2f} of hotspan's CPU a span")
print("\n".join(f"round {i + 1}: {o}" for i, o in enumerate(out)))
PY
)

# Latency with one request in flight: one 512-span request at a time, paced at LATENCY_RATE
# spans/s (well below saturation, so it measures the path, not a queue); the sink alone,
# then each collector in front of it; what a collector adds is its p99 minus the sink's.
s=$(free_port)
taskset -c 0 "$LOADGEN" sink --listen "127.0.0.1:$s" --duration "$((LATENCY_DURATION + 30))s" > "$work/sink-alone.sink" &
sink=$!; pids+=("$sink"); wait_port "$s"
taskset -c 0 "$LOADGEN" send --endpoint "127.0.0.1:$s" --concurrency 1 --batch "$BATCH" --duration "${LATENCY_DURATION}s" \
  --rate "$LATENCY_RATE" --payload "$PAYLOAD" > "$work/sink-alone.load"
kill "$sink" 2>/dev/null || true; wait "$sink" 2>/dev/null || true
sink_p99=$(json "$(cat "$work/sink-alone.load")" '["latency_ms"]["p99"]')
latency() { # NAME COMMAND... (the collector's ports come from IN and SINK)
  local name=$1; shift
  CONCURRENCY=1 DURATION=$LATENCY_DURATION RATE=$LATENCY_RATE measure "lat-$name" "$SINK" "$IN" "$@" | awk '{print $6}'
}
SINK=$(free_port); IN=$(free_port)
# shellcheck disable=SC2046
rotel_p99=$(latency rotel $(rotel_cmd "$IN" "$SINK"))
SINK=$(free_port); IN=$(free_port)
hotspan_p99=$(latency hotspan "$HOTSPAN" --config "$(hotspan_forward "$IN" "$SINK")")
SINK=$(free_port); IN=$(free_port)
otelcol_p99=$(latency otelcol "$OTELCOL" --config "$(hotspan_forward "$IN" "$SINK")")

# Starts COMMAND (its receiver on IN) against a sink on SINK, sends HELD_RATE spans/s for
# HELD_DURATION s, then asks COUNT (a function, given NAME) how many spans the collector holds
# while it still holds them: 2 s after the load, or READ_AFTER s into it. Prints
# "resident_bytes_per_span spans" (spans 0 if COUNT refused).
resident_growth() { # NAME SINK IN COUNT COMMAND...
  local name=$1 s=$2 i=$3 count=$4; shift 4
  local sink pid rss0 rss1 n load
  taskset -c 0 "$LOADGEN" sink --listen "127.0.0.1:$s" --duration 400s > "$work/$name.sink" &
  sink=$!; pids+=("$sink"); wait_port "$s"
  taskset -c 1 "$@" > "$work/$name.log" 2>&1 &
  pid=$!; pids+=("$pid"); wait_port "$i"; sleep 1
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  taskset -c 0 "$LOADGEN" send --endpoint "127.0.0.1:$i" --concurrency 2 --batch "$BATCH" --duration "${HELD_DURATION:-10}s" \
    --rate "${HELD_RATE:-40000}" --payload "$PAYLOAD" > "$work/$name.load" &
  load=$!
  if [ -n "${READ_AFTER:-}" ]; then sleep "$READ_AFTER"; else wait "$load"; sleep 2; fi
  rss1=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  n=$("$count" "$name")
  wait "$load"
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
  kill "$sink" 2>/dev/null || true; wait "$sink" 2>/dev/null || true
  echo "$(python3 -c "print(round(($rss1 - $rss0) * 1024 / max($n, 1)))") $n"
}

# Resident memory per held span: the join with a wait longer than the load, so every span
# sent is still held when RSS is read; RSS growth over the held-spans gauge, against the
# payload's encoded bytes per span.
held_count() { python3 - "$HELD_METRICS" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(int(sum(float(v) for v in re.findall(r"^hotspan_spanprofile_held_spans(?:{[^}]*})? (\S+)$", text, re.M))))
PY
}
held_memory() { # HELD_COMPRESSION [WAIT]
  local s i cfg
  s=$(free_port); i=$(free_port); HELD_METRICS=$(free_port); cfg=$(hotspan_join "$i" "$s" "$HELD_METRICS" "$1")
  sed -i "s/wait: 2s/wait: ${2:-300s}/" "$cfg"
  resident_growth "held-$1-${2:-300s}" "$s" "$i" held_count "$HOTSPAN" --config "$cfg"
}
read -r per_held held < <(held_memory snappy)
read -r per_held_plain held_plain < <(held_memory none)
# The same in a steady state: `wait: 5s` under 30 s of load, read while it runs, so blocks
# have left and new ones live in the memory they freed (fresh memory flatters: pages a buffer
# never touched are not resident).
read -r per_held_steady held_steady < <(HELD_DURATION=30 READ_AFTER=28 held_memory snappy 5s)

# Resident memory per span waiting in tail_sampling, hotspan against otelcol on the same config
# file: forwarding with tail_sampling before batch and a decision_wait longer than the load, so
# every span sent is still waiting when RSS is read: the spans accepted, if none left.
waiting_count() {
  local left
  left=$(tail -n 1 "$work/$1.sink" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read() or "{\"spans\":0}")["spans"])')
  if [ "$left" = 0 ]; then json "$(cat "$work/$1.load")" '["accepted_spans"]'; else echo 0; fi
}
waiting_memory() { # NAME COMMAND...
  local name=$1 s i cfg; shift
  s=$(free_port); i=$(free_port); cfg=$(hotspan_forward "$i" "$s")
  with_tail_sampling "$cfg" 300s
  resident_growth "$name" "$s" "$i" waiting_count "$@" --config "$cfg"
}
read -r per_waiting waiting < <(waiting_memory waiting-hotspan "$HOTSPAN")
read -r per_waiting_otelcol waiting_otelcol < <(waiting_memory waiting-otelcol "$OTELCOL")
for n in "$held" "$held_plain" "$held_steady" "$waiting" "$waiting_otelcol"; do
  [ "${n:-0}" -gt 0 ] || { echo "a memory measurement held no spans (or tail_sampling let them go early)"; exit 1; }
done
encoded=$("$LOADGEN" describe --payload "$PAYLOAD" --batch "$BATCH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_per_span"])')

# A sidecar (config/examples/sidecar.yaml: the join's defaults, wait 20s) taking
# SIDECAR_RATE spans/s for 45 s: its peak RSS.
s=$(free_port)
sed -e 's/127.0.0.1:4317/127.0.0.1:0/; s/127.0.0.1:4318/127.0.0.1:0/; s/127.0.0.1:13133/127.0.0.1:0/' \
  -e '/^service:/a\  telemetry: {metrics: {level: none}}' \
  config/examples/sidecar.yaml > "$work/sidecar.yaml"
i=$(free_port)
sed -i "0,/127.0.0.1:0/s//127.0.0.1:$i/" "$work/sidecar.yaml"
taskset -c 0 "$LOADGEN" sink --listen "127.0.0.1:$s" --duration 120s > "$work/sidecar.sink" &
sink=$!; pids+=("$sink"); wait_port "$s"
GATEWAY="127.0.0.1:$s" taskset -c 1 "$HOTSPAN" --config "$work/sidecar.yaml" > "$work/sidecar.log" 2>&1 &
side=$!; pids+=("$side"); wait_port "$i"
taskset -c 0 "$LOADGEN" send --endpoint "127.0.0.1:$i" --concurrency 1 --batch 100 --duration "${SIDECAR_DURATION:-45}s" \
  --rate "$SIDECAR_RATE" --payload "$PAYLOAD" > "$work/sidecar.load"
sidecar_rss=$(peak_rss_mib "$side")
kill -TERM "$side"; wait "$side" 2>/dev/null || true
kill "$sink" 2>/dev/null || true; wait "$sink" 2>/dev/null || true

# Idle sidecar: otlp + pprof_scrape + spanprofile, nothing sent.
sed -e 's/127.0.0.1:4317/127.0.0.1:0/; s/127.0.0.1:4318/127.0.0.1:0/; s/127.0.0.1:13133/127.0.0.1:0/' \
  -e '/^service:/a\  telemetry: {metrics: {level: none}}' config/examples/sidecar.yaml > "$work/idle.yaml"
taskset -c 1 "$HOTSPAN" --config "$work/idle.yaml" > "$work/idle.log" 2>&1 &
idle=$!; pids+=("$idle"); sleep 5
idle_rss=$(rss_mib "$idle"); kill -TERM "$idle"; wait "$idle" 2>/dev/null || true

ratio() { python3 -c "print(f'{float($1)/max(float($2),1e-9):.2f}')"; }
added() { python3 -c "print(f'{float($1)-float($2):.2f}')"; }
cat <<TABLE

| measurement | Rotel | otelcol | hotspan | hotspan / Rotel | hotspan / otelcol |
|---|---|---|---|---|---|
| forwarding spans/s at saturation, one core | $rotel_rate | $otelcol_rate | $hotspan_rate | $(ratio "$hotspan_rate" "$rotel_rate") | $(ratio "$hotspan_rate" "$otelcol_rate") |
| CPU s per million spans | $rotel_cpu | $otelcol_cpu | $hotspan_cpu | $(ratio "$hotspan_cpu" "$rotel_cpu") | $(ratio "$hotspan_cpu" "$otelcol_cpu") |
| of which gzip level 6 alone (libdeflate, the load's requests in 8192-span batches), µs a span | | | $gzip6_us | Rotel's CPU a span is $(ratio "$rotel_cpu" "$gzip6_us")x it: the most a collector gzipping at level 6 could do a core against Rotel | |
| peak RSS, MiB | $rotel_rss | $otelcol_rss | $hotspan_rss | $(ratio "$hotspan_rss" "$rotel_rss") | $(ratio "$hotspan_rss" "$otelcol_rss") |
| join on, profiles at 10%: spans/s (CPU s per M, peak MiB) | | | $join_rate ($join_cpu, $join_rss) | $(ratio "$join_rate" "$hotspan_rate") of hotspan's forwarding | |
| the same, held spans uncompressed (\`held_compression: none\`) | | | $join_plain_rate ($join_plain_cpu, $join_plain_rss) | $(ratio "$join_plain_rate" "$hotspan_rate") of hotspan's forwarding | |
| resident bytes per held span (encoded: $encoded B) | | | $per_held ($held held) | $(ratio "$per_held" "$encoded") of encoded | |
| the same, held spans uncompressed | | | $per_held_plain ($held_plain held) | $(ratio "$per_held_plain" "$encoded") of encoded | |
| the same in a steady state: RSS growth over spans held, with what is on its way out (\`wait: 5s\`, 30 s at ${HELD_RATE:-40000} spans/s) | | | $per_held_steady ($held_steady held) | $(ratio "$per_held_steady" "$encoded") of encoded | |
| tail_sampling: resident bytes per span waiting for its decision | | $per_waiting_otelcol ($waiting_otelcol spans) | $per_waiting ($waiting spans) | | $(ratio "$per_waiting" "$per_waiting_otelcol") |
| sidecar at $SIDECAR_RATE spans/s, wait 20s: peak RSS MiB | | | $sidecar_rss | | |
| latency p99 ms, one request in flight (sink alone: $sink_p99) | $rotel_p99 (+$(added "$rotel_p99" "$sink_p99")) | $otelcol_p99 (+$(added "$otelcol_p99" "$sink_p99")) | $hotspan_p99 (+$(added "$hotspan_p99" "$sink_p99")) | | |
| idle sidecar RSS, MiB | | | $idle_rss | | |

$per_round
TABLE
fail=0
# The join must have joined what was sent, or it measured a join doing less than its work.
while read -r r joined late unjoined early accepted; do
  echo "round $r, join: $joined samples joined, $late late, $unjoined unjoined; $early of $accepted spans left early (the join past its bounds), the rest after \`wait\`"
  if [ "$joined" -eq 0 ] || [ $((late + unjoined)) -gt $((joined / 100)) ]; then echo "round $r: the join left samples unjoined"; fail=1; fi
done < "$work/joins"
while read -r n _ _ _ want got _; do
  if [ "${got%.*}" -lt "${want%.*}" ]; then echo "$n: the sink received $got of $want accepted spans"; fail=1; fi
done < "$work/results"
[ $fail = 0 ] && echo "delivered: the sink received every accepted span in every round ($(awk '{a+=$5} END {print a}' "$work/results") spans)"
exit $fail
