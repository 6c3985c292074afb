package install

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/test/controlplane"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// buildNamespaced builds config/namespaced, the install of a manager
// limited to some namespaces, with kubectl kustomize and the image set the
// way a user's own overlay sets it, and returns the file written.
func buildNamespaced(t *testing.T, img string) string {
	t.Helper()
	dir := t.TempDir()
	// kustomize takes a base only by a relative path.
	base, err := filepath.Rel(dir, filepath.Join(repoRoot(t), "config", "namespaced"))
	if err != nil {
		t.Fatal(err)
	}
	name, tag, _ := strings.Cut(img, ":")
	overlay := "resources:\n- " + base + "\nimages:\n- name: controller\n  newName: " + name + "\n  newTag: " + tag + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "namespaced.yaml")
	cmd := exec.Command(kubectl(t), "kustomize", dir, "-o", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl kustomize config/namespaced (as the base of an overlay that sets the image): %v\n%s", err, msg)
	}
	return out
}

// checkNamespaced checks the namespaced install: nothing cluster-wide
// but its namespace, and in each namespace of --watch-namespaces a Role
// with the ClusterRole's rules bound to the manager. It returns what the
// tests need to run the manager, and the watched namespaces.
func checkNamespaced(t *testing.T, objs []*unstructured.Unstructured) (bundle, []string) {
	t.Helper()
	b := bundle{namespace: only(t, objs, "Namespace").GetName()}
	for _, kind := range []string{"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"} {
		for _, o := range ofKind(objs, kind) {
			t.Errorf("the namespaced install holds %s %s; it must need no cluster-wide permission", kind, o.GetName())
		}
	}
	b.serviceAccount = only(t, objs, "ServiceAccount").GetName()
	b.deployment = deploymentOf(t, objs)
	b.manager = managerContainer(t, b.deployment)
	if b.manager.Image != image {
		t.Errorf("the manager's image is %q, want %q (set by the overlay's images)", b.manager.Image, image)
	}
	value, ok := flagValue(managerArgv(b.manager), "watch-namespaces")
	if !ok || value == "" {
		t.Fatalf("the namespaced install runs the manager without --watch-namespaces: %v", managerArgv(b.manager))
	}
	watched := strings.Split(value, ",")

	// The rules the manager needs cluster-wide, which it needs in each
	// watched namespace.
	var clusterRules []rbacv1.PolicyRule
	for _, o := range decodeObjects(t, filepath.Join(repoRoot(t), "config", "rbac", "role.yaml")) {
		if o.GetKind() == "ClusterRole" {
			clusterRules = append(clusterRules, typed[rbacv1.ClusterRole](t, o).Rules...)
		}
	}
	want := ruleSet(clusterRules)
	if len(want) == 0 {
		t.Fatal("config/rbac/role.yaml has no ClusterRole rules")
	}
	roles := map[string]map[string]map[permission]bool{} // namespace, name
	for _, o := range ofKind(objs, "Role") {
		if roles[o.GetNamespace()] == nil {
			roles[o.GetNamespace()] = map[string]map[permission]bool{}
		}
		roles[o.GetNamespace()][o.GetName()] = ruleSet(typed[rbacv1.Role](t, o).Rules)
	}
	bound := map[string]map[permission]bool{} // namespace: what the manager may do there
	for _, o := range ofKind(objs, "RoleBinding") {
		rb := typed[rbacv1.RoleBinding](t, o)
		if !slices.Contains(rb.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: b.serviceAccount, Namespace: b.namespace}) {
			t.Errorf("RoleBinding %s/%s does not bind ServiceAccount %s/%s: %+v", rb.Namespace, rb.Name, b.namespace, b.serviceAccount, rb.Subjects)
			continue
		}
		granted, ok := roles[rb.Namespace][rb.RoleRef.Name]
		if rb.RoleRef.Kind != "Role" || !ok {
			t.Errorf("RoleBinding %s/%s binds %s %s, which is not a Role of the install in its namespace", rb.Namespace, rb.Name, rb.RoleRef.Kind, rb.RoleRef.Name)
			continue
		}
		if bound[rb.Namespace] == nil {
			bound[rb.Namespace] = map[permission]bool{}
		}
		maps.Copy(bound[rb.Namespace], granted)
	}
	for _, ns := range watched {
		have := bound[ns]
		if have == nil {
			t.Errorf("--watch-namespaces names %q, but the install binds the manager no Role there", ns)
			continue
		}
		for p := range want {
			if !have[p] {
				t.Errorf("in namespace %s the manager may not %s %s (group %q), which the ClusterRole grants: copy config/rbac/role.yaml's rules into config/namespaced/role.yaml", ns, p.verb, p.resource, p.group)
			}
		}
		for p := range have {
			if !want[p] && ns != b.namespace {
				t.Errorf("in namespace %s the manager may %s %s (group %q), which the ClusterRole does not grant", ns, p.verb, p.resource, p.group)
			}
		}
	}
	for ns := range bound {
		if ns != b.namespace && !slices.Contains(watched, ns) {
			t.Errorf("the install grants the manager permissions in namespace %s, which --watch-namespaces (%s) leaves out", ns, value)
		}
	}
	if own := bound[b.namespace]; !own[permission{"", "pods", "get"}] || !own[permission{"coordination.k8s.io", "leases", "update"}] {
		t.Errorf("in its own namespace %s the manager may not read its Pod or hold its leader election Lease: %v", b.namespace, own)
	}
	return b, watched
}

// TestNamespacedInstall builds config/namespaced, checks its RBAC, and runs
// the manager with nothing but it: a manager limited by --watch-namespaces
// needs no cluster-wide permission, and leaves other namespaces alone.
func TestNamespacedInstall(t *testing.T) {
	path := buildNamespaced(t, image)
	objs := decodeObjects(t, path)
	b, watched := checkNamespaced(t, objs)
	if t.Failed() {
		return
	}
	ocisyncBin := registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)

	cp := controlplane.Start(t)
	k8s := newClient(t, cp)
	admin := cp.WriteKubeconfig(t, "namespaced-admin")
	ctx := context.Background()
	// The namespaces are the cluster admin's to make, as is the CRD (the
	// control plane installs it).
	for _, ns := range append(slices.Clone(watched), "elsewhere") {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
	if out, err := exec.Command(kubectl(t), "--kubeconfig", admin, "apply", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -f namespaced.yaml: %v\n%s", err, out)
	}
	// An Artifact outside the watched namespaces, which stays untouched.
	outside := &ocisyncv1alpha1.Artifact{
		ObjectMeta: metav1.ObjectMeta{Namespace: "elsewhere", Name: "outside"},
		Spec: ocisyncv1alpha1.ArtifactSpec{
			Reference: "registry.example.com/team/app:v1",
			ConfigMap: &ocisyncv1alpha1.ConfigMapOutput{Name: "outside"},
		},
	}
	if err := k8s.Create(ctx, outside); err != nil {
		t.Fatalf("creating Artifact elsewhere/outside: %v", err)
	}

	runWithBundleRBAC(t, cp, k8s, admin, ocisyncBin, b, watched[0])

	got := &ocisyncv1alpha1.Artifact{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(outside), got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != outside.ResourceVersion || len(got.Status.Conditions) > 0 {
		t.Errorf("the Artifact outside --watch-namespaces was written: status %+v", got.Status)
	}
}
