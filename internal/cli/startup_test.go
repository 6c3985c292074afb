package cli

import (
	"strings"
	"testing"

	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// startFamilies are the ocisync_ metric families on controller-runtime's
// registry when TestMain begins: after every package's init, before any
// test has run a command. startErr is the error of that Gather.
var (
	startFamilies []string
	startErr      error
)

func snapshotStart() {
	families, err := ctrlmetrics.Registry.Gather()
	startErr = err
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "ocisync_") {
			startFamilies = append(startFamilies, f.GetName())
		}
	}
}

// The CLI links the manager's packages, whose init runs for every command:
// ocisync's metrics must wait for the manager to register them, or each
// pull, push and version pays for them at start.
func TestInitRegistersNoOcisyncMetrics(t *testing.T) {
	if startErr != nil {
		t.Fatal(startErr)
	}
	if len(startFamilies) > 0 {
		t.Errorf("package init registered %v; register them when the manager sets up (metrics.Register)", startFamilies)
	}
}
