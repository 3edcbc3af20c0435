# Helpers shared by bench/compare.sh and bench/ab.sh; sourced, not run. The caller sets
# LOADGEN, DURATION, CONCURRENCY, BATCH, PAYLOAD, a scratch directory `work` and an array
# `pids` of processes to end on exit.

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
# "spans_per_sec cpu_s_per_million peak_rss_mib accepted received p99_ms"
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
  local t0; t0=$(date +%s.%N)
  taskset -c 0 "$LOADGEN" send --endpoint "127.0.0.1:$in_port" --concurrency "$CONCURRENCY" --batch "$BATCH" \
    --duration "${DURATION}s" --payload "$PAYLOAD" ${PROFILES:+--profiles-ratio "$PROFILES"} ${RATE:+--rate "$RATE"} ${SEND_GZIP:+--gzip} > "$work/$name.load"
  local accepted; accepted=$(json "$(cat "$work/$name.load")" '["accepted_spans"]')
  # Until the sink has every accepted span: a collector's queue can take spans faster than it
  # sends them, so spans/s and CPU count from the first span sent to the last one delivered
  # (less HOLD, the join's wait, during which it holds spans by design).
  local last=-1 now=0 still=0
  for _ in $(seq 1 600); do
    now=$(tail -n 1 "$work/$name.sink" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read() or "{\"spans\":0}")["spans"])')
    [ "$now" -ge "$accepted" ] && break
    if [ "$now" = "$last" ]; then still=$((still + 1)); [ "$still" -ge 30 ] && break; else still=0; fi
    last=$now; sleep 0.1
  done
  local t1; t1=$(date +%s.%N)
  local cpu1; cpu1=$(cpu_seconds "$collector")
  local peak; peak=$(peak_rss_mib "$collector")
  local rate; rate=$(python3 -c "print(round($accepted / max($t1 - $t0 - ${HOLD:-0}, 1e-3)))")
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
  local p99; p99=$(json "$(cat "$work/$name.load")" '["latency_ms"]["p99"]')
  echo "$rate $per_million $peak $accepted $received $p99"
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
hotspan_join() { # IN SINK METRICS [HELD_COMPRESSION]
  local in=$1 sink=$2 metrics=$3 held=${4:-snappy} cfg="$work/hotspan-join-${4:-snappy}.yaml"
  cat > "$cfg" <<YAML
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$in", max_recv_msg_size_mib: 16}}}
connectors:
  spanprofile: {wait: 2s, max_buffered_spans: 2000000, max_buffered_bytes: 2147483648, held_compression: $held}
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

# Puts tail_sampling before batch in CONFIG, keeping every trace (so the sink gets every span).
with_tail_sampling() { # CONFIG DECISION_WAIT
  sed -i -e "s|^processors:\$|processors:\n  tail_sampling: {decision_wait: $2, num_traces: 1000000, policies: [{name: all, type: always_sample}]}|" \
    -e 's|processors: \[batch\], exporters|processors: [tail_sampling, batch], exporters|' "$1"
}

# The join, then tail_sampling (what grouping and deciding cost), then batch.
hotspan_join_sampling() { # IN SINK METRICS
  local cfg; cfg=$(hotspan_join "$@")
  with_tail_sampling "$cfg" 1s
  echo "$cfg"
}
