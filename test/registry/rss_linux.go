//go:build linux

package registrytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// wrapperSource is a program that runs its arguments as a command and
// writes "<the command's peak RSS> <its own peak RSS>" in bytes to the
// file of $RSS_OUT. It exists because on Linux the peak RSS in the
// rusage of a child counts its parent's peak: exec records the
// high-water mark of the memory it replaces, which with Go's vfork-style
// spawn is the parent's (the test binary's, tens of MiB with -race). The
// wrapper is small and fresh, so its child's figure is the pull's own, at
// least the wrapper's own peak, which is reported beside it. It is built
// apart, without the race detector and the test's dependencies.
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

// BuildRSSWrapper builds the program of wrapperSource with the go command
// on PATH (the one running the tests) under t.TempDir() and returns its
// path, for RunPeakRSS.
func BuildRSSWrapper(t T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(wrapperSource), 0o600); err != nil {
		t.Fatalf("writing the RSS wrapper's source: %v", err)
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

// Measured is one command run through the RSS wrapper.
type Measured struct {
	Seconds float64 // wall time
	Peak    int64   // the command's peak RSS in bytes
	Floor   int64   // the wrapper's own peak RSS: Peak is never below it
	Stdout  string
}

// RunPeakRSS runs args (the command's absolute path first) through the
// wrapper of BuildRSSWrapper in a clean environment (no configuration or
// credentials of the machine's), failing t unless it exits 0 within
// timeout.
func RunPeakRSS(t T, wrapper string, timeout time.Duration, args ...string) Measured {
	t.Helper()
	home := t.TempDir()
	out := filepath.Join(home, "rss")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, wrapper, args...)
	cmd.Env = []string{"RSS_OUT=" + out, "PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"), "TMPDIR=" + home}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	m := Measured{Seconds: time.Since(start).Seconds(), Stdout: stdout.String()}
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("reading the peak RSS the wrapper wrote: %v", err)
	}
	if _, err := fmt.Sscan(string(data), &m.Peak, &m.Floor); err != nil {
		t.Fatalf("parsing the peak RSS %q: %v", data, err)
	}
	return m
}
