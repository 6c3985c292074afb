//go:build linux

// Package demo tests `make demo`: the program of hack/demo, built with go
// build and run as the Makefile runs it (from the repository's root, with
// the environment of `make test-env`), and that it leaves no process and no
// file behind, whether it stops by itself or on Ctrl-C. Linux only: it
// finds leftover processes through /proc.
package demo

import (
	"bufio"
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// runTimeout bounds one run of the demo; reaching Ready takes seconds.
const runTimeout = 5 * time.Minute

// readyLine starts the line the demo prints once every Artifact is Ready.
const readyLine = "The demo is ready."

var (
	pushedDigest = regexp.MustCompile(`(?m)^sha256:[0-9a-f]{64}$`)
	tableHeader  = regexp.MustCompile(`(?m)^NAME\s+READY\s+DIGEST\s+REFERENCE\s+STATUS\s+AGE$`)
	tableRow     = regexp.MustCompile(`(?m)^app-config\s+True\s+([0-9a-f]{12})\s+127\.0\.0\.1:\d+/team/app-config:v1\s`)
	workDir      = regexp.MustCompile(`everything runs on this machine, in (\S+), until Ctrl-C`)
)

func TestDemo(t *testing.T) {
	bin := buildDemo(t)

	t.Run("exits when ready", func(t *testing.T) {
		// --kubectl= prints through the API whether or not this machine
		// has kubectl, so that the table's layout is known.
		r := startDemo(t, bin, "--exit-when-ready", "--kubectl=")
		code := r.wait(t)
		out := r.stdout()
		if code != 0 {
			t.Fatalf("the demo exited %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, r.stderr.String())
		}
		digest := pushedDigest.FindString(out)
		if digest == "" {
			t.Fatalf("the demo printed no digest from ocisync push:\n%s", out)
		}
		if !tableHeader.MatchString(out) {
			t.Errorf("the demo printed no kubectl get artifacts -o wide header:\n%s", out)
		}
		if m := tableRow.FindStringSubmatch(out); m == nil {
			t.Errorf("the demo printed no Ready row for app-config:\n%s", out)
		} else if want := strings.TrimPrefix(digest, "sha256:")[:12]; m[1] != want {
			t.Errorf("the table shows digest %s, want %s, the pushed one", m[1], want)
		}
		cm := printedConfigMap(t, out)
		if got := cm.Annotations[ocisyncv1alpha1.AnnotationDigest]; got != digest {
			t.Errorf("the printed ConfigMap holds digest %q, want %s, the pushed one", got, digest)
		}
		if keys := slices.Sorted(maps.Keys(cm.Data)); !slices.Equal(keys, []string{"app.yaml", "rules.yaml"}) {
			t.Errorf("the printed ConfigMap holds %v, want the pushed app.yaml and rules.yaml", keys)
		}
		if !strings.Contains(cm.Data["app.yaml"], "replicas: 2") {
			t.Errorf("the printed ConfigMap's app.yaml is %q, want the pushed file", cm.Data["app.yaml"])
		}
		if !strings.HasSuffix(strings.TrimSpace(out), "Stopped.") {
			t.Errorf("the demo's output should end with Stopped.:\n%s", out)
		}
		r.expectNothingLeft(t)
	})

	t.Run("stops on Ctrl-C", func(t *testing.T) {
		// Run exactly as make demo does: no flags.
		r := startDemo(t, bin)
		r.waitFor(t, regexp.MustCompile(`^`+regexp.QuoteMeta(readyLine)))
		// What the leak check below looks for is there while it runs.
		var names []string
		for _, p := range processesUsing(t, r.tmp) {
			names = append(names, p.name)
		}
		for _, want := range []string{"etcd", "kube-apiserver", "registry", "ocisync"} {
			if !slices.Contains(names, want) {
				t.Fatalf("no running %s found with %s in its command line (found %v)", want, r.tmp, names)
			}
		}

		// The two commands the demo offers to try: edit a file, push it.
		out := r.stdout()
		var try []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "  echo ") || strings.HasPrefix(l, "  bin/ocisync push ") {
				try = append(try, strings.TrimSpace(l))
			}
		}
		if len(try) != 2 {
			t.Fatalf("want an echo and an ocisync push command to try, found %q in:\n%s", try, out)
		}
		sh := exec.Command("sh", "-ec", strings.Join(try, "\n"))
		sh.Dir = r.cmd.Dir
		sh.Env = append(os.Environ(), "HOME="+t.TempDir())
		pushed, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("the commands the demo prints failed: %v\n%s\n%s", err, strings.Join(try, "\n"), pushed)
		}
		digest := pushedDigest.FindString(string(pushed))
		if digest == "" {
			t.Fatalf("ocisync push printed no digest:\n%s", pushed)
		}
		r.waitFor(t, regexp.MustCompile(`artifact/app-config: synced the new digest `+digest+`$`))
		r.waitFor(t, regexp.MustCompile(`^\s+color: blue$`))

		// A Ctrl-C in a terminal signals the whole foreground process group.
		if err := syscall.Kill(-r.cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Fatalf("sending SIGINT to the demo's process group: %v", err)
		}
		code := r.wait(t)
		if code != 0 {
			t.Fatalf("the demo exited %d after SIGINT, want 0\nstdout:\n%s\nstderr:\n%s", code, r.stdout(), r.stderr.String())
		}
		if !strings.HasSuffix(strings.TrimSpace(r.stdout()), "Stopped.") {
			t.Errorf("the demo's output should end with Stopped.:\n%s", r.stdout())
		}
		r.expectNothingLeft(t)
	})
}

