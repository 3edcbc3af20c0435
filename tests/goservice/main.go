// goservice is a small Go service used as ground truth by hotspan's tests. Its workers run
// "checkout" requests whose spans each burn CPU in their own function under pprof labels,
// export the spans over OTLP/HTTP JSON, serve net/http/pprof, and can write every span (with
// its hot function and labels) to a truth file and a CPU profile written by the Go runtime.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	mrand "math/rand"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	rpprof "runtime/pprof"
	"sync"
	"syscall"
	"time"
)

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
}

// sinks takes finished spans from every worker.
type sinks struct {
	mu       sync.Mutex
	exporter *exporter     // nil without -otlp-endpoint
	truth    *bufio.Writer // nil without -truth
	spans    int
}

func (k *sinks) finished(s *span) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.spans++
	if k.exporter != nil {
		k.exporter.add(s)
	}
	if k.truth != nil {
		parent := ""
		if !s.isRoot() {
			parent = hex.EncodeToString(s.parentID[:])
		}
		line, err := json.Marshal(truthSpan{
			TraceID:       hex.EncodeToString(s.traceID[:]),
			SpanID:        hex.EncodeToString(s.spanID[:]),
			ParentSpanID:  parent,
			Name:          s.name,
			StartUnixNano: s.start.UnixNano(),
			EndUnixNano:   s.end.UnixNano(),
			HotFunction:   s.hot,
			Labels:        s.labels,
		})
		if err == nil {
			k.truth.Write(append(line, '\n'))
		}
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:6060", "address for /debug/pprof/*")
	endpoint := flag.String("otlp-endpoint", "", "OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces (none: no export)")
	serviceName := flag.String("service-name", "shop", "service.name resource attribute")
	labelStyle := flag.String("label-style", "all", "pprof labels: all (every span) or root (local root span only, like otel-profiling-go)")
	truthPath := flag.String("truth", "", "write every finished span as a JSON line to this file")
	workers := flag.Int("workers", 2, "goroutines running requests")
	duration := flag.Duration("duration", 0, "run this long, then exit (0: until SIGTERM/SIGINT)")
	cpuProfile := flag.String("cpu-profile", "", "write a CPU profile of the first -cpu-profile-seconds to this file")
	cpuSeconds := flag.Int("cpu-profile-seconds", 2, "length of the -cpu-profile")
	seed := flag.Int64("seed", 1, "seed for the burn times (ids are always random)")
	flag.Parse()
	log.SetPrefix("goservice: ")
	if *labelStyle != "all" && *labelStyle != "root" {
		log.Fatalf("-label-style must be all or root, not %q", *labelStyle)
	}
	if *workers < 1 {
		log.Fatalf("-workers must be at least 1")
	}

	calibrate()
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

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
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

	out := &sinks{}
	var truthFile *os.File
	if *truthPath != "" {
		truthFile, err = os.Create(*truthPath)
		if err != nil {
			log.Fatal(err)
		}
		out.truth = bufio.NewWriter(truthFile)
	}
	if *endpoint != "" {
		host, _ := os.Hostname()
		out.exporter = newExporter(*endpoint, []otlpKeyValue{
			stringKV("service.name", *serviceName),
			stringKV("service.instance.id", fmt.Sprintf("%s-%d", host, os.Getpid())),
			intKV("process.pid", int64(os.Getpid())),
			stringKV("telemetry.sdk.language", "go"),
		})
	}

	var wg sync.WaitGroup
	for i := 0; i < *workers; i++ {
		w := &worker{
			rng:        mrand.New(mrand.NewSource(*seed + int64(i))),
			labelStyle: *labelStyle,
			finished:   out.finished,
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				// The request runs on a context that is never cancelled: a stop lets it finish.
				w.request(context.Background())
			}
		}()
	}

	<-ctx.Done()
	wg.Wait()
	stopProfile()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	server.Shutdown(shutdownCtx)

	code := 0
	if out.exporter != nil {
		out.exporter.close()
		e := out.exporter
		if e.failed > 0 || e.dropped > 0 {
			log.Printf("%d spans exported, %d failed, %d dropped (queue full)", e.exported, e.failed, e.dropped)
		}
	}
	if out.truth != nil {
		if err := out.truth.Flush(); err != nil {
			log.Printf("writing %s: %v", *truthPath, err)
			code = 1
		}
		if err := truthFile.Close(); err != nil {
			log.Printf("closing %s: %v", *truthPath, err)
			code = 1
		}
	}
	log.Printf("stopped after %d spans", out.spans)
	os.Exit(code)
}
