// Package clustertest starts the real one-node Kubernetes cluster of
// hack/cluster.sh for the cluster suite (test/e2e-cluster): a kubelet,
// containerd and runc running real Pods, with the control plane, all inside a
// network namespace of the cluster's own.
//
// A test reaches the cluster from inside that namespace: Up starts the
// cluster from the host, and RunInside runs the test binary again inside
// the namespace, where the API server, the cluster registry and the Pods'
// addresses are all local. The cluster belongs to the process that called
// Up: a watchdog stops it when that process dies, however it dies, and the
// next Up stops any cluster whose owner is gone.
package clustertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// Environment of a process that RunInside started, read by FromEnv.
const (
	EnvState = "OCISYNC_CLUSTER_STATE"
	EnvName  = "OCISYNC_CLUSTER_NAME"
)

// Addresses inside the cluster's network namespace (hack/cluster.sh).
const (
	// NodeIP is the node's address, on the Pods' bridge.
	NodeIP = "10.244.0.1"
	// Registry is the cluster registry, plain HTTP without authentication,
	// as Pods and the node reach it.
	Registry = NodeIP + ":5000"
)

// Cluster is a running cluster.
type Cluster struct {
	// Name is the network namespace's and the node's name.
	Name string
	// State is the folder of everything the cluster writes.
	State string
	// Kubeconfig is the admin kubeconfig, valid inside the namespace.
	Kubeconfig string
	// Kubectl is kubectl of the cluster's version.
	Kubectl string
	// Started is how long Up took.
	Started time.Duration
	// lock is held while the cluster runs (see Up).
	lock *os.File
}

// Options configures Up.
type Options struct {
	// Images is the folder of OCI layouts to push to the cluster registry,
	// one per repository (hack/cluster.sh's CLUSTER_IMAGES); empty means
	// $CLUSTER_IMAGES.
	Images string
	// PVs is the number of local PersistentVolumes (StorageClass "local");
	// 0 means hack/cluster.sh's default.
	PVs int
	// Log receives hack/cluster.sh's progress; nil means os.Stderr.
	Log *os.File
}

// Script is hack/cluster.sh.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "hack", "cluster.sh")
}

// Up starts a new cluster owned by this process, with a fresh name and
// state folder under the temporary folder; clusters that killed tests left
// behind are stopped first. On failure nothing is left running, and the
// error carries the script's last lines (the cluster's logs stay in the
// state folder it names).
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the cluster suite needs root (network namespaces, mounts, cgroups): run make test as root")
	}
	// One test cluster at a time on a machine: the kubelet shares a few
	// fixed host paths, and two clusters on two cores would slow each
	// other past their timeouts. The lock goes with this process.
	lock, err := lockClusters(ctx)
	if err != nil {
		return nil, err
	}
	state, err := os.MkdirTemp("", "ocisync-cluster-")
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("creating the cluster state folder: %w", err)
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	c := &Cluster{
		Name:       "ocisync-e2e-" + hex.EncodeToString(suffix),
		State:      state,
		Kubeconfig: filepath.Join(state, "kubeconfig"),
		Kubectl:    filepath.Join(state, "bin", "kubectl"),
		lock:       lock,
	}
	env := []string{fmt.Sprintf("CLUSTER_OWNER_PID=%d", os.Getpid()), "CLUSTER_TEMPORARY=1"}
	if opts.Images != "" {
		env = append(env, "CLUSTER_IMAGES="+opts.Images)
	}
	if opts.PVs > 0 {
		env = append(env, fmt.Sprintf("CLUSTER_PVS=%d", opts.PVs))
	}
	start := time.Now()
	if err := c.script(ctx, opts.Log, env, "up"); err != nil {
		// The script stops what it started when it fails, but not when it
		// is killed (ctx) or fails its checks before starting anything:
		// down clears either, and then the state folder can go too.
		downCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if downErr := c.script(downCtx, opts.Log, nil, "down"); downErr == nil {
			_ = os.RemoveAll(state)
		} else {
			err = fmt.Errorf("%w; stopping what it had started failed too: %v", err, downErr)
		}
		lock.Close()
		return nil, err
	}
	c.Started = time.Since(start)
	return c, nil
}

