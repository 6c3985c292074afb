package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/ocisync/ocisync/test/controlplane"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// rolloutPermissions are what spec.rollout needs, and all that the
// no-rollout component takes away.
var rolloutPermissions = func() map[permission]bool {
	out := map[permission]bool{}
	for _, res := range []string{"deployments", "statefulsets", "daemonsets"} {
		for _, verb := range []string{"get", "list", "watch", "patch"} {
			out[permission{"apps", res, verb}] = true
		}
	}
	return out
}()

// TestNoRolloutComponent builds the bundle with INSTALL_COMPONENTS=no-rollout:
// the manager may not touch any workload, runs with --rollout=false, and
// does its work with that RBAC without being refused anything (it does not
// even watch workloads).
func TestNoRolloutComponent(t *testing.T) {
	ocisyncBin := registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)
	path := buildInstaller(t, image, "no-rollout")
	objs := decodeObjects(t, path)
	b := checkBundle(t, objs)
	b.path = path
	if v, ok := flagValue(managerArgv(b.manager), "rollout"); !ok || v != "false" {
		t.Errorf("with no-rollout the manager runs %v; want --rollout=false", managerArgv(b.manager))
	}
	checkRulesWithoutRollout(t, "the ClusterRole", typed[rbacv1.ClusterRole](t, only(t, objs, "ClusterRole")).Rules)
	if t.Failed() {
		return
	}

	cp := controlplane.Start(t)
	k8s := newClient(t, cp)
	admin := cp.WriteKubeconfig(t, "no-rollout-admin")
	if out, err := exec.Command(kubectl(t), "--kubeconfig", admin, "apply", "-f", b.path).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -f install.yaml: %v\n%s", err, out)
	}
	runWithBundleRBAC(t, cp, k8s, admin, ocisyncBin, b, "no-rollout")
}

// TestNoRolloutComponentNamespaced adds the component to config/namespaced:
// the Role of each watched namespace loses the same rules.
func TestNoRolloutComponentNamespaced(t *testing.T) {
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(repoRoot(t), p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	overlay := "resources:\n- " + rel("config/namespaced") + "\ncomponents:\n- " + rel("config/components/no-rollout") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.yaml")
	if msg, err := exec.Command(kubectl(t), "kustomize", dir, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("kubectl kustomize config/namespaced with the no-rollout component: %v\n%s", err, msg)
	}
	objs := decodeObjects(t, out)
	var roles int
	for _, o := range ofKind(objs, "Role") {
		if o.GetName() == "ocisync-manager-role" {
			roles++
			checkRulesWithoutRollout(t, "Role "+o.GetNamespace()+"/"+o.GetName(), typed[rbacv1.Role](t, o).Rules)
		}
	}
	if roles == 0 {
		t.Errorf("config/namespaced with no-rollout has no Role ocisync-manager-role")
	}
	d := deploymentOf(t, objs)
	if v, _ := flagValue(managerArgv(managerContainer(t, d)), "rollout"); v != "false" {
		t.Errorf("the manager runs without --rollout=false: %v", managerArgv(managerContainer(t, d)))
	}
}

// checkRulesWithoutRollout checks that rules grant exactly what
// config/rbac/role.yaml grants but the rollout permissions.
func checkRulesWithoutRollout(t *testing.T, what string, rules []rbacv1.PolicyRule) {
	t.Helper()
	var clusterRules []rbacv1.PolicyRule
	for _, o := range decodeObjects(t, filepath.Join(repoRoot(t), "config", "rbac", "role.yaml")) {
		clusterRules = append(clusterRules, typed[rbacv1.ClusterRole](t, o).Rules...)
	}
	full := ruleSet(clusterRules)
	for p := range rolloutPermissions {
		if !full[p] {
			t.Errorf("config/rbac/role.yaml does not grant %s on %s (group %q), which spec.rollout needs", p.verb, p.resource, p.group)
		}
	}
	have := ruleSet(rules)
	for p := range have {
		if rolloutPermissions[p] || p.group == "apps" {
			t.Errorf("with no-rollout, %s still grants %s on %s (group %q)", what, p.verb, p.resource, p.group)
		}
	}
	for p := range full {
		if !rolloutPermissions[p] && !have[p] {
			t.Errorf("with no-rollout, %s lost %s on %s (group %q), which the manager needs: the component removed the wrong rule", what, p.verb, p.resource, p.group)
		}
	}
}