// buildDemo builds hack/demo into a temporary folder, as make demo builds
// it into bin/.
func buildDemo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ocisync-demo")
	cmd := exec.Command("go", "build", "-o", bin, "./hack/demo")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./hack/demo: %v\n%s", err, out)
	}
	return bin
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run is one running demo.
type run struct {
	cmd    *exec.Cmd
	tmp    string // its TMPDIR, empty before it starts
	lines  chan string
	seen   []string
	stderr bytes.Buffer
	done   chan struct{}
	code   int
	// deadline bounds the whole run.
	deadline time.Time
}

// startDemo runs the demo as make demo does, from the repository's root
// with the tools of make test-env, but with a TMPDIR of its own, so that
// the test can tell what it leaves behind. It is killed in t.Cleanup if it
// still runs.
func startDemo(t *testing.T, bin string, args ...string) *run {
	t.Helper()
	// Fail now, with make test's instructions, when a tool is missing.
	registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)
	registrytest.BinaryFromEnv(t, registrytest.EnvRegistry)
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatalf("KUBEBUILDER_ASSETS is not set: run make test, which builds etcd and kube-apiserver and sets it")
	}
	r := &run{tmp: t.TempDir(), lines: make(chan string, 10000), done: make(chan struct{}), deadline: time.Now().Add(runTimeout)}
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "TMPDIR", "HOME", "KUBECONFIG":
			continue
		}
		env = append(env, kv)
	}
	r.cmd = exec.Command(bin, args...)
	r.cmd.Dir = repoRoot(t)
	env = append(env, "TMPDIR="+r.tmp, "HOME="+t.TempDir())
	r.cmd.Env = env
	r.cmd.Stderr = &r.stderr
	// A process group of its own, as a shell gives a job: the test can
	// signal it as a terminal does, and kill it whole.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
		// Only now: Wait closes the pipe, which may lose unread output.
		err := r.cmd.Wait()
		r.code = r.cmd.ProcessState.ExitCode()
		if err != nil && r.code == 0 {
			r.code = -1
		}
		close(r.done)
	}()
	// Whatever happened, nothing outlives the test.
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			for range r.lines {
			}
			<-r.done
		}
		// What it started has process groups of their own.
		for _, p := range processesUsing(t, r.tmp) {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	})
	return r
}

