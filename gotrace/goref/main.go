// goref is the Go side of hotspan-gotrace's differential test.
//
//	goref produce -o FILE [-duration 2s] [-workers 4] [-cpuprofile=true] [-allocs 256] [-sleep 0] [-gcpercent 10]
//	    runs an allocation-heavy workload (many short GC cycles, so many stop-the-world
//	    pauses, plus a few pauses of other kinds) with runtime/trace writing to FILE.
//	goref read FILE
//	    parses FILE with golang.org/x/exp/trace and prints, as JSON, what hotspan-gotrace
//	    reports: stop-the-world ranges, GC cycles, clock snapshots, first and last event
//	    times and the number of events.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	xtrace "golang.org/x/exp/trace"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "produce":
		err = produce(os.Args[2:])
	case "read":
		if len(os.Args) != 3 {
			usage()
		}
		err = read(os.Args[2], os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "goref:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: goref produce -o FILE [-duration D] [-workers N] [-cpuprofile=BOOL] [-allocs N] [-sleep D] [-gcpercent N] | goref read FILE")
	os.Exit(2)
}

// sink keeps allocations reachable for a moment so the compiler cannot drop them and the
// heap has some live data to mark.
var sink atomic.Pointer[[]byte]

func produce(args []string) error {
	fs := flag.NewFlagSet("produce", flag.ExitOnError)
	out := fs.String("o", "", "trace file to write")
	duration := fs.Duration("duration", 2*time.Second, "how long to trace")
	workers := fs.Int("workers", 4, "allocating goroutines")
	cpuProfile := fs.Bool("cpuprofile", true, "also run the CPU profiler, whose samples the trace carries")
	allocs := fs.Int("allocs", 256, "allocations per batch")
	rest := fs.Duration("sleep", 0, "sleep between batches (a smaller trace for longer)")
	gcPercent := fs.Int("gcpercent", 10, "GOGC: lower means more GC cycles")
	fs.Parse(args)
	if *out == "" {
		return fmt.Errorf("produce needs -o FILE")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()

	// A small heap goal: a GC cycle every few milliseconds, two pauses each.
	debug.SetGCPercent(*gcPercent)
	if *cpuProfile {
		if err := pprof.StartCPUProfile(io.Discard); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := trace.Start(f); err != nil {
		return err
	}
	deadline := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			allocate(w, deadline, *allocs, *rest)
		}(w)
	}
	// A goroutine handing work over a channel: blocking, unblocking, scheduling.
	wg.Add(1)
	go func() {
		defer wg.Done()
		pingPong(deadline)
	}()
	// Pauses of other kinds than GC, so reasons are compared too.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(deadline) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			pprof.Lookup("goroutine").WriteTo(io.Discard, 0)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	wg.Wait()
	trace.Stop()
	return f.Close()
}

func allocate(w int, deadline time.Time, allocs int, rest time.Duration) {
	ctx, task := trace.NewTask(context.Background(), fmt.Sprintf("worker-%d", w))
	defer task.End()
	keep := make([][]byte, 64)
	for i := 0; time.Now().Before(deadline); i++ {
		trace.WithRegion(ctx, "batch", func() {
			for j := 0; j < allocs; j++ {
				b := make([]byte, 512+(i*31+j*17)%8192)
				b[0] = byte(j)
				keep[(i+j)%len(keep)] = b
			}
		})
		if i%64 == 0 {
			trace.Log(ctx, "progress", fmt.Sprint(i))
			sink.Store(&keep[i%len(keep)])
		}
		if rest > 0 {
			time.Sleep(rest)
		}
	}
}

func pingPong(deadline time.Time) {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	for v := 0; time.Now().Before(deadline); {
		ping <- v
		v = <-pong
		time.Sleep(100 * time.Microsecond)
	}
	close(ping)
	for range pong {
	}
}

type stwJSON struct {
	Start  int64  `json:"start"`
	End    *int64 `json:"end"`
	Reason string `json:"reason"`
}

type gcJSON struct {
	Start *int64 `json:"start"`
	End   *int64 `json:"end"`
}

