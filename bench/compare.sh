#!/usr/bin/env bash
# Side by side, in one run: hotspan and Rotel forwarding OTLP/gRPC -> batch -> OTLP/gRPC (gzip)
# to a counting sink, each collector pinned to core 1 with the load generator and the sink on
# core 0; then hotspan with the spanprofile join and profiles at 10% of span volume; then an
# idle sidecar's memory. Prints ratios hotspan/Rotel and checks that the sink got every span.
#
#   bench/compare.sh                 # 3 rounds of 20 s of load per measurement
#   ROUNDS=5 DURATION=60 CONCURRENCY=8 bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-20}"
CONCURRENCY="${CONCURRENCY:-8}"
BATCH="${BATCH:-512}"
ROUNDS="${ROUNDS:-3}"
ROTEL_VERSION="${ROTEL_VERSION:-0.0.1a15}"

cargo build --release -q -p hotspan --bin hotspan -p hotspan-tests --bin loadgen
HOTSPAN=target/release/hotspan
LOADGEN=target/release/loadgen

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

python3 -m venv "$work/venv" >/dev/null
"$work/venv/bin/pip" install -q "rotel==$ROTEL_VERSION" || "$work/venv/bin/pip" install -q rotel
ROTEL=$(find "$work/venv" -name rotel-agent -type f | head -n 1)
[ -x "$ROTEL" ] || { echo "rotel-agent not found in the rotel package"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened"; return 1; }
cpu_seconds() { python3 - "$1" <<'PY'
import sys
stat = open(f"/proc/{sys.argv[1]}/stat").read()
fields = stat[stat.rfind(")") + 2:].split()
print((int(fields[11]) + int(fields[12])) / 100.0)
PY
}
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$2)" "$1"; }

# measure NAME START_COMMAND... : runs the collector on core 1 against a fresh sink; prints
# "spans_per_sec cpu_s_per_million peak_rss_mib accepted received"
measure() {
  local name=$1; shift
  local sink_port=$1 in_port=$2; shift 2
  taskset -c 0 "$LOADGEN" sink --listen "127.0.0.1:$sink_port" --duration "$((DURATION + 60))s" > "$work/$name.sink" &
  local sink=$!; pids+=("$sink")
  wait_port "$sink_port"
  taskset -c 1 "$@" > "$work/$name.log" 2>&1 &
  local collector=$!; pids+=("$collector")
  wait_port "$in_port"
  sleep 1
  local cpu0; cpu0=$(cpu_seconds "$collector")
  taskset -c 0 "$LOADGEN" send --endpoint "127.0.0.1:$in_port" --concurrency "$CONCURRENCY" --batch "$BATCH" \
    --duration "${DURATION}s" ${PROFILES:+--profiles-ratio "$PROFILES"} > "$work/$name.load"
  local cpu1; cpu1=$(cpu_seconds "$collector")
  local peak; peak=$(peak_rss_mib "$collector")
  local accepted; accepted=$(json "$(cat "$work/$name.load")" '["accepted_spans"]')
  local rate; rate=$(json "$(cat "$work/$name.load")" '["spans_per_sec"]')
  # Let the collector deliver what it holds, then stop it gracefully (that flushes the rest).
  local last=-1 now=0
  for _ in $(seq 1 40); do
    now=$(tail -n 1 "$work/$name.sink" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read() or "{\"spans\":0}")["spans"])')
    [ "$now" -ge "$accepted" ] && break
    [ "$now" = "$last" ] && [ "$now" -gt 0 ] && break
    last=$now; sleep 0.5
  done
  # The join's own counters, read before it stops: how many samples it joined, and how many
  # spans left early (past its bounds) rather than after `wait`.
  [ -n "${METRICS:-}" ] && python3 - "$METRICS" > "$work/$name.join" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
def total(name):
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))
print(int(total("hotspan_spanprofile_joined_samples")), int(total("hotspan_spanprofile_late_samples")),
      int(total("hotspan_spanprofile_unjoined_samples")), int(total("hotspan_spanprofile_spans_released_early")))
PY
  kill -TERM "$collector"; wait "$collector" 2>/dev/null || true
  sleep 1.5
  local received; received=$(tail -n 1 "$work/$name.sink" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["spans"])')
  kill "$sink" 2>/dev/null || true; wait "$sink" 2>/dev/null || true
  local per_million; per_million=$(python3 -c "print(round(($cpu1-$cpu0)/max($accepted,1)*1e6, 2))")
  echo "$rate $per_million $peak $accepted $received"
}

hotspan_forward() {
  local in=$1 sink=$2 cfg="$work/hotspan-forward.yaml"
  cat > "$cfg" <<YAML
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$in", max_recv_msg_size_mib: 16}}}
processors:
  batch: {send_batch_size: 8192, timeout: 200ms}
exporters:
  otlp: {endpoint: "127.0.0.1:$sink", tls: {insecure: true}, compression: gzip, sending_queue: {block_on_overflow: true}}
service:
  telemetry: {metrics: {level: none}, logs: {level: warn}}
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [otlp]}
YAML
  echo "$cfg"
}

# The join's bounds are sized for this rate (spans/s x wait, with room), so spans leave after
# `wait`, not early at the defaults (100k spans, 64 MiB).
hotspan_join() {
  local in=$1 sink=$2 metrics=$3 cfg="$work/hotspan-join.yaml"
  cat > "$cfg" <<YAML
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$in", max_recv_msg_size_mib: 16}}}
connectors:
  spanprofile: {wait: 2s, max_buffered_spans: 2000000, max_buffered_bytes: 2147483648}
processors:
  batch: {send_batch_size: 8192, timeout: 200ms}
exporters:
  otlp: {endpoint: "127.0.0.1:$sink", tls: {insecure: true}, compression: gzip, sending_queue: {block_on_overflow: true}}
service:
  telemetry: {metrics: {address: "127.0.0.1:$metrics"}, logs: {level: warn}}
  pipelines:
    traces/in: {receivers: [otlp], exporters: [spanprofile]}
    profiles/in: {receivers: [otlp], exporters: [spanprofile]}
    traces/out: {receivers: [spanprofile], processors: [batch], exporters: [otlp]}
YAML
  echo "$cfg"
}

