package cli

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
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

// The manager's scheme holds the kinds it reads or writes, and not all of
// client-go's built-in types, whose registration each start pays for.
func TestManagerSchemeHoldsOnlyTheManagersKinds(t *testing.T) {
	s, err := managerScheme()
	if err != nil {
		t.Fatal(err)
	}
	for _, gvk := range []schema.GroupVersionKind{
		{Version: "v1", Kind: "Pod"},
		{Version: "v1", Kind: "Secret"},
		{Version: "v1", Kind: "ServiceAccount"},
		{Version: "v1", Kind: "ConfigMap"},
		{Version: "v1", Kind: "Event"},
		{Group: "batch", Version: "v1", Kind: "Job"},
		{Group: "coordination.k8s.io", Version: "v1", Kind: "Lease"},
		{Group: "events.k8s.io", Version: "v1", Kind: "Event"},
		{Group: "ocisync.io", Version: "v1alpha1", Kind: "Artifact"},
	} {
		if !s.Recognizes(gvk) {
			t.Errorf("the manager's scheme does not hold %s", gvk)
		}
	}
	for _, gvk := range []schema.GroupVersionKind{
		{Group: "apps", Version: "v1", Kind: "Deployment"},
		{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	} {
		if s.Recognizes(gvk) {
			t.Errorf("the manager's scheme holds %s, which the manager never uses", gvk)
		}
	}
}
