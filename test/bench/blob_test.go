//go:build linux

package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// blobTimeout bounds one push or pull of the big blob.
const blobTimeout = 15 * time.Minute

// pullResult is one tool's pulls of one shape.
type pullResult struct {
	tool    string
	seconds float64 // the median of the rounds
	all     []float64
	peakRSS int64 // the highest of the rounds
}

// blobResult is what the pull run measured for one shape of artifact.
type blobResult struct {
	shape         string  // how the report names it
	sizes         []int64 // the layers' sizes
	ocisync, oras pullResult
	ratios        []float64 // ocisync's time over oras's, round by round
	wrapperRSS    int64     // the peak of the measuring wrapper, a floor of the figures
}

func (r blobResult) size() int64 {
	var n int64
	for _, s := range r.sizes {
		n += s
	}
	return n
}

// blobRounds is how often each tool pulls, alternating, so that neither
// alone profits from a warm page cache; the medians count.
const blobRounds = 5

// multiLayerShape is the layers of the many-layer shape in MiB for a
// 1 GiB single layer (issue 11: 200 MiB in 5 layers), scaled with it.
var multiLayerShape = []int64{64, 48, 40, 32, 16}

// pullShapes is the single layer of size and the many-layer shape.
func pullShapes(size int64) [][]int64 {
	multi := make([]int64, len(multiLayerShape))
	for i, m := range multiLayerShape {
		multi[i] = max(m*size/1024, 1)
	}
	return [][]int64{{size}, multi}
}

// runBlob pushes one artifact of the layers sizes (random data, one file
// each) and pulls it into an empty folder with ocisync and oras in turn.
func runBlob(t *testing.T, sizes []int64) blobResult {
	reg := registrytest.Start(t, registrytest.Options{})
	oc := registrytest.Ocisync(t)
	oc.Timeout = blobTimeout
	oras := registrytest.Oras(t)
	oras.Timeout = blobTimeout

	// On disk, not in memory: the harness must not need 1 GiB of RAM.
	src := t.TempDir()
	var names []string
	for i, size := range sizes {
		name := fmt.Sprintf("blob-%d.bin", i)
		f, err := os.Create(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(f, rand.NewChaCha8([32]byte{6, byte(i)}), size); err != nil {
			f.Close()
			t.Fatalf("writing the %d-byte blob: %v", size, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	ref := reg.Ref("bench/big", fmt.Sprintf("layers-%d", len(sizes)))
	oc.In(src).MustRun(t, append(append(append([]string{"push"}, reg.OcisyncFlags("")...), ref), names...)...)

	res := blobResult{sizes: sizes, ocisync: pullResult{tool: "ocisync"}, oras: pullResult{tool: "oras"}}
	res.shape = fmt.Sprintf("one %d MiB layer", sizes[0]>>20)
	if len(sizes) > 1 {
		var mibs []string
		for _, s := range sizes {
			mibs = append(mibs, strconv.FormatInt(s>>20, 10))
		}
		res.shape = fmt.Sprintf("%d MiB in %d layers (%s MiB)", res.size()>>20, len(sizes), strings.Join(mibs, ", "))
	}
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
			for i, name := range names {
				st, err := os.Stat(filepath.Join(dir, name))
				if err != nil || st.Size() != sizes[i] {
					t.Fatalf("%s pull wrote %v (%v), want %s of %d bytes", p.tool, st, err, name, sizes[i])
				}
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			t.Logf("round %d: %s pull of %s: %.2f s, peak RSS %.1f MiB (the wrapper's own: %.1f MiB)", round+1, p.tool, res.shape, secs, float64(peak)/mib, float64(floor)/mib)
			p.all = append(p.all, secs)
			p.peakRSS = max(p.peakRSS, peak)
			res.wrapperRSS = max(res.wrapperRSS, floor)
		}
		res.ratios = append(res.ratios, res.ocisync.all[round]/res.oras.all[round])
	}
	res.ocisync.seconds, res.oras.seconds = median(res.ocisync.all), median(res.oras.all)
	return res
}

// median of v, which it sorts.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
