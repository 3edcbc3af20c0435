// goservice is a small Go service used as ground truth by hotspan's tests. Its workers run
// requests whose spans each burn CPU (or block) in their own function under pprof labels.
// Spans go through the OpenTelemetry Go SDK (a real TracerProvider with a batch span
// processor) to the SDK's OTLP exporters (-otlp-protocol grpc, http/protobuf, http/json).
// Labels come from pprof.Do on every span (-label-style all) or from otel-profiling-go (root:
// its default, the local root's; otelprof-all: its all-spans scope). It serves net/http/pprof,
// expvar's /debug/vars (with gomaxprocs) and /stats (also over TLS with -tls-listen, optionally
// requiring client certificates and headers, as a scrape target behind TLS and auth), can push
// profiles with pyroscope-go (-pyroscope-endpoint), and writes every span (with its hot
// function, the labels it really ran under and what the scenario knows about it) to a truth
// file, and a CPU profile written by the Go runtime. -scenario picks what requests do (see
// scenarios.go).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"expvar"
	"flag"
	"log"
	mrand "math/rand"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	rpprof "runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/grafana/pyroscope-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// requests counts requests completed, for /stats and the exit line.
var requests atomic.Int64

func main() {
	listen := flag.String("listen", "127.0.0.1:6060", "address for /debug/pprof/* and /stats")
	endpoint := flag.String("otlp-endpoint", "", "OTLP traces endpoint URL, e.g. http://127.0.0.1:4318 (HTTP: /v1/traces is added to a URL without a path) or http://127.0.0.1:4317 (gRPC); none: no export")
	protocol := flag.String("otlp-protocol", "http/protobuf", "OTLP protocol: grpc, http/protobuf or http/json")
	batchTimeout := flag.Duration("otlp-batch-timeout", 200*time.Millisecond, "the batch span processor's export interval")
	serviceName := flag.String("service-name", "shop", "service.name resource attribute")
	labelStyle := flag.String("label-style", "all", "pprof labels: all (every span, with pprof.Do), root (otel-profiling-go's default: the local root span's) or otelprof-all (otel-profiling-go, span ids and names of all spans)")
	pushEndpoint := flag.String("pyroscope-endpoint", "", "push profiles with pyroscope-go to this server URL (it POSTs to URL/ingest), e.g. http://127.0.0.1:4040; none: no push")
	pushRate := flag.Duration("pyroscope-upload-rate", 15*time.Second, "how often pyroscope-go pushes")
	pushTypes := flag.String("pyroscope-profiles", "cpu", "comma-separated profile types pyroscope-go pushes (cpu, goroutine, alloc_space, ...)")
	truthPath := flag.String("truth", "", "write every finished span as a JSON line to this file")
	workers := flag.Int("workers", 2, "goroutines running requests")
	duration := flag.Duration("duration", 0, "run this long, then exit (0: until SIGTERM/SIGINT)")
	cpuProfile := flag.String("cpu-profile", "", "write a CPU profile of the first -cpu-profile-seconds to this file")
	cpuSeconds := flag.Int("cpu-profile-seconds", 2, "length of the -cpu-profile")
	seed := flag.Int64("seed", 1, "seed for what the workers draw (ids are always random)")
	scenario := flag.String("scenario", "checkout", "what requests do: checkout, wait, alloc, slowpath or sleep")
	slowFraction := flag.Float64("slow-fraction", 0.1, "slowpath: the fraction of charges that take main.slowPath (exactly, per worker)")
	slowMs := flag.Int("slow-path-ms", 60, "slowpath: CPU milliseconds main.slowPath burns")
	waitMinMs := flag.Int("wait-min-ms", 20, "wait: the shortest block a wait span draws, in ms")
	waitMaxMs := flag.Int("wait-max-ms", 60, "wait: the longest block a wait span draws, in ms")
	idleGoroutines := flag.Int("idle-goroutines", 0, "park this many extra goroutines, blocked on a channel in main.idle")
	tlsListen := flag.String("tls-listen", "", "also serve /debug/pprof/* and /stats over TLS on this address (needs -tls-cert and -tls-key)")
	tlsCert := flag.String("tls-cert", "", "PEM certificate for -tls-listen")
	tlsKey := flag.String("tls-key", "", "PEM private key for -tls-listen")
	tlsClientCA := flag.String("tls-client-ca", "", "on -tls-listen, require client certificates signed by this PEM CA (mTLS)")
	var required requiredHeaders
	flag.Var(&required, "tls-require-header", "on -tls-listen, answer 401 to requests without this header, \"Name: value\" (repeatable)")
	flag.Parse()
	log.SetPrefix("goservice: ")
	if !slices.Contains(labelStyles, *labelStyle) {
		log.Fatalf("-label-style must be one of %v, not %q", labelStyles, *labelStyle)
	}
	if !slices.Contains(otlpProtocols, *protocol) {
		log.Fatalf("-otlp-protocol must be one of %v, not %q", otlpProtocols, *protocol)
	}
	if *workers < 1 {
		log.Fatalf("-workers must be at least 1")
	}
	if !slices.Contains(scenarios, *scenario) {
		log.Fatalf("-scenario must be one of %v, not %q", scenarios, *scenario)
	}
	if *slowFraction < 0 || *slowFraction > 1 || *slowMs < 1 {
		log.Fatalf("-slow-fraction must be in [0, 1] and -slow-path-ms at least 1")
	}
	if *waitMinMs < 1 || *waitMaxMs < *waitMinMs {
		log.Fatalf("-wait-min-ms must be at least 1 and at most -wait-max-ms")
	}
	if *idleGoroutines < 0 {
		log.Fatalf("-idle-goroutines must not be negative")
	}
	if *tlsListen != "" && (*tlsCert == "" || *tlsKey == "") {
		log.Fatalf("-tls-listen needs -tls-cert and -tls-key")
	}
	if *pushEndpoint != "" && *cpuProfile != "" {
		// Both would run the one CPU profiler Go has.
		log.Fatalf("-cpu-profile and -pyroscope-endpoint exclude each other")
	}

	calibrate()
	countSDKErrors()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	// The CPU profile starts first, so it covers the first requests.
	stopProfile := func() {}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := rpprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		var once sync.Once
		stopProfile = func() {
			once.Do(func() {
				rpprof.StopCPUProfile()
				if err := f.Close(); err != nil {
					log.Printf("closing %s: %v", *cpuProfile, err)
				}
			})
		}
		timer := time.AfterFunc(time.Duration(*cpuSeconds)*time.Second, stopProfile)
		defer timer.Stop()
	}

	var truthFile *os.File
	var truthOut *bufio.Writer
	if *truthPath != "" {
		var err error
		if truthFile, err = os.Create(*truthPath); err != nil {
			log.Fatal(err)
		}
		truthOut = bufio.NewWriter(truthFile)
	}
	truth := newTruthProcessor(truthOut)
	res, err := newResource(ctx, *serviceName)
	if err != nil {
		log.Fatalf("resource: %v", err)
	}
	var exp sdktrace.SpanExporter // nil: no export
	if *endpoint != "" {
		if exp, err = newExporter(ctx, *protocol, *endpoint); err != nil {
			log.Fatal(err)
		}
	}
	tp := newTracerProvider(res, truth, exp, *batchTimeout)
	tracer := tracerFor(tp, *labelStyle)
	var profiler *pyroscope.Profiler
	if *pushEndpoint != "" {
		if profiler, err = startPush(*pushEndpoint, *serviceName, *pushRate, *pushTypes); err != nil {
			log.Fatalf("pyroscope: %v", err)
		}
	}

	started := time.Now()
	mux := http.NewServeMux()
	// pprof.Index also serves the named profiles: /debug/pprof/goroutine, heap, ...
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// expvar's page with GOMAXPROCS on it, which hotspan's cgroup receiver compares with the
	// CPU quota (expvar's own vars, cmdline and memstats, do not say it).
	expvar.Publish("gomaxprocs", expvar.Func(func() any { return runtime.GOMAXPROCS(0) }))
	mux.Handle("/debug/vars", expvar.Handler())
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		spans, _ := truth.counts()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(stats(started, spans))
	})
	// The TLS listener is bound before the plain one, so a client that sees the plain one
	// answer knows both are up.
	var tlsServer *http.Server
	if *tlsListen != "" {
		if tlsServer, err = serveTLS(*tlsListen, *tlsCert, *tlsKey, *tlsClientCA, required.guard(mux)); err != nil {
			log.Fatalf("-tls-listen: %v", err)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("serving %s: %v", *listen, err)
		}
	}()

	idleDone := make(chan struct{})
	parkIdle(*idleGoroutines, idleDone)
	var slowPeer net.Listener
	if *scenario == "wait" {
		if slowPeer, err = startSlowPeer(); err != nil {
			log.Fatalf("the slow TCP peer: %v", err)
		}
	}

	var wg sync.WaitGroup
	var peers []*waitPeers
	for i := 0; i < *workers; i++ {
		w := &worker{
			rng:        mrand.New(mrand.NewSource(*seed + int64(i))),
			labelStyle: *labelStyle,
			tracer:     tracer,
			truth:      truth,
			scenario:   *scenario,
		}
		if *scenario == "slowpath" {
			w.slowFraction = *slowFraction
			w.slowRounds = uint64(*slowMs) * roundsPerMs
		}
		if slowPeer != nil {
			w.waitMinMs, w.waitMaxMs = *waitMinMs, *waitMaxMs
			if w.peers, err = startWaitPeers(slowPeer.Addr().String()); err != nil {
				log.Fatal(err)
			}
			peers = append(peers, w.peers)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				// The request runs on a context that is never cancelled: a stop lets it finish.
				w.request(context.Background())
				requests.Add(1)
			}
		}()
	}

	<-ctx.Done()
	wg.Wait()
	stopProfile()
	close(idleDone)
	for _, p := range peers {
		p.close()
	}
	if slowPeer != nil {
		slowPeer.Close()
	}
	code := 0
	if n := scenarioErrors.Load(); n > 0 {
		log.Printf("%d requests did not run as the scenario says", n)
		code = 1
	}
	if profiler != nil {
		// Push what the last window holds and wait for every upload, then stop.
		profiler.Flush(true)
		profiler.Stop()
	}
	// Shutdown exports what the batch span processor holds and flushes the truth file.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(shutdownCtx); err != nil {
		log.Printf("shutting the tracer provider down: %v", err)
		code = 1
	}
	server.Shutdown(shutdownCtx)
	if tlsServer != nil {
		tlsServer.Shutdown(shutdownCtx)
	}
	if truthFile != nil {
		if err := truthFile.Close(); err != nil {
			log.Printf("closing %s: %v", *truthPath, err)
			code = 1
		}
	}
	spans, missing := truth.counts()
	if missing > 0 {
		log.Printf("%d spans ended without their truth", missing)
		code = 1
	}
	if n := sdkErrors.Load(); n > 0 {
		log.Printf("the OpenTelemetry SDK reported %d errors", n)
	}
	if n := pushErrors.Load(); n > 0 {
		log.Printf("pyroscope-go reported %d errors", n)
	}
	s := stats(started, spans)
	log.Printf("stopped after %d spans, %d requests in %.1fs (%.1f requests/s)", spans, s.Requests, s.UptimeSeconds, s.RequestsPerSecond)
	os.Exit(code)
}

// serviceStats is what /stats serves: the service's own throughput.
type serviceStats struct {
	Requests          int64   `json:"requests"`
	Spans             int64   `json:"spans"`
	UptimeSeconds     float64 `json:"uptime_seconds"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	SDKErrors         int64   `json:"sdk_errors"`
	PushErrors        int64   `json:"push_errors"`
}

func stats(started time.Time, spans int64) serviceStats {
	up := time.Since(started).Seconds()
	n := requests.Load()
	rate := 0.0
	if up > 0 {
		rate = float64(n) / up
	}
	return serviceStats{Requests: n, Spans: spans, UptimeSeconds: up, RequestsPerSecond: rate, SDKErrors: sdkErrors.Load(), PushErrors: pushErrors.Load()}
}
