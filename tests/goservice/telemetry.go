package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	otelpyroscope "github.com/grafana/otel-profiling-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// otlpProtocols are the values of -otlp-protocol, named as OTEL_EXPORTER_OTLP_PROTOCOL names them.
var otlpProtocols = []string{"grpc", "http/protobuf", "http/json"}

// newExporter makes the SDK's OTLP trace exporter for protocol. endpoint is a URL: for the HTTP
// protocols a URL without a path gets /v1/traces (as OTEL_EXPORTER_OTLP_ENDPOINT does), one with
// a path is used as is; for gRPC only its host and port count. http:// means plaintext.
func newExporter(ctx context.Context, protocol, endpoint string) (sdktrace.SpanExporter, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("-otlp-endpoint %q is not an http:// or https:// URL", endpoint)
	}
	switch protocol {
	case "grpc":
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(endpoint))
	case "http/protobuf", "http/json":
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
		}
		encoding := otlptracehttp.EncodingProtobuf
		if protocol == "http/json" {
			encoding = otlptracehttp.EncodingJSON
		}
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()), otlptracehttp.WithEncoding(encoding))
	}
	return nil, fmt.Errorf("-otlp-protocol %q is none of %v", protocol, otlpProtocols)
}

// newResource describes this process: service.name from the flag, an instance id unique to the
// process (host-pid), process.pid, host.name and the SDK's own telemetry.sdk.* attributes.
func newResource(ctx context.Context, serviceName string) (*resource.Resource, error) {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithAttributes(
			attribute.String("service.name", serviceName),
			attribute.String("service.instance.id", fmt.Sprintf("%s-%d", host, os.Getpid())),
		),
	)
}

// labelStyles are the values of -label-style.
var labelStyles = []string{"all", "root", "otelprof-all"}

// tracerFor wraps tp the way the label style asks: "root" is otel-profiling-go with its
// defaults (labels of the local root span only), "otelprof-all" its all-spans scope for span
// ids and names; "all" labels spans itself with pprof.Do (see inSpan) and uses tp as is.
func tracerFor(tp trace.TracerProvider, style string) trace.Tracer {
	switch style {
	case "root":
		tp = otelpyroscope.NewTracerProvider(tp)
	case "otelprof-all":
		tp = otelpyroscope.NewTracerProvider(tp,
			otelpyroscope.WithSpanIDLabelScope(otelpyroscope.ScopeAllSpans),
			otelpyroscope.WithSpanNameLabelScope(otelpyroscope.ScopeAllSpans))
	}
	return tp.Tracer("hotspan.test/goservice", trace.WithInstrumentationVersion("0.2.0"))
}

// sdkErrors counts what the SDK reported through otel's error handler (failed exports).
var sdkErrors atomic.Int64

func countSDKErrors() {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		sdkErrors.Add(1)
		log.Printf("opentelemetry: %v", err)
	}))
}

// spanTruth is what only the service knows about a span: what it ran and under which labels.
// The worker notes it just before ending the span; the truth processor pairs it with the span
// the SDK finished.
type spanTruth struct {
	hot    string
	labels map[string]string
	wait   waitTruth
	extra  extraTruth
}

// waitTruth is what a span blocked on, measured around the blocking call (so it includes the
// moment between being woken and running again). Empty for spans that do not block.
type waitTruth struct {
	// Wall time inside the blocking call, in ns.
	WaitNs int64 `json:"wait_ns,omitempty"`
	// The goroutine's wait reason as Go prints it in goroutine dumps (debug=2):
	// "sync.Mutex.Lock", "chan receive", "IO wait", "sleep".
	WaitReason string `json:"wait_reason,omitempty"`
	// The function of this program on the blocked stack, leaf-most, as pprof names it.
	WaitFunction string `json:"wait_function,omitempty"`
}

// extraTruth is what the other scenarios know about a span.
type extraTruth struct {
	// slowpath: this span took main.slowPath.
	SlowPath bool `json:"slow_path,omitempty"`
	// alloc: bytes the span allocated on purpose.
	AllocBytes int64 `json:"alloc_bytes,omitempty"`
	// alloc: GC cycles the runtime completed while the span ran (by any goroutine: a GC
	// stops and slows them all).
	GCCycles int64 `json:"gc_cycles,omitempty"`
}

// truthSpan is one line of the truth file.
type truthSpan struct {
	TraceID       string            `json:"trace_id"`
	SpanID        string            `json:"span_id"`
	ParentSpanID  string            `json:"parent_span_id"`
	Name          string            `json:"name"`
	StartUnixNano int64             `json:"start_unix_nano"`
	EndUnixNano   int64             `json:"end_unix_nano"`
	HotFunction   string            `json:"hot_function"`
	Labels        map[string]string `json:"labels"`
	waitTruth
	extraTruth
}

// truthProcessor is a span processor beside the batch span processor: it sees every span the
// SDK finishes, with the ids, parent and times the exporter sends, and writes it with the
// service's own knowledge to the truth file.
type truthProcessor struct {
	mu      sync.Mutex
	pending map[trace.SpanID]spanTruth
	out     *bufio.Writer // nil: count only
	spans   int64
	missing int64 // spans ended without a note (a bug in this program)
	err     error
}

func newTruthProcessor(out *bufio.Writer) *truthProcessor {
	return &truthProcessor{pending: map[trace.SpanID]spanTruth{}, out: out}
}

// note records what a span ran, before it ends.
func (t *truthProcessor) note(id trace.SpanID, s spanTruth) {
	t.mu.Lock()
	t.pending[id] = s
	t.mu.Unlock()
}

func (t *truthProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (t *truthProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.spans++
	sc := s.SpanContext()
	known, ok := t.pending[sc.SpanID()]
	delete(t.pending, sc.SpanID())
	if !ok {
		t.missing++
		return
	}
	if t.out == nil || t.err != nil {
		return
	}
	parent := ""
	if s.Parent().IsValid() {
		parent = s.Parent().SpanID().String()
	}
	line, err := json.Marshal(truthSpan{
		TraceID:       sc.TraceID().String(),
		SpanID:        sc.SpanID().String(),
		ParentSpanID:  parent,
		Name:          s.Name(),
		StartUnixNano: s.StartTime().UnixNano(),
		EndUnixNano:   s.EndTime().UnixNano(),
		HotFunction:   known.hot,
		Labels:        known.labels,
		waitTruth:     known.wait,
		extraTruth:    known.extra,
	})
	if err == nil {
		_, err = t.out.Write(append(line, '\n'))
	}
	t.err = err
}

func (t *truthProcessor) ForceFlush(context.Context) error { return nil }

func (t *truthProcessor) Shutdown(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.out != nil && t.err == nil {
		t.err = t.out.Flush()
	}
	return t.err
}

func (t *truthProcessor) counts() (spans, missing int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.spans, t.missing
}

// newTracerProvider is a real SDK provider: the truth processor, and with an exporter a batch
// span processor that blocks rather than drop a span when its queue is full (the truth file
// must list exactly the spans exported).
func newTracerProvider(res *resource.Resource, truth *truthProcessor, exp sdktrace.SpanExporter, batchTimeout time.Duration) *sdktrace.TracerProvider {
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(truth),
	}
	if exp != nil {
		opts = append(opts, sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(batchTimeout), sdktrace.WithBlocking()))
	}
	return sdktrace.NewTracerProvider(opts...)
}
