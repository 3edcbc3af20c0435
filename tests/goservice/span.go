package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand"
	"runtime/pprof"
	"time"
)

// A finished span, as exported over OTLP and written to the truth file.
type span struct {
	traceID  [16]byte
	spanID   [8]byte
	parentID [8]byte // all zero for a root span
	name     string
	kind     int // OTLP SpanKind: 2 server (root), 1 internal
	start    time.Time
	end      time.Time
	attrs    [][2]string // domain, stage where they apply
	hot      string      // the function that burned CPU in this span, as pprof names it
	labels   map[string]string
}

func (s *span) isRoot() bool { return s.parentID == [8]byte{} }

// kindOf describes one span kind of a request.
type kindOf struct {
	name   string
	domain string // "" for the root
	stage  string
	hot    string
}

var (
	kindCheckout  = kindOf{"checkout", "", "", "main.checkout"}
	kindValidate  = kindOf{"validate cart", "cart", "validation", "main.validateCart"}
	kindPrice     = kindOf{"price items", "catalog", "pricing", "main.computePrices"}
	kindDiscounts = kindOf{"apply discounts", "catalog", "discounts", "main.applyDiscounts"}
	kindCharge    = kindOf{"charge card", "payment", "charge", "main.chargeCard"}
)

// worker runs requests one after another. Each has its own RNG, so the burn times it
// draws are deterministic for a given seed and worker index.
type worker struct {
	rng        *mrand.Rand
	labelStyle string
	finished   func(*span)
}

// burn draws how much CPU the next span burns: 5 to 30 ms worth of rounds.
func (w *worker) burn() uint64 {
	return uint64(5+w.rng.Intn(26)) * roundsPerMs
}

// request runs one trace: checkout -> validate cart, price items (-> apply discounts), charge card.
func (w *worker) request(ctx context.Context) {
	w.inSpan(ctx, nil, kindCheckout, func(ctx context.Context, root *span) {
		checkout(w.burn())
		w.inSpan(ctx, root, kindValidate, func(context.Context, *span) { validateCart(w.burn()) })
		w.inSpan(ctx, root, kindPrice, func(ctx context.Context, price *span) {
			d, dd := w.burn(), w.burn()
			computePrices(d, func() {
				w.inSpan(ctx, price, kindDiscounts, func(context.Context, *span) { applyDiscounts(dd) })
			})
		})
		w.inSpan(ctx, root, kindCharge, func(context.Context, *span) { chargeCard(w.burn()) })
	})
}

// inSpan starts a span (a child of parent, or a new trace's root), runs body inside the
// pprof labels the label style gives it, and hands the finished span on.
func (w *worker) inSpan(ctx context.Context, parent *span, k kindOf, body func(context.Context, *span)) {
	s := &span{name: k.name, kind: 1, hot: k.hot}
	if parent == nil {
		s.traceID = randomID16()
		s.kind = 2
	} else {
		s.traceID = parent.traceID
		s.parentID = parent.spanID
	}
	s.spanID = randomID8()
	if k.domain != "" {
		s.attrs = append(s.attrs, [2]string{"domain", k.domain})
	}
	if k.stage != "" {
		s.attrs = append(s.attrs, [2]string{"stage", k.stage})
	}

	var labels []string
	switch {
	case w.labelStyle == "all":
		labels = []string{"trace_id", hex.EncodeToString(s.traceID[:]), "span_id", hex.EncodeToString(s.spanID[:]), "span_name", k.name}
		if k.domain != "" {
			labels = append(labels, "domain", k.domain, "stage", k.stage)
		}
	case parent == nil: // "root": only the local root labels, like otel-profiling-go
		labels = []string{"trace_id", hex.EncodeToString(s.traceID[:]), "span_id", hex.EncodeToString(s.spanID[:]), "span_name", k.name}
	}

	s.start = time.Now()
	run := func(ctx context.Context) {
		// Record the labels the runtime really has on this goroutine now, inherited ones too.
		s.labels = map[string]string{}
		pprof.ForLabels(ctx, func(key, value string) bool {
			s.labels[key] = value
			return true
		})
		body(ctx, s)
	}
	if labels != nil {
		pprof.Do(ctx, pprof.Labels(labels...), run)
	} else {
		run(ctx)
	}
	s.end = time.Now()
	w.finished(s)
}

func randomID16() (id [16]byte) {
	for id == [16]byte{} {
		mustRead(id[:])
	}
	return id
}

func randomID8() (id [8]byte) {
	for id == [8]byte{} {
		mustRead(id[:])
	}
	return id
}

func mustRead(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
}
