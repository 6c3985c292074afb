package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Polling bounds while another pull holds the volume lock: a short first
// wait for the common case of a pull that is just finishing, then at most
// a second, which is nothing next to a download.
const (
	lockPollMin = 100 * time.Millisecond
	lockPollMax = time.Second
)

// errLockBusy is what tryLock returns when another holder has the lock.
var errLockBusy = errors.New("lock is held")

// lockWaiting, when set, is called each time lockVolume finds the lock
// busy and is about to wait; tests use it to know a pull is waiting.
var lockWaiting func(path string)

// lockVolume takes the exclusive lock of the volume whose store folder is
// store, creating the folder and the lock file as needed, and returns the
// function that releases it. It waits while another process (or another
// open of the file in this one) holds the lock, until ctx ends.
func lockVolume(ctx context.Context, store string) (unlock func(), err error) {
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", store, err)
	}
	path := filepath.Join(store, VolumeLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the volume lock %s: %w", path, err)
	}
	wait := lockPollMin
	for {
		err := tryLock(f)
		if err == nil {
			// Closing the file releases the lock, as does the process
			// exiting, so a killed pull never leaves the volume locked.
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, errLockBusy) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if lockWaiting != nil {
			lockWaiting(path)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			_ = f.Close()
			return nil, fmt.Errorf("another pull holds the lock on %s and this one gave up waiting for it: %w; wait for that pull to finish or stop it, then retry", path, ctx.Err())
		case <-timer.C:
		}
		wait = min(2*wait, lockPollMax)
	}
}
