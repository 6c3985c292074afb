package cli

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// managerGCPercent is the manager's GOGC unless the environment sets one.
// Its live heap is mostly the cache, which lives as long as the process;
// Go's default of 100 lets the heap reach twice that before collecting,
// and the peak, not the average, is what a memory limit must cover. At
// 50 the peak is about 1.5 times the cache for a little more GC CPU,
// which the manager, waiting on the API server most of the time, has.
const managerGCPercent = 50

// memoryLimitShare is the share of the container's memory limit that the
// manager sets as its soft limit (GOMEMLIMIT) when the environment sets
// none: near the limit the collector works harder instead of letting the
// kernel kill the Pod.
const memoryLimitShare = 0.9

// cgroupMemoryFiles are where cgroup v2 and v1 publish the memory limit
// of the process's cgroup, as seen from inside a container.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// tuneMemory applies the manager's GC settings and returns what it did,
// for the start-up log: GOGC and GOMEMLIMIT from the environment win.
func tuneMemory(getenv func(string) string, readFile func(string) ([]byte, error)) (gcPercent int, limit int64) {
	gcPercent, limit = -1, -1
	if getenv("GOGC") == "" {
		gcPercent = managerGCPercent
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		if l, ok := cgroupMemoryLimit(readFile); ok {
			limit = int64(float64(l) * memoryLimitShare)
			debug.SetMemoryLimit(limit)
		}
	}
	return gcPercent, limit
}

// cgroupMemoryLimit reads the first of cgroupMemoryFiles that holds a
// limit. "max" (v2) and v1's page-rounded maximum mean none.
func cgroupMemoryLimit(readFile func(string) ([]byte, error)) (int64, bool) {
	for _, f := range cgroupMemoryFiles {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		v, err := strconv.ParseInt(s, 10, 64)
		// v1 reports "no limit" as the largest page-aligned int64.
		if err != nil || v <= 0 || v >= math.MaxInt64&^0xfff {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// osMemoryTuning is tuneMemory on the real environment and files.
func osMemoryTuning() (int, int64) { return tuneMemory(os.Getenv, os.ReadFile) }
