package main

import (
	"fmt"
	"log"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grafana/pyroscope-go"
)

// pyroscopeTypes are the profile types -pyroscope-profiles may name, as pyroscope-go names them.
var pyroscopeTypes = []pyroscope.ProfileType{
	pyroscope.ProfileCPU, pyroscope.ProfileGoroutines,
	pyroscope.ProfileAllocObjects, pyroscope.ProfileAllocSpace,
	pyroscope.ProfileInuseObjects, pyroscope.ProfileInuseSpace,
	pyroscope.ProfileMutexCount, pyroscope.ProfileMutexDuration,
	pyroscope.ProfileBlockCount, pyroscope.ProfileBlockDuration,
}

// pushErrors counts what pyroscope-go reported as errors (failed uploads, a full queue).
var pushErrors atomic.Int64

// pushLogger passes pyroscope-go's errors to the log and counts them; the rest is chatter.
type pushLogger struct{}

func (pushLogger) Infof(string, ...interface{})  {}
func (pushLogger) Debugf(string, ...interface{}) {}
func (pushLogger) Errorf(format string, args ...interface{}) {
	pushErrors.Add(1)
	log.Printf("pyroscope: "+format, args...)
}

// startPush starts pyroscope-go pushing the listed profile types to endpoint (it POSTs to
// endpoint/ingest), with app as the application name, every rate.
func startPush(endpoint, app string, rate time.Duration, types string) (*pyroscope.Profiler, error) {
	var chosen []pyroscope.ProfileType
	for _, t := range strings.Split(types, ",") {
		pt := pyroscope.ProfileType(strings.TrimSpace(t))
		if !slices.Contains(pyroscopeTypes, pt) {
			return nil, fmt.Errorf("-pyroscope-profiles: %q is none of %v", t, pyroscopeTypes)
		}
		chosen = append(chosen, pt)
	}
	return pyroscope.Start(pyroscope.Config{
		ApplicationName: app,
		ServerAddress:   endpoint,
		UploadRate:      rate,
		ProfileTypes:    chosen,
		Logger:          pushLogger{},
	})
}