// Down stops the cluster and removes its state folder. It fails, keeping
// the folder, if anything is left: a process, a mount, the namespace or a
// cgroup.
func (c *Cluster) Down() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	defer c.lock.Close()
	if err := c.script(ctx, nil, nil, "down"); err != nil {
		return err
	}
	if _, err := os.Stat(c.State); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hack/cluster.sh down kept the cluster's state folder %s (%v)", c.State, err)
	}
	return nil
}

// lockClusters takes the machine's test cluster lock, waiting until ctx
// ends for another test's cluster to stop.
func lockClusters(ctx context.Context) (*os.File, error) {
	dir := filepath.Join(os.TempDir(), "ocisync-clusters")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the test cluster lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waited for another test's cluster to stop (lock %s): %w", f.Name(), ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// script runs hack/cluster.sh CMD for c, its output to log (or stderr)
// and, on failure, its last lines into the error.
func (c *Cluster) script(ctx context.Context, log *os.File, env []string, cmd string) error {
	if log == nil {
		log = os.Stderr
	}
	var tail tailBuffer
	run := exec.CommandContext(ctx, "bash", Script(), cmd)
	run.Env = append(os.Environ(), append(env, "CLUSTER_STATE="+c.State, "CLUSTER_NAME="+c.Name)...)
	run.Stdout = log
	run.Stderr = io.MultiWriter(log, &tail)
	// Its own process group, so that a Ctrl-C meant for the test does not
	// cut a clean stop short; Cancel then ends the whole group.
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	run.Cancel = func() error { return syscall.Kill(-run.Process.Pid, syscall.SIGKILL) }
	if err := run.Run(); err != nil {
		return fmt.Errorf("hack/cluster.sh %s (cluster %s, state %s): %w\n%s", cmd, c.Name, c.State, err, tail.String())
	}
	return nil
}

// Env is the environment that tells a process inside the namespace about
// the cluster (FromEnv), with KUBECONFIG set for kubectl.
func (c *Cluster) Env() []string {
	return []string{EnvState + "=" + c.State, EnvName + "=" + c.Name, "KUBECONFIG=" + c.Kubeconfig}
}

// Command returns a command that runs name inside the cluster's network
// namespace, with the cluster's environment (Env).
func (c *Cluster) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/var/run/netns/" + c.Name, name}, args...)...)
	cmd.Env = append(os.Environ(), c.Env()...)
	return cmd
}

// RunInside runs this test binary again, with args, inside the cluster's
// namespace, its output on ours, and returns its exit code. The child dies
// with this process.
func (c *Cluster) RunInside(args []string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding the test binary: %w", err)
	}
	cmd := c.Command(context.Background(), self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("running the tests inside cluster %s: %w", c.Name, err)
	}
	return 0, nil
}

// FromEnv returns the cluster this process runs inside of (see RunInside),
// or false outside any.
func FromEnv() (*Cluster, bool) {
	state, name := os.Getenv(EnvState), os.Getenv(EnvName)
	if state == "" || name == "" {
		return nil, false
	}
	return &Cluster{
		Name:       name,
		State:      state,
		Kubeconfig: filepath.Join(state, "kubeconfig"),
		Kubectl:    filepath.Join(state, "bin", "kubectl"),
	}, true
}

// VolumePath is the host folder of the local PersistentVolume local-pv-N.
func (c *Cluster) VolumePath(n int) string {
	return filepath.Join(c.State, "volumes", fmt.Sprintf("pv%d", n))
}

// LogsDir holds the cluster components' logs.
func (c *Cluster) LogsDir() string { return filepath.Join(c.State, "logs") }

// tailBuffer keeps the last lines written to it.
type tailBuffer struct{ buf bytes.Buffer }

const tailBytes = 4096

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.buf.Len() > 2*tailBytes {
		b := t.buf.Bytes()[t.buf.Len()-tailBytes:]
		t.buf = *bytes.NewBuffer(append([]byte(nil), b...))
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	b := t.buf.Bytes()
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
	}
	return string(b)
}
