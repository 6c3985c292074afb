package install

import (
	"os/exec"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestShardsExample builds config/shards, the example of two managers
// that split the Artifacts by label (docs/operations.md), and checks what
// makes shards work side by side: disjoint selectors, a Lease each, and
// Deployments that do not claim each other's Pods.
func TestShardsExample(t *testing.T) {
	out := filepath.Join(t.TempDir(), "shards.yaml")
	cmd := exec.Command(kubectl(t), "kustomize", filepath.Join(repoRoot(t), "config", "shards"), "-o", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl kustomize config/shards: %v\n%s", err, msg)
	}
	objs := decodeObjects(t, out)
	serviceAccount := only(t, objs, "ServiceAccount").GetName()
	only(t, objs, "CustomResourceDefinition")
	only(t, objs, "Namespace")
	deployments := ofKind(objs, "Deployment")
	if len(deployments) != 2 {
		t.Fatalf("config/shards has %d Deployments, want 2", len(deployments))
	}
	var shards []*appsv1.Deployment
	var selectors []labels.Selector
	leases := map[string]string{}
	for _, o := range deployments {
		d := typed[appsv1.Deployment](t, o)
		shards = append(shards, d)
		argv := managerArgv(managerContainer(t, d))
		s, ok := flagValue(argv, "watch-label-selector")
		if !ok {
			t.Fatalf("Deployment %s runs the manager without --watch-label-selector: %v", d.Name, argv)
		}
		sel, err := labels.Parse(s)
		if err != nil {
			t.Fatalf("Deployment %s: --watch-label-selector %q: %v", d.Name, s, err)
		}
		selectors = append(selectors, sel)
		id, _ := flagValue(argv, "leader-election-id")
		if other, taken := leases[id]; taken {
			t.Errorf("Deployments %s and %s elect their leaders through one Lease %q; give each its own --leader-election-id", other, d.Name, id)
		}
		leases[id] = d.Name
		if d.Spec.Template.Spec.ServiceAccountName != serviceAccount {
			t.Errorf("Deployment %s runs as ServiceAccount %q, the install's is %q", d.Name, d.Spec.Template.Spec.ServiceAccountName, serviceAccount)
		}
	}
	for i, d := range shards {
		other := shards[1-i]
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if sel.Matches(labels.Set(other.Spec.Template.Labels)) {
			t.Errorf("Deployment %s selects the Pods of %s (labels %v)", d.Name, other.Name, other.Spec.Template.Labels)
		}
	}
	for _, a := range []labels.Set{{"ocisync.io/shard": "a"}, {"ocisync.io/shard": "b"}} {
		if selectors[0].Matches(a) == selectors[1].Matches(a) {
			t.Errorf("an Artifact labelled %v is reconciled by %s: %v and %s: %v; want exactly one", a, selectors[0], selectors[0].Matches(a), selectors[1], selectors[1].Matches(a))
		}
	}
}
