package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"time"
)

// OTLP/JSON shapes (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): ids are
// lower-case hex, 64-bit integers are decimal strings, enums are integers.
type otlpRequest struct {
	ResourceSpans []otlpResourceSpans `json:"resourceSpans"`
}

type otlpResourceSpans struct {
	Resource   otlpResource     `json:"resource"`
	ScopeSpans []otlpScopeSpans `json:"scopeSpans"`
}

type otlpResource struct {
	Attributes []otlpKeyValue `json:"attributes"`
}

type otlpScopeSpans struct {
	Scope otlpScope  `json:"scope"`
	Spans []otlpSpan `json:"spans"`
}

type otlpScope struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type otlpSpan struct {
	TraceID           string         `json:"traceId"`
	SpanID            string         `json:"spanId"`
	ParentSpanID      string         `json:"parentSpanId,omitempty"`
	Name              string         `json:"name"`
	Kind              int            `json:"kind"`
	StartTimeUnixNano string         `json:"startTimeUnixNano"`
	EndTimeUnixNano   string         `json:"endTimeUnixNano"`
	Attributes        []otlpKeyValue `json:"attributes,omitempty"`
	Status            struct{}       `json:"status"`
}

type otlpKeyValue struct {
	Key   string    `json:"key"`
	Value otlpValue `json:"value"`
}

type otlpValue struct {
	StringValue *string `json:"stringValue,omitempty"`
	IntValue    *string `json:"intValue,omitempty"`
}

func stringKV(key, value string) otlpKeyValue {
	return otlpKeyValue{Key: key, Value: otlpValue{StringValue: &value}}
}

func intKV(key string, value int64) otlpKeyValue {
	s := strconv.FormatInt(value, 10)
	return otlpKeyValue{Key: key, Value: otlpValue{IntValue: &s}}
}

func toOTLP(s *span) otlpSpan {
	o := otlpSpan{
		TraceID:           hex.EncodeToString(s.traceID[:]),
		SpanID:            hex.EncodeToString(s.spanID[:]),
		Name:              s.name,
		Kind:              s.kind,
		StartTimeUnixNano: strconv.FormatInt(s.start.UnixNano(), 10),
		EndTimeUnixNano:   strconv.FormatInt(s.end.UnixNano(), 10),
	}
	if !s.isRoot() {
		o.ParentSpanID = hex.EncodeToString(s.parentID[:])
	}
	for _, a := range s.attrs {
		o.Attributes = append(o.Attributes, stringKV(a[0], a[1]))
	}
	return o
}

const (
	batchSize     = 100
	batchInterval = 200 * time.Millisecond
	queueSize     = 8192
	maxAttempts   = 4
)

// exporter batches finished spans and POSTs them as OTLP/HTTP JSON, like an SDK's batch span
// processor: a bounded queue (full means the span is dropped and counted), a flush every
// batchInterval or batchSize spans, and a final flush when the queue is closed.
type exporter struct {
	endpoint string
	resource []otlpKeyValue
	client   *http.Client
	queue    chan *span
	done     chan struct{}
	// Counters, read after done is closed.
	dropped, exported, failed int
}

func newExporter(endpoint string, resource []otlpKeyValue) *exporter {
	e := &exporter{
		endpoint: endpoint,
		resource: resource,
		client:   &http.Client{Timeout: 5 * time.Second},
		queue:    make(chan *span, queueSize),
		done:     make(chan struct{}),
	}
	go e.run()
	return e
}

// add queues a span without ever blocking the request that made it.
func (e *exporter) add(s *span) {
	select {
	case e.queue <- s:
	default:
		e.dropped++ // only the worker goroutines call add, under the service's mutex
	}
}

// close flushes what is queued and waits for the last export to end.
func (e *exporter) close() {
	close(e.queue)
	<-e.done
}

func (e *exporter) run() {
	defer close(e.done)
	ticker := time.NewTicker(batchInterval)
	defer ticker.Stop()
	var batch []*span
	for {
		select {
		case s, ok := <-e.queue:
			if !ok {
				e.flush(batch)
				return
			}
			batch = append(batch, s)
			if len(batch) >= batchSize {
				e.flush(batch)
				batch = nil
				restart(ticker)
			}
		case <-ticker.C:
			e.flush(batch)
			batch = nil
			restart(ticker)
		}
	}
}

// restart starts the ticker's interval again and drops a tick that came during a slow export,
// which would otherwise flush a batch of one right away.
func restart(t *time.Ticker) {
	t.Reset(batchInterval)
	select {
	case <-t.C:
	default:
	}
}

func (e *exporter) flush(batch []*span) {
	if len(batch) == 0 {
		return
	}
	spans := make([]otlpSpan, len(batch))
	for i, s := range batch {
		spans[i] = toOTLP(s)
	}
	body, err := json.Marshal(otlpRequest{ResourceSpans: []otlpResourceSpans{{
		Resource: otlpResource{Attributes: e.resource},
		ScopeSpans: []otlpScopeSpans{{
			Scope: otlpScope{Name: "hotspan.test/goservice", Version: "0.1.0"},
			Spans: spans,
		}},
	}}})
	if err != nil {
		log.Printf("encoding %d spans: %v", len(batch), err)
		e.failed += len(batch)
		return
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		retry, err := e.post(body)
		if err == nil {
			e.exported += len(batch)
			return
		}
		if !retry || attempt == maxAttempts {
			log.Printf("export of %d spans failed after %d attempt(s): %v", len(batch), attempt, err)
			e.failed += len(batch)
			return
		}
		time.Sleep(backoff)
		backoff *= 2
	}
}

// post sends one request; it says whether a failure is worth retrying (OTLP/HTTP: network
// errors, 429, 502, 503, 504).
func (e *exporter) post(body []byte) (retry bool, err error) {
	resp, err := e.client.Post(e.endpoint, "application/json", bytes.NewReader(body))
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	switch resp.StatusCode {
	case 429, 502, 503, 504:
		return true, err
	}
	return false, err
}