// waitFor reads the demo's output until a line matches re, failing t when
// the demo exits or runTimeout passes first.
func (r *run) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	timeout := time.NewTimer(time.Until(r.deadline))
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				<-r.done
				t.Fatalf("the demo exited (%d) before printing a line matching %s\nstdout:\n%s\nstderr:\n%s", r.code, re, r.stdout(), r.stderr.String())
			}
			r.seen = append(r.seen, l)
			if re.MatchString(l) {
				return l
			}
		case <-timeout.C:
			t.Fatalf("the demo printed no line matching %s within %s\nstdout:\n%s\nstderr:\n%s", re, runTimeout, r.stdout(), r.stderr.String())
		}
	}
}

// wait waits for the demo to exit, reading the rest of its output, and
// returns its exit code.
func (r *run) wait(t *testing.T) int {
	t.Helper()
	timeout := time.NewTimer(time.Until(r.deadline))
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				<-r.done
				return r.code
			}
			r.seen = append(r.seen, l)
		case <-timeout.C:
			t.Fatalf("the demo did not exit within %s\nstdout:\n%s\nstderr:\n%s", runTimeout, r.stdout(), r.stderr.String())
		}
	}
}

// stdout is what the demo printed so far, as far as the test has read.
func (r *run) stdout() string {
	return strings.Join(r.seen, "\n")
}

// expectNothingLeft checks, after the demo exited, that no process it
// started runs and that it removed every file it made.
func (r *run) expectNothingLeft(t *testing.T) {
	t.Helper()
	if procs := processesUsing(t, r.tmp); len(procs) > 0 {
		t.Errorf("processes left running after the demo exited: %+v", procs)
	}
	entries, err := os.ReadDir(r.tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files left in the demo's TMPDIR %s after it exited: %v", r.tmp, names)
	}
	m := workDir.FindStringSubmatch(r.stdout())
	if m == nil {
		t.Fatalf("the demo did not say which folder it works in:\n%s", r.stdout())
	}
	if !strings.HasPrefix(m[1], r.tmp+string(filepath.Separator)) {
		t.Errorf("the demo worked in %s, not under its TMPDIR %s", m[1], r.tmp)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the demo's folder %s is still there (stat: %v)", m[1], err)
	}
}

// proc is a running process.
type proc struct {
	pid  int
	name string // base name of its executable, as in its command line
	args string
}

// processesUsing returns the processes whose command line mentions dir:
// everything the demo starts names a file in its folder (a data folder,
// a config file or a kubeconfig), and the folder lies under the TMPDIR the
// test gives it.
func processesUsing(t *testing.T, dir string) []proc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("listing processes: %v", err)
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone, or a zombie
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		line := strings.Join(args, " ")
		if strings.Contains(line, dir+string(filepath.Separator)) {
			out = append(out, proc{pid: pid, name: filepath.Base(args[0]), args: line})
		}
	}
	return out
}

// printedConfigMap decodes the ConfigMap the demo printed after `$ kubectl
// get configmap NAME -o yaml`, up to the next empty line.
func printedConfigMap(t *testing.T, out string) *corev1.ConfigMap {
	t.Helper()
	_, rest, ok := strings.Cut(out, "$ kubectl get configmap app-config -o yaml\n")
	if !ok {
		t.Fatalf("the demo did not print the ConfigMap:\n%s", out)
	}
	doc, _, _ := strings.Cut(rest, "\n\n")
	cm := &corev1.ConfigMap{}
	if err := yaml.UnmarshalStrict([]byte(doc), cm); err != nil {
		t.Fatalf("decoding the printed ConfigMap: %v\n%s", err, doc)
	}
	if cm.Kind != "ConfigMap" || cm.Name != "app-config" {
		t.Fatalf("the demo printed %s %s, want ConfigMap app-config", cm.Kind, cm.Name)
	}
	return cm
}
