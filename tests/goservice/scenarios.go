package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// scenarios are the values of -scenario: what each request does.
//   - checkout: five spans that each burn CPU in their own function.
//   - wait: child spans that block for known times (-wait-min-ms to -wait-max-ms, 20 to 60 by default) on a mutex, a channel, a
//     slow TCP peer and a sleep, and one that only burns CPU.
//   - alloc: child spans that allocate heavily (many short GC cycles, each with its
//     stop-the-world pauses).
//   - slowpath: checkout, where a known fraction of "charge card" spans also run main.slowPath.
//   - sleep: child spans that sleep 10 ms and then burn CPU.
var scenarios = []string{"checkout", "wait", "alloc", "slowpath", "sleep"}

// scenarioErrors counts requests a scenario could not run as designed (e.g. the TCP peer
// failed); the exit status says so.
var scenarioErrors atomic.Int64

// request runs one request of the worker's scenario.
func (w *worker) request(ctx context.Context) {
	switch w.scenario {
	case "wait":
		w.waitRequest(ctx)
	case "alloc":
		w.allocRequest(ctx)
	case "sleep":
		w.sleepRequest(ctx)
	default: // checkout, slowpath
		w.checkoutRequest(ctx)
	}
}

// burnMs draws lo to hi ms worth of burn rounds.
func (w *worker) burnMs(lo, hi int) uint64 {
	return uint64(lo+w.rng.Intn(hi-lo+1)) * roundsPerMs
}

// --- slowpath ---

// takeSlowPath says whether this charge takes the slow path: exactly slowFraction of each
// worker's charges, spread evenly (with 0.1, every tenth).
func (w *worker) takeSlowPath() bool {
	if w.slowFraction <= 0 {
		return false
	}
	w.charges++
	return int64(float64(w.charges)*w.slowFraction) > int64(float64(w.charges-1)*w.slowFraction)
}

// --- wait ---

var (
	kindOrder     = kindOf{"handle order", "", "", "main.handleOrder"}
	kindLock      = kindOf{"lock inventory", "inventory", "lock", ""}
	kindQuote     = kindOf{"await quote", "pricing", "quote", ""}
	kindWarehouse = kindOf{"call warehouse", "inventory", "remote", ""}
	kindBackOff   = kindOf{"back off", "retry", "backoff", ""}
	kindTotal     = kindOf{"total order", "pricing", "total", "main.totalOrder"}
)

// waitPeers are what one worker's "wait" requests block on. Their goroutines start with the
// worker, outside any span: a goroutine inherits its creator's pprof labels, and a helper
// sleeping under a span's labels would look like that span waiting.
type waitPeers struct {
	mu   sync.Mutex
	hold chan time.Duration // to the holder: lock mu, say so on held, keep it this long
	held chan struct{}
	// To the holder: the lock's waiter starts its clock; only now does the holder's time
	// start, so the wait is never shorter than asked however late the waiter runs.
	// Buffered, so the waiter never blocks here.
	waiting chan struct{}
	quote   chan time.Duration // to the quoter: answer on quoted after this long
	quoted  chan struct{}
	conn    net.Conn // to the slow TCP peer
}

func startWaitPeers(peerAddr string) (*waitPeers, error) {
	conn, err := net.Dial("tcp", peerAddr)
	if err != nil {
		return nil, fmt.Errorf("dialing the slow peer: %w", err)
	}
	p := &waitPeers{
		hold:    make(chan time.Duration),
		held:    make(chan struct{}),
		waiting: make(chan struct{}, 1),
		quote:   make(chan time.Duration),
		quoted:  make(chan struct{}),
		conn:    conn,
	}
	go holdLock(p)
	go quoter(p)
	return p, nil
}

// close ends the helper goroutines and the connection.
func (p *waitPeers) close() {
	close(p.hold)
	close(p.quote)
	p.conn.Close()
}

func holdLock(p *waitPeers) {
	for d := range p.hold {
		p.mu.Lock()
		p.held <- struct{}{}
		<-p.waiting
		time.Sleep(d)
		p.mu.Unlock()
	}
}

func quoter(p *waitPeers) {
	for d := range p.quote {
		time.Sleep(d)
		p.quoted <- struct{}{}
	}
}

