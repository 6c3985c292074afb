//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package oci

import (
	"fmt"
	"os"
	"runtime"
)

// tryLock fails: without flock, pulls into one volume could not be kept
// from racing, so the versioned layout is not offered at all.
func tryLock(*os.File) error {
	return fmt.Errorf("the versioned volume layout needs flock, which %s lacks; pull with the plain layout instead: %w", runtime.GOOS, ErrUnsupported)
}
