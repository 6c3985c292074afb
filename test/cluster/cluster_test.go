package clustertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envHelper makes the test binary a cluster owner that the tests kill: it
// starts a cluster, prints "UP NAME STATE" and waits.
const envHelper = "OCISYNC_CLUSTERTEST_OWNER"

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "1" {
		c, err := Up(context.Background(), Options{PVs: 1, Log: os.Stderr})
		if err != nil {
			fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " | "))
			os.Exit(1)
		}
		fmt.Println("UP", c.Name, c.State)
		// Waits to be killed; a bare select{} would end the process as a
		// deadlock, not by the test's SIGKILL.
		time.Sleep(24 * time.Hour)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// startOwner starts a process that starts a cluster, and returns it with
// the cluster's name and state folder once the cluster is up.
func startOwner(t *testing.T) (*exec.Cmd, string, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "UP" {
		t.Fatalf("the cluster owner did not start a cluster: %q (%v)", line, err)
	}
	return cmd, f[1], f[2]
}

// leftovers lists what of the cluster name with state folder state still
// exists on the machine: processes, mounts, the namespace, cgroups, the
// socket and state folders.
func leftovers(t *testing.T, name, state string) []string {
	t.Helper()
	var left []string
	if _, err := os.Stat("/var/run/netns/" + name); err == nil {
		left = append(left, "network namespace "+name)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), state+"/") {
			left = append(left, "process "+filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], state+"/") {
			left = append(left, "mount "+f[4])
		}
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/ocisync-" + name)
	if v2, _ := filepath.Glob("/sys/fs/cgroup/ocisync-" + name); len(v2) > 0 {
		cgroups = append(cgroups, v2...)
	}
	for _, c := range cgroups {
		left = append(left, "cgroup "+c)
	}
	if _, err := os.Stat(state); err == nil {
		left = append(left, "state folder "+state)
	}
	if _, err := os.Lstat(filepath.Join(os.TempDir(), "ocisync-clusters", name)); err == nil {
		left = append(left, "reap link for "+name)
	}
	return left
}

// killOwner SIGKILLs the owner and checks that this is what ended it: an
// owner that had already exited would prove nothing.
func killOwner(t *testing.T, owner *exec.Cmd) {
	t.Helper()
	if err := owner.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = owner.Wait()
	if ws, ok := owner.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the cluster owner was not running when it was killed: %v", owner.ProcessState)
	}
}

// waitGone waits until nothing of the cluster is left.
func waitGone(t *testing.T, name, state string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := leftovers(t, name, state)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, cluster %s left:\n%s", timeout, name, strings.Join(left, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestKilledOwner kills the process that owns a cluster, as CI's timeout
// or a Ctrl-C in the wrong place would: its watchdog must stop the cluster
// and leave nothing behind. Then it kills an owner and its watchdog too:
// the next Up must clear what they left.
func TestKilledOwner(t *testing.T) {
	if os.Getenv("CLUSTER_KUBELET") == "" {
		t.Fatalf("CLUSTER_KUBELET is not set: run make test, which builds the cluster's binaries and sets CLUSTER_*")
	}
	t.Run("watchdog", func(t *testing.T) {
		owner, name, state := startOwner(t)
		if left := leftovers(t, name, state); len(left) < 3 {
			t.Fatalf("a running cluster should show in leftovers, got %v", left)
		}
		killOwner(t, owner)
		waitGone(t, name, state, 90*time.Second)
	})

	t.Run("reap", func(t *testing.T) {
		owner, name, state := startOwner(t)
		b, err := os.ReadFile(filepath.Join(state, "run", "watchdog.pid"))
		if err != nil {
			t.Fatal(err)
		}
		watchdog, err := strconv.Atoi(strings.Fields(string(b))[0])
		if err != nil {
			t.Fatal(err)
		}
		_ = syscall.Kill(watchdog, syscall.SIGKILL)
		killOwner(t, owner)
		time.Sleep(2 * time.Second)
		if left := leftovers(t, name, state); len(left) < 3 {
			t.Fatalf("with its watchdog killed too, the cluster should still run; left: %v", left)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		c, err := Up(ctx, Options{PVs: 1})
		if err != nil {
			t.Fatal(err)
		}
		// The new cluster works: its node is Ready.
		out, err := c.Command(ctx, c.Kubectl, "--kubeconfig", c.Kubeconfig, "get", "node", c.Name,
			"-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`).CombinedOutput()
		if err != nil || string(out) != "True" {
			t.Errorf("node %s Ready: %q (%v)", c.Name, out, err)
		}
		waitGone(t, name, state, 10*time.Second)
		if err := c.Down(); err != nil {
			t.Fatal(err)
		}
		waitGone(t, c.Name, c.State, 10*time.Second)
	})
}

// clusterTraces lists what test clusters leave on the machine: network
// namespaces, state folders, cgroups and processes of any test cluster.
func clusterTraces(t *testing.T) []string {
	t.Helper()
	var traces []string
	for _, pattern := range []string{
		"/var/run/netns/ocisync-e2e-*",
		filepath.Join(os.TempDir(), "ocisync-cluster-*"),
		"/sys/fs/cgroup/*/ocisync-ocisync-e2e-*",
		"/sys/fs/cgroup/ocisync-ocisync-e2e-*",
	} {
		m, _ := filepath.Glob(pattern)
		traces = append(traces, m...)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), filepath.Join(os.TempDir(), "ocisync-cluster-")) {
			traces = append(traces, "process "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return traces
}

// TestFailedStart starts a cluster that cannot start (no sandbox image):
// Up fails with a message that says why and what to do, and leaves
// nothing behind.
func TestFailedStart(t *testing.T) {
	if os.Getenv("CLUSTER_KUBELET") == "" {
		t.Fatalf("CLUSTER_KUBELET is not set: run make test, which builds the cluster's binaries and sets CLUSTER_*")
	}
	before := clusterTraces(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Up(ctx, Options{Images: t.TempDir(), PVs: 1})
	if err == nil {
		_ = c.Down()
		t.Fatal("a cluster without a pause image started")
	}
	if !strings.Contains(err.Error(), "no OCI layout") || !strings.Contains(err.Error(), "make cluster-images") {
		t.Errorf("the error does not say what is missing and what to do:\n%v", err)
	}
	if after := clusterTraces(t); len(after) > len(before) {
		t.Errorf("a failed start left:\nbefore: %v\nafter:  %v", before, after)
	}
}

// TestNodeDepsNeedsRoot runs the host check as an unprivileged user, as
// make test on a machine without root would: it must fail with one line
// that says what is missing and what to do, not skip.
func TestNodeDepsNeedsRoot(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to run the check as another user: %v", err)
	}
	script := filepath.Join(filepath.Dir(Script()), "node-deps.sh")
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", script, "--check")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("hack/node-deps.sh --check as nobody: %v, want exit code 1\n%s", err, out)
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "needs root") || !strings.Contains(msg, "run make test as root") {
		t.Errorf("want one line saying root is needed and what to do, got:\n%s", msg)
	}
}
