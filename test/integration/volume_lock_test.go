//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// TestVolumePullWaitsForLock holds the volume lock in this process the way
// another pull would: a pull into the same folder waits for it until its
// --timeout ends, changing nothing, and goes ahead once it is released.
func TestVolumePullWaitsForLock(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	fx := newFixture(t)
	ref := reg.Ref(repoName(t), "v1")
	digest := orasPush(t, oras, reg, "", fx.src, ref, nil, "hello.txt")
	root := filepath.Join(t.TempDir(), "volume")
	lockPath := filepath.Join(root, ".ocisync", "lock")
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("locking %s: %v", lockPath, err)
	}
	before := snapshot(t, root)

	res := ocisyncPull(t, oc, reg, "", slices.Concat(versionedLayout, []string{"--timeout", "1s"}), ref, root)
	if res.ExitCode != 1 {
		t.Fatalf("ocisync %v while the lock is held: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", res.Args, res.ExitCode, res.Stdout, res.Stderr)
	}
	assertOneLineError(t, res, []string{"another pull holds the lock on " + lockPath})
	assertOneLineError(t, res, []string{"--timeout 1s ran out"})
	assertTree(t, "volume after a pull that found it locked", root, before)

	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if got := mustPullDigest(t, oc, reg, "", slices.Concat(versionedLayout, []string{"--timeout", "1m"}), ref, root); got != digest {
		t.Fatalf("pull printed %q last, want %s", got, digest)
	}
	assertCurrent(t, root, digest, snapshot(t, fx.src).subtree("hello.txt"))
}