type clockJSON struct {
	Trace int64  `json:"trace"`
	Wall  int64  `json:"wall"`
	Mono  uint64 `json:"mono"`
}

type summaryJSON struct {
	STW    []stwJSON   `json:"stw"`
	GC     []gcJSON    `json:"gc"`
	Clocks []clockJSON `json:"clock_snapshots"`
	Start  int64       `json:"start"`
	End    int64       `json:"end"`
	// The last event but goroutine statuses and the closing Sync: Go writes those after it
	// stopped tracing.
	TracedUntil int64  `json:"traced_until"`
	Events      uint64 `json:"events"`
	Syncs       int    `json:"syncs"`
}

const stwPrefix = "stop-the-world ("

func read(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := xtrace.NewReader(f)
	if err != nil {
		return err
	}
	s := summaryJSON{STW: []stwJSON{}, GC: []gcJSON{}, Clocks: []clockJSON{}}
	// Open pauses per goroutine (the runtime ends a pause on the goroutine that began it).
	openSTW := map[xtrace.GoID][]int{}
	openGC := -1
	// The latest time traced, and what it was before the latest Sync (the closing one, at EOF).
	var live, liveBeforeSync int64
	lastWasSync := false
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		t := int64(ev.Time())
		if s.Events == 0 {
			s.Start = t
		}
		s.End = t
		s.Events++
		lastWasSync = ev.Kind() == xtrace.EventSync
		if lastWasSync {
			liveBeforeSync = live
		}
		if !isGoStatus(ev) {
			live = t
		}
		switch ev.Kind() {
		case xtrace.EventSync:
			s.Syncs++
			if cs := ev.Sync().ClockSnapshot; cs != nil {
				s.Clocks = append(s.Clocks, clockJSON{Trace: int64(cs.Trace), Wall: cs.Wall.UnixNano(), Mono: cs.Mono})
			}
		case xtrace.EventRangeBegin, xtrace.EventRangeActive, xtrace.EventRangeEnd:
			name := ev.Range().Name
			switch {
			case strings.HasPrefix(name, stwPrefix):
				reason := strings.TrimSuffix(strings.TrimPrefix(name, stwPrefix), ")")
				g := ev.Goroutine()
				switch ev.Kind() {
				case xtrace.EventRangeBegin:
					openSTW[g] = append(openSTW[g], len(s.STW))
					s.STW = append(s.STW, stwJSON{Start: t, Reason: reason})
				case xtrace.EventRangeEnd:
					open := openSTW[g]
					if len(open) == 0 {
						return fmt.Errorf("stop-the-world end at %d without a begin on goroutine %d", t, g)
					}
					end := t
					s.STW[open[0]].End = &end
					openSTW[g] = open[1:]
				}
			case name == "GC concurrent mark phase":
				switch ev.Kind() {
				case xtrace.EventRangeBegin:
					start := t
					openGC = len(s.GC)
					s.GC = append(s.GC, gcJSON{Start: &start})
				case xtrace.EventRangeActive:
					if openGC < 0 {
						openGC = len(s.GC)
						s.GC = append(s.GC, gcJSON{})
					}
				case xtrace.EventRangeEnd:
					if openGC < 0 {
						return fmt.Errorf("GC end at %d without a begin", t)
					}
					end := t
					s.GC[openGC].End = &end
					openGC = -1
				}
			}
		}
	}
	s.TracedUntil = live
	if lastWasSync {
		s.TracedUntil = liveBeforeSync
	}
	enc := json.NewEncoder(w)
	return enc.Encode(s)
}

// isGoStatus: a goroutine's status as the trace recorded it, which Go's parser reports as a
// transition to the state it was already in (or from an unknown one).
func isGoStatus(ev xtrace.Event) bool {
	if ev.Kind() != xtrace.EventStateTransition {
		return false
	}
	st := ev.StateTransition()
	if st.Resource.Kind != xtrace.ResourceGoroutine {
		return false
	}
	from, to := st.Goroutine()
	return from == to || from == xtrace.GoUndetermined
}
