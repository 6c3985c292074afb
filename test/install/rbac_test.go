package install

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// permission is one verb on one resource of one API group ("" is core).
type permission struct{ group, resource, verb string }

// ruleSet expands RBAC rules into single permissions.
func ruleSet(rules []rbacv1.PolicyRule) map[permission]bool {
	out := map[permission]bool{}
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out[permission{g, res, v}] = true
				}
			}
		}
	}
	return out
}

// markerPermissions reads the cluster-wide +kubebuilder:rbac markers of the
// Go source under root, which `make manifests` turns into role.yaml.
func markerPermissions(t *testing.T, root string) map[permission]bool {
	t.Helper()
	out := map[permission]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "dist", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			spec, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "// +kubebuilder:rbac:")
			if !ok {
				continue
			}
			fields := map[string][]string{}
			for _, kv := range strings.Split(spec, ",") {
				k, v, _ := strings.Cut(kv, "=")
				fields[k] = strings.Split(strings.Trim(v, `"`), ";")
			}
			if _, namespaced := fields["namespace"]; namespaced {
				continue // a Role, not the ClusterRole
			}
			for _, g := range fields["groups"] {
				for _, res := range fields["resources"] {
					for _, v := range fields["verbs"] {
						out[permission{g, res, v}] = true
					}
				}
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatalf("reading the +kubebuilder:rbac markers: %v", err)
	}
	return out
}

// TestRBACRules checks the manager's roles in config/rbac: least privilege
// (no wildcards, Secrets only read, created and updated) and role.yaml in step with the
// +kubebuilder:rbac markers next to the code that needs them.
// TestInstallBundle shows that the rules are enough.
func TestRBACRules(t *testing.T) {
	root := repoRoot(t)
	roles := decodeObjects(t, filepath.Join(root, "config", "rbac", "role.yaml"))
	roles = append(roles, decodeObjects(t, filepath.Join(root, "config", "rbac", "leader_election_role.yaml"))...)
	var clusterRules []rbacv1.PolicyRule
	for _, o := range roles {
		r := typed[rbacv1.ClusterRole](t, o) // a Role has the same rules
		for _, rule := range r.Rules {
			for _, list := range [][]string{rule.APIGroups, rule.Resources, rule.Verbs, rule.NonResourceURLs} {
				if slices.Contains(list, "*") {
					t.Errorf("%s %s grants a wildcard: %+v; name each group, resource and verb the code needs", o.GetKind(), o.GetName(), rule)
				}
			}
			if slices.Contains(rule.Resources, "secrets") && slices.ContainsFunc(rule.Verbs, func(v string) bool {
				return !slices.Contains([]string{"get", "list", "watch", "create", "update"}, v)
			}) {
				t.Errorf("%s %s may %v Secrets: the manager only reads pull secrets, and creates and updates Secret outputs (never deletes or patches one)", o.GetKind(), o.GetName(), rule.Verbs)
			}
		}
		if o.GetKind() == "ClusterRole" {
			clusterRules = append(clusterRules, r.Rules...)
		}
	}
	if len(clusterRules) == 0 {
		t.Fatalf("config/rbac/role.yaml has no ClusterRole rules")
	}

	have, want := ruleSet(clusterRules), markerPermissions(t, root)
	for p := range want {
		if !have[p] {
			t.Errorf("a +kubebuilder:rbac marker allows %s on %s (group %q), role.yaml does not: run make manifests", p.verb, p.resource, p.group)
		}
	}
	for p := range have {
		if !want[p] {
			t.Errorf("role.yaml allows %s on %s (group %q), no +kubebuilder:rbac marker does: run make manifests", p.verb, p.resource, p.group)
		}
	}
}
