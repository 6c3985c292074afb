//go:build linux

package bench

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// blobTimeout bounds one push or pull of the big blob.
const blobTimeout = 15 * time.Minute

// pullResult is one tool's pull of the big blob.
type pullResult struct {
	tool    string
	seconds float64 // the faster of the rounds
	all     []float64
	peakRSS int64 // the highest of the rounds
}

// blobResult is what the big blob run measured.
type blobResult struct {
	size          int64
	ocisync, oras pullResult
	wrapperRSS    int64 // the peak of the measuring wrapper, a floor of the figures
}

// blobRounds is how often each tool pulls, alternating, so that neither
// alone profits from a warm page cache.
const blobRounds = 3

func runBlob(t *testing.T, size int64) blobResult {
	reg := registrytest.Start(t, registrytest.Options{})
	oc := registrytest.Ocisync(t)
	oc.Timeout = blobTimeout
	oras := registrytest.Oras(t)
	oras.Timeout = blobTimeout

	// On disk, not in memory: the harness must not need 1 GiB of RAM.
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "blob.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.NewChaCha8([32]byte{6}), size); err != nil {
		f.Close()
		t.Fatalf("writing the %d-byte blob: %v", size, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("bench/big", "v1")
	oc.In(src).MustRun(t, append(append([]string{"push"}, reg.OcisyncFlags("")...), ref, "blob.bin")...)

	res := blobResult{size: size, ocisync: pullResult{tool: "ocisync"}, oras: pullResult{tool: "oras"}}
	wrapper := registrytest.BuildRSSWrapper(t)
	ocBin := registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)
	orasBin := registrytest.BinaryFromEnv(t, registrytest.EnvOras)
	for round := range blobRounds {
		for _, p := range []*pullResult{&res.ocisync, &res.oras} {
			dir := filepath.Join(t.TempDir(), "out")
			var args []string
			if p.tool == "ocisync" {
				args = append(append([]string{ocBin, "pull"}, reg.OcisyncFlags("")...), ref, dir)
			} else {
				args = append(append([]string{orasBin, "pull"}, reg.OrasFlags("")...), "-o", dir, ref)
			}
			m := registrytest.RunPeakRSS(t, wrapper, blobTimeout, args...)
			secs, peak, floor := m.Seconds, m.Peak, m.Floor
			st, err := os.Stat(filepath.Join(dir, "blob.bin"))
			if err != nil || st.Size() != size {
				t.Fatalf("%s pull wrote %v (%v), want blob.bin of %d bytes", p.tool, st, err, size)
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			t.Logf("round %d: %s pull of %d MiB: %.2f s, peak RSS %.1f MiB (the wrapper's own: %.1f MiB)", round+1, p.tool, size>>20, secs, float64(peak)/mib, float64(floor)/mib)
			p.all = append(p.all, secs)
			if p.seconds == 0 || secs < p.seconds {
				p.seconds = secs
			}
			p.peakRSS = max(p.peakRSS, peak)
			res.wrapperRSS = max(res.wrapperRSS, floor)
		}
	}
	return res
}
