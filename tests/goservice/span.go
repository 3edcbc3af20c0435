package main

import (
	"context"
	mrand "math/rand"
	"runtime/pprof"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// kindOf describes one span kind of a request.
type kindOf struct {
	name   string
	domain string // "" for the root
	stage  string
	hot    string // the function that burns this span's CPU, as pprof names it
}

var (
	kindCheckout  = kindOf{"checkout", "", "", "main.checkout"}
	kindValidate  = kindOf{"validate cart", "cart", "validation", "main.validateCart"}
	kindPrice     = kindOf{"price items", "catalog", "pricing", "main.computePrices"}
	kindDiscounts = kindOf{"apply discounts", "catalog", "discounts", "main.applyDiscounts"}
	kindCharge    = kindOf{"charge card", "payment", "charge", "main.chargeCard"}
)

// worker runs requests one after another. Each has its own RNG, so what it draws is
// deterministic for a given seed and worker index.
type worker struct {
	rng        *mrand.Rand
	labelStyle string
	tracer     trace.Tracer
	truth      *truthProcessor
	scenario   string
	// slowpath: the fraction of charges that take main.slowPath, and how long it burns.
	slowFraction float64
	slowRounds   uint64
	charges      int64
	// wait: what its requests block on, and for how long (ms, drawn evenly).
	peers                *waitPeers
	waitMinMs, waitMaxMs int
}

// burn draws how much CPU the next span burns: 5 to 30 ms worth of rounds.
func (w *worker) burn() uint64 {
	return uint64(5+w.rng.Intn(26)) * roundsPerMs
}

// checkoutRequest runs one trace: checkout -> validate cart, price items (-> apply
// discounts), charge card.
func (w *worker) checkoutRequest(ctx context.Context) {
	w.inSpan(ctx, kindCheckout, func(ctx context.Context, _ *spanTruth) {
		checkout(w.burn())
		w.inSpan(ctx, kindValidate, func(context.Context, *spanTruth) { validateCart(w.burn()) })
		w.inSpan(ctx, kindPrice, func(ctx context.Context, _ *spanTruth) {
			d, dd := w.burn(), w.burn()
			computePrices(d, func() {
				w.inSpan(ctx, kindDiscounts, func(context.Context, *spanTruth) { applyDiscounts(dd) })
			})
		})
		w.inSpan(ctx, kindCharge, func(_ context.Context, t *spanTruth) {
			rounds := w.burn()
			if w.takeSlowPath() {
				t.hot = "main.slowPath" // it burns more than chargeCard itself
				t.extra.SlowPath = true
				chargeCard(rounds, w.slowRounds)
			} else {
				chargeCard(rounds, 0)
			}
		})
	})
}

// inSpan runs body in a new span: a child of the span in ctx, or a new trace's root (kind
// server). With the "all" label style body runs inside pprof.Do with the span's own ids, name,
// domain and stage; with the otel-profiling-go styles the wrapped tracer has set the labels
// already. The truth notes the labels the goroutine really carries while body runs.
func (w *worker) inSpan(ctx context.Context, k kindOf, body func(context.Context, *spanTruth)) {
	root := !trace.SpanContextFromContext(ctx).IsValid()
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	if root {
		opts[0] = trace.WithSpanKind(trace.SpanKindServer)
	}
	if k.domain != "" {
		opts = append(opts, trace.WithAttributes(attribute.String("domain", k.domain), attribute.String("stage", k.stage)))
	}
	ctx, span := w.tracer.Start(ctx, k.name, opts...)
	sc := span.SpanContext()
	truth := spanTruth{hot: k.hot}
	run := func(ctx context.Context) {
		truth.labels = map[string]string{}
		pprof.ForLabels(ctx, func(key, value string) bool {
			truth.labels[key] = value
			return true
		})
		body(ctx, &truth)
	}
	if w.labelStyle == "all" {
		labels := []string{"trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String(), "span_name", k.name}
		if k.domain != "" {
			labels = append(labels, "domain", k.domain, "stage", k.stage)
		}
		pprof.Do(ctx, pprof.Labels(labels...), run)
	} else {
		run(ctx)
	}
	w.truth.note(sc.SpanID(), truth)
	span.End()
}