// startSlowPeer serves 127.0.0.1 TCP: each 8-byte request is a delay in ns, answered with the
// same 8 bytes after that delay. It stops when the listener closes.
func startSlowPeer() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var buf [8]byte
				for {
					if _, err := io.ReadFull(conn, buf[:]); err != nil {
						return
					}
					time.Sleep(time.Duration(binary.BigEndian.Uint64(buf[:])))
					if _, err := conn.Write(buf[:]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln, nil
}

// waitTime draws a block time: -wait-min-ms to -wait-max-ms.
func (w *worker) waitTime() time.Duration {
	return time.Duration(w.waitMinMs+w.rng.Intn(w.waitMaxMs-w.waitMinMs+1)) * time.Millisecond
}

// waitRequest: handle order -> lock inventory (sync.Mutex), await quote (channel), call
// warehouse (slow TCP peer), back off (sleep), total order (CPU only), then the root's own
// work.
func (w *worker) waitRequest(ctx context.Context) {
	p := w.peers
	// The holder takes the lock before the request starts: the root waits on nothing, and
	// the lock span's time is its wait.
	p.hold <- w.waitTime()
	<-p.held
	w.inSpan(ctx, kindOrder, func(ctx context.Context, _ *spanTruth) {
		w.inSpan(ctx, kindLock, func(_ context.Context, t *spanTruth) {
			t.wait = waitTruth{lockInventory(p).Nanoseconds(), "sync.Mutex.Lock", "main.lockInventory"}
		})
		w.inSpan(ctx, kindQuote, func(_ context.Context, t *spanTruth) {
			t.wait = waitTruth{awaitQuote(p, w.waitTime()).Nanoseconds(), "chan receive", "main.awaitQuote"}
		})
		w.inSpan(ctx, kindWarehouse, func(_ context.Context, t *spanTruth) {
			waited, err := callWarehouse(p.conn, w.waitTime())
			if err != nil {
				scenarioErrors.Add(1)
				log.Printf("call warehouse: %v", err)
			}
			t.wait = waitTruth{waited.Nanoseconds(), "IO wait", "main.callWarehouse"}
		})
		w.inSpan(ctx, kindBackOff, func(_ context.Context, t *spanTruth) {
			t.wait = waitTruth{backOff(w.waitTime()).Nanoseconds(), "sleep", "main.backOff"}
		})
		w.inSpan(ctx, kindTotal, func(context.Context, *spanTruth) { totalOrder(w.burn()) })
		handleOrder(w.burnMs(1, 3))
	})
}

// Each wait span blocks in its own function, so a goroutine snapshot's stack names it.

// lockInventory blocks on p.mu, which the holder has; it returns how long.
//
//go:noinline
func lockInventory(p *waitPeers) time.Duration {
	start := time.Now()
	p.waiting <- struct{}{}
	p.mu.Lock()
	waited := time.Since(start)
	p.mu.Unlock()
	return waited
}

// awaitQuote asks the quoter for an answer after d and blocks receiving it. The clock starts
// before the ask: started after it, a preemption between the two would let the quoter's d
// begin first, and the wait would read shorter than d.
//
//go:noinline
func awaitQuote(p *waitPeers, d time.Duration) time.Duration {
	start := time.Now()
	p.quote <- d // the quoter is idle, waiting for this
	<-p.quoted
	return time.Since(start)
}

// callWarehouse asks the slow peer to answer after d and blocks reading the answer. The clock
// starts before the write, for awaitQuote's reason.
//
//go:noinline
func callWarehouse(conn net.Conn, d time.Duration) (time.Duration, error) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(d))
	start := time.Now()
	if _, err := conn.Write(buf[:]); err != nil {
		return 0, err
	}
	_, err := io.ReadFull(conn, buf[:])
	waited := time.Since(start)
	if err == nil && time.Duration(binary.BigEndian.Uint64(buf[:])) != d {
		err = errors.New("the peer answered another request")
	}
	return waited, err
}

// backOff sleeps d.
//
//go:noinline
func backOff(d time.Duration) time.Duration {
	start := time.Now()
	time.Sleep(d)
	return time.Since(start)
}

// --- alloc ---

var (
	kindReport = kindOf{"build report", "", "", "main.buildReport"}
	kindRender = kindOf{"render rows", "reporting", "render", "main.renderRows"}
)

// allocRequest: build report -> three "render rows", each allocating 8 to 32 MiB in small
// objects. With the default GOGC and a small live heap the runtime collects every few MiB, so
// each span sees several GC cycles.
func (w *worker) allocRequest(ctx context.Context) {
	w.inSpan(ctx, kindReport, func(ctx context.Context, _ *spanTruth) {
		buildReport(w.burnMs(1, 3))
		for i := 0; i < 3; i++ {
			bytes := (8 + w.rng.Intn(25)) << 20
			w.inSpan(ctx, kindRender, func(_ context.Context, t *spanTruth) {
				before := gcCycles()
				renderRows(bytes)
				t.extra.AllocBytes = int64(bytes)
				t.extra.GCCycles = int64(gcCycles() - before)
			})
		}
	})
}

// gcCycles is the number of GC cycles completed so far.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// rowsKept keeps the last rows alive, so the collector has something to mark.
var rowsKept [64][]byte

// renderRows allocates total bytes in 1 to 4 KiB rows.
//
//go:noinline
func renderRows(total int) {
	var h uint64
	for done, i := 0, 0; done < total; i++ {
		size := 1024 + (i*733)%3072
		row := make([]byte, size)
		row[size-1] = byte(i)
		h += uint64(row[0]) + uint64(len(row))
		rowsKept[i%len(rowsKept)] = row
		done += size
	}
	sink.Add(h)
}

// --- sleep ---

var (
	kindJob  = kindOf{"run job", "", "", "main.runJob"}
	kindStep = kindOf{"job step", "jobs", "step", "main.crunchStep"}
)

// stepSleep is how long each "job step" sleeps before it burns CPU.
const stepSleep = 10 * time.Millisecond

// sleepRequest: run job -> three "job step", each sleeping 10 ms in main.napStep, then burning
// 5 to 30 ms in main.crunchStep. Under a CPU quota the sleep's wake-up waits for the next
// period, so the span stretches.
func (w *worker) sleepRequest(ctx context.Context) {
	w.inSpan(ctx, kindJob, func(ctx context.Context, _ *spanTruth) {
		runJob(w.burnMs(1, 3))
		for i := 0; i < 3; i++ {
			w.inSpan(ctx, kindStep, func(_ context.Context, t *spanTruth) {
				t.wait = waitTruth{napStep(stepSleep).Nanoseconds(), "sleep", "main.napStep"}
				crunchStep(w.burn())
			})
		}
	})
}

// napStep sleeps d.
//
//go:noinline
func napStep(d time.Duration) time.Duration {
	start := time.Now()
	time.Sleep(d)
	return time.Since(start)
}

// --- idle goroutines ---

// parkIdle parks n goroutines in main.idle until done closes: goroutine snapshots then have
// that many more stacks to take.
func parkIdle(n int, done <-chan struct{}) {
	for i := 0; i < n; i++ {
		go idle(done)
	}
}

//go:noinline
func idle(done <-chan struct{}) {
	<-done
}
