#!/usr/bin/env bash
# Throughput through Kafka on this machine: loadgen -> hotspan sidecar (OTLP/gRPC in, the kafka
# exporter partitioning by trace id) -> Apache Kafka (one KRaft node, the tests' broker) ->
# hotspan gateway (the kafka receiver, a consumer group of one) -> OTLP/gRPC -> loadgen's
# counting sink. Prints the sidecar's accepted spans/s, the end-to-end rate (the sink's count
# over the time from the first span sent to the last one received), and fails unless the sink
# got every span the sidecar accepted. Every process here is this script's, stopped by PID.
#
#   bench/kafka.sh                              # 20 s of load, 8 senders, 512 spans a request
#   DURATION=30 PARTITIONS=8 COMPRESSION=lz4 ACKS=all bench/kafka.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-20}"
CONCURRENCY="${CONCURRENCY:-8}"
BATCH="${BATCH:-512}"
PARTITIONS="${PARTITIONS:-6}"
COMPRESSION="${COMPRESSION:-lz4}"
ACKS="${ACKS:-1}"

# PROFILE=debug runs the debug binaries the tests built, to check the script itself; its
# figures mean nothing.
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p hotspan --bin hotspan --features kafka -p hotspan-tests --bin loadgen
fi
HOTSPAN=target/$PROFILE/hotspan
LOADGEN=target/$PROFILE/loadgen
LIBS=$(./scripts/peers.sh kafka | sed -n 's/^kafka [^:]*: //p')
[ -d "$LIBS" ] || { echo "the Kafka broker's jars are missing (scripts/peers.sh)"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 600); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; return 1; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v s="$2" 'index($0, s" ") == 1 { print $2 }'; }
sink_spans() { tail -n 1 "$work/sink" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read() or "{\"spans\":0}")["spans"])'; }

# The broker, as tests/src/kafka.rs runs it.
kport=$(free_port); cport=$(free_port)
cat > "$work/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$kport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$kport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$work/data
num.partitions=$PARTITIONS
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
printf 'appender.out.type = Console\nappender.out.name = out\nappender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%%d] %%p %%m (%%c)%%n\nrootLogger.level = warn\nrootLogger.appenderRef.out.ref = out\n' > "$work/log4j2.properties"
JAVA=(java "-Dlog4j2.configurationFile=$work/log4j2.properties" -cp "$LIBS/*")
"${JAVA[@]}" kafka.tools.StorageTool format -t MkU3OEVBNTcwNTJENDM2Qg -c "$work/server.properties" > "$work/format.log"
"${JAVA[@]}" -Xms512m -Xmx1g kafka.Kafka "$work/server.properties" > "$work/broker.log" 2>&1 &
pids+=($!)
wait_port "$kport"

in=$(free_port); sm=$(free_port); gm=$(free_port); sink=$(free_port)
cat > "$work/sidecar.yaml" <<YAML
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$in", max_recv_msg_size_mib: 16}}}
exporters:
  kafka:
    brokers: ["127.0.0.1:$kport"]
    partition_traces_by_id: true
    producer: {required_acks: $ACKS, compression: $COMPRESSION, max_message_bytes: 4000000}
    sending_queue: {block_on_overflow: true}
service:
  telemetry: {metrics: {address: "127.0.0.1:$sm"}, logs: {level: warn}}
  pipelines:
    traces: {receivers: [otlp], exporters: [kafka]}
YAML
cat > "$work/gateway.yaml" <<YAML
receivers:
  kafka:
    brokers: ["127.0.0.1:$kport"]
    group_id: bench
    initial_offset: earliest
    max_fetch_size: 16777216
    max_partition_fetch_size: 4194304
processors:
  batch: {send_batch_size: 8192, timeout: 200ms}
exporters:
  otlp: {endpoint: "127.0.0.1:$sink", tls: {insecure: true}, compression: none, sending_queue: {block_on_overflow: true}}
service:
  telemetry: {metrics: {address: "127.0.0.1:$gm"}, logs: {level: warn}}
  pipelines:
    traces: {receivers: [kafka], processors: [batch], exporters: [otlp]}
YAML
"$LOADGEN" sink --listen "127.0.0.1:$sink" --duration "$((DURATION + 180))s" > "$work/sink" &
pids+=($!)
"$HOTSPAN" --config "$work/gateway.yaml" > "$work/gateway.log" 2>&1 &
pids+=($!)
"$HOTSPAN" --config "$work/sidecar.yaml" > "$work/sidecar.log" 2>&1 &
pids+=($!)
wait_port "$in"; wait_port "$sink"
# The gateway holds its partitions before the load starts (the sidecar's first messages create
# the topic; the member finds it within seconds).
for _ in $(seq 1 300); do
  [ "$(metric "$gm" 'hotspan_kafka_receiver_partitions{receiver="kafka"}')" = "$PARTITIONS" ] && break
  sleep 0.2
  "$LOADGEN" send --endpoint "127.0.0.1:$in" --concurrency 1 --batch 1 --duration 100ms > /dev/null
done
# ... and the warm-up went all the way through.
for _ in $(seq 1 300); do
  taken=$(metric "$sm" 'otelcol_receiver_accepted_spans{receiver="otlp",transport="grpc"}')
  [ "$(sink_spans)" = "${taken%.*}" ] && break
  sleep 0.2
done
warm=$(sink_spans)
start=$(date +%s.%N)
"$LOADGEN" send --endpoint "127.0.0.1:$in" --concurrency "$CONCURRENCY" --batch "$BATCH" --duration "${DURATION}s" > "$work/load"
accepted=$(python3 -c "import json; print(json.load(open('$work/load'))['accepted_spans'])")
rate=$(python3 -c "import json; print(json.load(open('$work/load'))['spans_per_sec'])")
want=$((warm + accepted))
last=-1; same=0
while :; do
  now=$(sink_spans)
  [ "$now" -ge "$want" ] && break
  if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
  [ "$same" -ge 60 ] && break # nothing arrived for 30 s
  last=$now; sleep 0.5
done
end=$(date +%s.%N)
got=$(( $(sink_spans) - warm ))
e2e=$(python3 -c "print(round($got / ($end - $start)))")
echo "kafka: $PARTITIONS partitions, acks $ACKS, $COMPRESSION; load: $CONCURRENCY senders x $BATCH spans, ${DURATION}s"
echo "sidecar accepted $accepted spans at $rate spans/s; gateway delivered $got of them, $e2e spans/s end to end"
sent=$(metric "$sm" 'otelcol_exporter_sent_spans{exporter="kafka"}')
echo "sidecar's kafka exporter sent ${sent:-?} spans (warm-up included)"
[ "$got" -ge "$accepted" ] || { echo "FAIL: the sink got $got of $accepted accepted spans"; tail -n 20 "$work/gateway.log" "$work/sidecar.log"; exit 1; }
