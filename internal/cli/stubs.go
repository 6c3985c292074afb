package cli

import (
	"fmt"
	"io"
)

// Temporary stubs, replaced by manager.go, pull.go and push.go.

func runManager(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "ocisync manager: not built yet")
	return 1
}

func runPull(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "ocisync pull: not built yet")
	return 1
}

func runPush(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "ocisync push: not built yet")
	return 1
}
