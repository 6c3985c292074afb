package cli

import (
	"fmt"
	"os"
	"testing"
)

// TestMain points TMPDIR at a folder of its own, removed at the end: the
// manager's flag defaults (its blob cache) live under os.TempDir(), and
// tests must write only under temporary folders they remove. It first
// notes what package init left registered (see startup_test.go).
func TestMain(m *testing.M) {
	snapshotStart()
	dir, err := os.MkdirTemp("", "ocisync-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.Setenv("TMPDIR", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
