//go:build linux

package integration

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// Peak memory of a versioned pull: layers are streamed to disk, so it
// must stay flat however large the artifact is.
const (
	maxPeakRSS    = 64 * mib // of the 200 MiB pull
	maxPeakGrowth = 16 * mib // 200 MiB pull over 4 MiB pull
)

// bigPullTimeout bounds the push and pull of the large artifacts, which
// take seconds; DefaultTimeout of the CLI runner may be short on a slow
// disk.
const bigPullTimeout = 10 * time.Minute

// writeSizedArtifact writes total random bytes from seed under a new
// folder: four files of total/5 bytes each and a folder "tree" holding
// the last fifth in four files, which push packs as one directory layer.
// It returns the folder and the paths to push, relative to it.
func writeSizedArtifact(t testing.TB, total int64, seed uint64) (string, []string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), byte(seed >> 32)})
	part := total / 5
	var names []string
	for i := range 4 {
		names = append(names, fmt.Sprintf("file-%d.bin", i))
	}
	files := append([]string(nil), names...)
	for i := range 4 {
		files = append(files, fmt.Sprintf("tree/part-%d.bin", i))
	}
	for i, name := range files {
		size := part
		if strings.HasPrefix(name, "tree/") {
			size = part / 4
			if i == len(files)-1 {
				size = part - 3*(part/4)
			}
		}
		writeRandomFile(t, filepath.Join(src, filepath.FromSlash(name)), rng, size)
	}
	return src, append(names, "tree")
}

// writeRandomFile streams n bytes of r into a new file at path.
func writeRandomFile(t testing.TB, path string, r io.Reader, n int64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, r, n); err != nil {
		f.Close()
		t.Fatalf("writing %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// pushSized pushes a total-byte artifact (see writeSizedArtifact) with
// ocisync push and returns its folder, reference and digest.
func pushSized(t testing.TB, total int64, seed uint64) (src, ref, digest string) {
	t.Helper()
	src, paths := writeSizedArtifact(t, total, seed)
	oc := registrytest.Ocisync(t)
	oc.Timeout = bigPullTimeout
	ref = plainReg.Ref(fmt.Sprintf("it/volume-memory-%d-%d", total>>20, seed), "v1")
	res := oc.In(src).MustRun(t, append(append([]string{"push"}, plainReg.OcisyncFlags("")...), append([]string{ref}, paths...)...)...)
	digest = res.LastLine()
	if !digestRE.MatchString(digest) {
		t.Fatalf("ocisync push printed %q last, want a digest", digest)
	}
	return src, ref, digest
}

// pullPeakRSS runs `ocisync pull --layout versioned` of ref into root as a
// process of its own, through wrapper (registrytest.BuildRSSWrapper), and
// returns its peak resident set, the wrapper's own (the peak is never
// below it) and the digest it printed.
func pullPeakRSS(t testing.TB, wrapper, ref, root string) (peak, floor int64, digest string) {
	t.Helper()
	bin := registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)
	args := append(append([]string{bin, "pull", "--layout", "versioned"}, plainReg.OcisyncFlags("")...), ref, root)
	m := registrytest.RunPeakRSS(t, wrapper, bigPullTimeout, args...)
	lines := strings.Fields(m.Stdout)
	if len(lines) == 0 {
		t.Fatalf("ocisync pull printed nothing on stdout")
	}
	return m.Peak, m.Floor, lines[len(lines)-1]
}

// TestVolumePullPeakMemory pulls a 200 MiB and a 4 MiB artifact of the
// same shape (four files and a folder) with the versioned layout and
// checks that peak memory is small and does not grow with the size.
func TestVolumePullPeakMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes and pulls 200 MiB")
	}
	t.Parallel()
	wrapper := registrytest.BuildRSSWrapper(t)
	peaks := map[int64]int64{}
	for i, total := range []int64{4 * mib, 200 * mib} {
		src, ref, digest := pushSized(t, total, uint64(i)+1)
		root := filepath.Join(t.TempDir(), "volume")
		peak, floor, got := pullPeakRSS(t, wrapper, ref, root)
		if got != digest {
			t.Fatalf("pull of %d MiB printed digest %q last, want %s", total>>20, got, digest)
		}
		assertCurrent(t, root, digest, snapshot(t, src))
		peaks[total] = peak
		t.Logf("peak RSS of the %d MiB pull: %.1f MiB (the wrapper that ran it: %.1f MiB)", total>>20, float64(peak)/mib, float64(floor)/mib)
	}
	big, small := peaks[200*mib], peaks[4*mib]
	if big >= maxPeakRSS {
		t.Errorf("peak RSS of the 200 MiB pull is %.1f MiB, want under %d MiB", float64(big)/mib, maxPeakRSS/mib)
	}
	if big-small >= maxPeakGrowth {
		t.Errorf("peak RSS grew by %.1f MiB from the 4 MiB to the 200 MiB pull, want under %d MiB: memory grows with the artifact", float64(big-small)/mib, maxPeakGrowth/mib)
	}
}

// BenchmarkVolumePullPeakRSS reports the peak resident set of a versioned
// pull of 20 and 200 MiB; the two should be about equal.
func BenchmarkVolumePullPeakRSS(b *testing.B) {
	wrapper := registrytest.BuildRSSWrapper(b)
	for i, total := range []int64{20 * mib, 200 * mib} {
		b.Run(fmt.Sprintf("%dMiB", total>>20), func(b *testing.B) {
			_, ref, _ := pushSized(b, total, uint64(i)+100)
			dir := b.TempDir()
			var peak int64
			n := 0
			for b.Loop() {
				n++
				root := filepath.Join(dir, fmt.Sprint(n))
				p, _, _ := pullPeakRSS(b, wrapper, ref, root)
				peak = max(peak, p)
				// Keep disk use to one copy at a time.
				b.StopTimer()
				if err := os.RemoveAll(root); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.SetBytes(total)
			b.ReportMetric(float64(peak)/mib, "peak-RSS-MiB")
		})
	}
}
