//go:build linux

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	wrapper := buildWrapper(t)
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
			secs, peak, floor := runMeasured(t, wrapper, args)
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

// wrapperSource is a program that runs its arguments as a command and
// writes "<the command's peak RSS> <its own peak RSS>" in bytes to the
// file of $RSS_OUT. It exists because on Linux the peak RSS in the
// rusage of a child counts its parent's peak: exec records the
// high-water mark of the memory it replaces, which with Go's vfork-style
// spawn is the parent's (the test binary's, tens of MiB with -race). The
// wrapper is small and fresh, so its child's figure is the pull's own, at
// least the wrapper's own peak, which is reported beside it. It is built
// apart, without the race detector and the test's dependencies (see also
// test/integration/volume_memory_test.go, which uses the test binary).
const wrapperSource = `package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	runtime.LockOSThread() // Pdeathsig goes with the thread that started the child
	out := os.Getenv("RSS_OUT")
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		fmt.Fprintln(os.Stderr, "rss wrapper:", err)
		os.Exit(125)
	}
	var own int64
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			own, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if err := os.WriteFile(out, fmt.Appendf(nil, "%d %d", ru.Maxrss*1024, own*1024), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "rss wrapper:", err)
		os.Exit(125)
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
`

// buildWrapper builds wrapperSource with the go command on PATH (the one
// running the tests) and returns the binary's path.
func buildWrapper(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(wrapperSource), 0o600); err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the RSS wrapper is built with the go command, which is not on PATH: %v", err)
	}
	bin := filepath.Join(dir, "rsswrap")
	cmd := exec.Command(goBin, "build", "-o", bin, "main.go")
	cmd.Dir = dir
	// Outside any module, whatever GOFLAGS the caller set.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=on", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the RSS wrapper with %s: %v\n%s", goBin, err, out)
	}
	return bin
}

// runMeasured runs args through the wrapper in a clean environment and
// returns its wall time in seconds, its peak RSS and the wrapper's own
// peak RSS in bytes.
func runMeasured(t *testing.T, wrapper string, args []string) (secs float64, peak, floor int64) {
	t.Helper()
	home := t.TempDir()
	out := filepath.Join(home, "rss")
	ctx, cancel := context.WithTimeout(t.Context(), blobTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, wrapper, args...)
	// No configuration or credentials of the machine's.
	cmd.Env = []string{"RSS_OUT=" + out, "PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"), "TMPDIR=" + home}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	secs = time.Since(start).Seconds()
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("reading the peak RSS the wrapper wrote: %v", err)
	}
	if _, err := fmt.Sscan(string(data), &peak, &floor); err != nil {
		t.Fatalf("parsing the peak RSS %q: %v", data, err)
	}
	return secs, peak, floor
}