echo "measuring Rotel $("$ROTEL" --version 2>/dev/null | head -n 1) and hotspan $(git rev-parse --short HEAD), $ROUNDS rounds of ${DURATION}s each, concurrency $CONCURRENCY, $BATCH spans a request"
# Rounds alternate the three so drift on a shared machine hits each alike; the table shows
# medians, and every round's ratios are printed too.
: > "$work/results"
for round in $(seq 1 "$ROUNDS"); do
  s=$(free_port); i=$(free_port); h=$(free_port)
  echo "rotel $(measure rotel "$s" "$i" "$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$i" \
    --otlp-http-endpoint "127.0.0.1:$h" --exporter otlp --otlp-exporter-endpoint "http://127.0.0.1:$s" --otlp-exporter-compression gzip \
    --pid-file "$work/rotel.pid" --log-file "$work/rotel-agent.log")" >> "$work/results"
  s=$(free_port); i=$(free_port)
  echo "hotspan $(measure hotspan "$s" "$i" "$HOTSPAN" --config "$(hotspan_forward "$i" "$s")")" >> "$work/results"
  s=$(free_port); i=$(free_port); m=$(free_port)
  echo "join $(PROFILES=0.1 METRICS=$m measure join "$s" "$i" "$HOTSPAN" --config "$(hotspan_join "$i" "$s" "$m")")" >> "$work/results"
  read -r joined late unjoined early < "$work/join.join"
  echo "$round $joined $late $unjoined $early $(awk '{print $5}' < <(tail -n 1 "$work/results"))" >> "$work/joins"
  echo "round $round done"
done
median() { python3 - "$work/results" "$1" "$2" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.split()[0] == sys.argv[2]]
print(f"{statistics.median(float(r[int(sys.argv[3])]) for r in rows):.10g}")
PY
}
read -r r_rate r_cpu r_rss < <(echo "$(median rotel 1) $(median rotel 2) $(median rotel 3)")
read -r h_rate h_cpu h_rss < <(echo "$(median hotspan 1) $(median hotspan 2) $(median hotspan 3)")
read -r j_rate j_cpu j_rss < <(echo "$(median join 1) $(median join 2) $(median join 3)")
per_round=$(python3 - "$work/results" <<'PY'
import sys
rows = {}
for l in open(sys.argv[1]):
    f = l.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
out = []
for r, h, j in zip(rows["rotel"], rows["hotspan"], rows["join"]):
    out.append(f"(a) {h[0]/r[0]:.2f}x spans/s, {h[1]/r[1]:.2f}x CPU; (b) {j[0]/h[0]:.2f}")
print("\n".join(f"round {i + 1}: {o}" for i, o in enumerate(out)))
PY
)

# Idle sidecar: otlp + pprof_scrape + spanprofile, nothing sent.
sed -e 's/127.0.0.1:4317/127.0.0.1:0/; s/127.0.0.1:4318/127.0.0.1:0/; s/127.0.0.1:13133/127.0.0.1:0/' \
  -e '/^service:/a\  telemetry: {metrics: {level: none}}' config/examples/sidecar.yaml > "$work/idle.yaml"
taskset -c 1 "$HOTSPAN" --config "$work/idle.yaml" > "$work/idle.log" 2>&1 &
idle=$!; pids+=("$idle"); sleep 5
idle_rss=$(rss_mib "$idle"); kill -TERM "$idle"; wait "$idle" 2>/dev/null || true

ratio() { python3 -c "print(f'{float($1)/max(float($2),1e-9):.2f}')"; }
cat <<TABLE

| measurement | Rotel | hotspan | hotspan / Rotel |
|---|---|---|---|
| (a) spans/s at saturation, one core | $r_rate | $h_rate | $(ratio "$h_rate" "$r_rate") |
| (a) CPU s per million spans | $r_cpu | $h_cpu | $(ratio "$h_cpu" "$r_cpu") |
| (a) peak RSS, MiB | $r_rss | $h_rss | $(ratio "$h_rss" "$r_rss") |
| (b) join on, profiles at 10%: spans/s | | $j_rate | $(ratio "$j_rate" "$h_rate") of hotspan's (a) |
| (b) CPU s per million spans / peak RSS MiB | | $j_cpu / $j_rss | |
| idle sidecar RSS, MiB | | $idle_rss | |

$per_round
TABLE
fail=0
# The join must have joined what was sent, or (b) measured a join doing less than its work.
while read -r r joined late unjoined early accepted; do
  echo "round $r, (b): $joined samples joined, $late late, $unjoined unjoined; $early of $accepted spans left early (the join past its bounds), the rest after \`wait\`"
  if [ "$joined" -eq 0 ] || [ $((late + unjoined)) -gt $((joined / 100)) ]; then echo "round $r: the join left samples unjoined"; fail=1; fi
done < "$work/joins"
while read -r n _ _ _ want got; do
  if [ "${got%.*}" -lt "${want%.*}" ]; then echo "$n: the sink received $got of $want accepted spans"; fail=1; fi
done < "$work/results"
[ $fail = 0 ] && echo "delivered: the sink received every accepted span in every round ($(awk '{a+=$5} END {print a}' "$work/results") spans)"
exit $fail
