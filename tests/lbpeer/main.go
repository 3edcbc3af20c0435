// lbpeer routes traces with the OpenTelemetry Collector's own load_balancing exporter
// (opentelemetry-collector-contrib), so the tests can check that hotspan's load_balancing
// exporter sends each trace to the backend otelcol sends it to: a routing tier that mixes
// the two, during a migration, must not split traces.
//
// Usage: lbpeer -endpoints host:port,... -routing-key traceID|service < spans
// Each line of stdin is "TRACE_ID_HEX SPAN_ID_HEX SERVICE"; each becomes one request of one
// span, sent alone. It prints how many it sent.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
)

func main() {
	endpoints := flag.String("endpoints", "", "the backends, comma-separated host:port")
	routingKey := flag.String("routing-key", "traceID", "load_balancing's routing_key")
	flag.Parse()
	if *endpoints == "" {
		log.Fatal("-endpoints is required")
	}
	hostnames := []any{}
	for _, e := range strings.Split(*endpoints, ",") {
		hostnames = append(hostnames, e)
	}

	factory := loadbalancingexporter.NewFactory()
	cfg := factory.CreateDefaultConfig()
	// The config as otelcol reads it from YAML.
	conf := confmap.NewFromStringMap(map[string]any{
		"routing_key": *routingKey,
		"protocol": map[string]any{
			"otlp": map[string]any{
				"tls":              map[string]any{"insecure": true},
				"sending_queue":    map[string]any{"enabled": false},
				"retry_on_failure": map[string]any{"enabled": false},
			},
		},
		"resolver": map[string]any{"static": map[string]any{"hostnames": hostnames}},
	})
	if err := conf.Unmarshal(cfg); err != nil {
		log.Fatalf("config: %v", err)
	}
	ctx := context.Background()
	settings := exportertest.NewNopSettings(factory.Type())
	// Its complaints (a backend it could not set up) go to stderr, for the test's message.
	logger, err := zap.NewDevelopment()
	if err != nil {
		log.Fatalf("logger: %v", err)
	}
	settings.Logger = logger
	exp, err := factory.CreateTraces(ctx, settings, cfg)
	if err != nil {
		log.Fatalf("creating the exporter: %v", err)
	}
	if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
		log.Fatalf("starting the exporter: %v", err)
	}

	sent := 0
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) != 3 {
			log.Fatalf("want TRACE_ID SPAN_ID SERVICE, got %q", lines.Text())
		}
		var traceID pcommon.TraceID
		var spanID pcommon.SpanID
		if raw, err := hex.DecodeString(fields[0]); err != nil || len(raw) != len(traceID) {
			log.Fatalf("bad trace id %q", fields[0])
		} else {
			copy(traceID[:], raw)
		}
		if raw, err := hex.DecodeString(fields[1]); err != nil || len(raw) != len(spanID) {
			log.Fatalf("bad span id %q", fields[1])
		} else {
			copy(spanID[:], raw)
		}
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", fields[2])
		span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		span.SetTraceID(traceID)
		span.SetSpanID(spanID)
		span.SetName("routed")
		// The first export may race the backends' connections coming up: try a few times.
		var err error
		for attempt := 0; ; attempt++ {
			err = exp.ConsumeTraces(ctx, td)
			if err == nil || attempt == 50 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			log.Fatalf("exporting trace %s: %v", fields[0], err)
		}
		sent++
	}
	if err := exp.Shutdown(ctx); err != nil {
		log.Fatalf("shutting down: %v", err)
	}
	fmt.Println(sent)
}
