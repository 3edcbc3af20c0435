package main

import (
	"sync/atomic"
	"time"
)

// sink keeps the result of every burn loop alive, so the compiler cannot delete the loops.
var sink atomic.Uint64

// roundsPerMs is how many rounds of a burn loop take a millisecond of CPU on this machine.
// Spans burn a number of rounds, not a wall-clock time, so each span gets the CPU time it was
// dealt even when the machine is busy (its wall time stretches instead).
var roundsPerMs uint64 = 1

// calibrate measures roundsPerMs: the fastest of a few runs, the one least disturbed by
// other processes.
func calibrate() {
	const rounds = 1 << 20
	best := time.Duration(1<<63 - 1)
	for i := 0; i < 5; i++ {
		start := time.Now()
		calibration(rounds)
		if d := time.Since(start); d < best {
			best = d
		}
	}
	if best <= 0 {
		best = 1
	}
	roundsPerMs = rounds * uint64(time.Millisecond) / uint64(best)
	if roundsPerMs == 0 {
		roundsPerMs = 1
	}
}

//go:noinline
func calibration(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ i) * 1099511628211
	}
	sink.Add(h)
}

// Each span kind burns CPU in its own function with its own copy of the loop, on purpose: a
// shared helper would be the leaf frame of every sample, and the tests check that a span's
// samples have that span's function as their leaf.

// checkout is the root span's own work ("checkout").
//
//go:noinline
func checkout(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ i) * 1099511628211
	}
	sink.Add(h)
}

// validateCart is the work of "validate cart".
//
//go:noinline
func validateCart(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 1)) * 1099511628211
	}
	sink.Add(h)
}

// computePrices is the work of "price items": it burns, then runs the child span
// "apply discounts" (so it is on the stack of that child's samples too).
//
//go:noinline
func computePrices(rounds uint64, discounts func()) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 2)) * 1099511628211
	}
	sink.Add(h)
	discounts()
}

// applyDiscounts is the work of "apply discounts".
//
//go:noinline
func applyDiscounts(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 3)) * 1099511628211
	}
	sink.Add(h)
}

// chargeCard is the work of "charge card"; with slow > 0 (the slowpath scenario) it then runs
// main.slowPath for that many rounds.
//
//go:noinline
func chargeCard(rounds, slow uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 4)) * 1099511628211
	}
	sink.Add(h)
	if slow > 0 {
		slowPath(slow)
	}
}

// slowPath is the extra work a slow "charge card" does.
//
//go:noinline
func slowPath(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 5)) * 1099511628211
	}
	sink.Add(h)
}

// handleOrder is the root's own work in the wait scenario ("handle order").
//
//go:noinline
func handleOrder(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 6)) * 1099511628211
	}
	sink.Add(h)
}

// totalOrder is the work of "total order", the wait scenario's span that does not wait.
//
//go:noinline
func totalOrder(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 7)) * 1099511628211
	}
	sink.Add(h)
}

// buildReport is the root's own work in the alloc scenario ("build report").
//
//go:noinline
func buildReport(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 8)) * 1099511628211
	}
	sink.Add(h)
}

// runJob is the root's own work in the sleep scenario ("run job").
//
//go:noinline
func runJob(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 9)) * 1099511628211
	}
	sink.Add(h)
}

// crunchStep is the work of "job step" after its sleep.
//
//go:noinline
func crunchStep(rounds uint64) {
	h := uint64(14695981039346656037)
	for i := uint64(0); i < rounds; i++ {
		h = (h ^ (i << 10)) * 1099511628211
	}
	sink.Add(h)
}
