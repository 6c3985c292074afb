package cli

import (
	"errors"
	"io/fs"
	"math"
	"runtime/debug"
	"testing"
)

func TestCgroupMemoryLimit(t *testing.T) {
	v1NoLimit := "9223372036854771712\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		ok    bool
	}{
		{"v2 limit", map[string]string{"/sys/fs/cgroup/memory.max": "268435456\n"}, 268435456, true},
		{"v2 no limit", map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, 0, false},
		{"v1 limit", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "134217728\n"}, 134217728, true},
		{"v1 no limit", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": v1NoLimit}, 0, false},
		{"no cgroup files", map[string]string{}, 0, false},
		{"garbage", map[string]string{"/sys/fs/cgroup/memory.max": "lots"}, 0, false},
		{"zero", map[string]string{"/sys/fs/cgroup/memory.max": "0"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := cgroupMemoryLimit(fakeFiles(tc.files))
			if got != tc.want || ok != tc.ok {
				t.Errorf("cgroupMemoryLimit = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestTuneMemory(t *testing.T) {
	// tuneMemory sets the process's own GC settings: restore them.
	t.Cleanup(func() {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	})
	limited := fakeFiles(map[string]string{"/sys/fs/cgroup/memory.max": "100000000"})
	for _, tc := range []struct {
		name      string
		env       map[string]string
		wantGC    int
		wantLimit int64
	}{
		{"nothing set, limited", nil, managerGCPercent, 90000000},
		{"GOGC set", map[string]string{"GOGC": "200"}, -1, 90000000},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "64MiB"}, managerGCPercent, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			gc, limit := tuneMemory(func(k string) string { return tc.env[k] }, limited)
			if gc != tc.wantGC || limit != tc.wantLimit {
				t.Fatalf("tuneMemory = %d, %d; want %d, %d", gc, limit, tc.wantGC, tc.wantLimit)
			}
			// What it said is what the runtime now has.
			if tc.wantGC >= 0 {
				if got := debug.SetGCPercent(100); got != tc.wantGC {
					t.Errorf("GC percent is %d, want %d", got, tc.wantGC)
				}
			}
			if tc.wantLimit >= 0 {
				if got := debug.SetMemoryLimit(-1); got != tc.wantLimit {
					t.Errorf("memory limit is %d, want %d", got, tc.wantLimit)
				}
			}
		})
	}
	// No cgroup limit: no soft limit either.
	if _, limit := tuneMemory(func(string) string { return "" }, fakeFiles(nil)); limit != -1 {
		t.Errorf("without a cgroup limit tuneMemory set a soft limit of %d", limit)
	}
}

func fakeFiles(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, errors.Join(fs.ErrNotExist)
	}
}
