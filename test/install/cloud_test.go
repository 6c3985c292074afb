package install

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestCloudComponents builds the bundle with each cloud's component and
// finds the identity where the cloud looks for it: the annotation on the
// manager's ServiceAccount (and for Azure the label on its Pods); with
// cloud-service-account-identity, the flag and a binding that lets that
// ServiceAccount, and no other, request ServiceAccount tokens.
func TestCloudComponents(t *testing.T) {
	tests := []struct {
		component   string
		annotation  string // on the manager's ServiceAccount
		podLabel    string // on the manager's Pod template, "" for none
		flag        string // in the manager's arguments, "" for none
		tokenAccess bool   // may create serviceaccounts/token
	}{
		{component: "aws", annotation: "eks.amazonaws.com/role-arn"},
		{component: "gcp", annotation: "iam.gke.io/gcp-service-account"},
		{component: "azure", annotation: "azure.workload.identity/client-id", podLabel: "azure.workload.identity/use"},
		{component: "cloud-service-account-identity", flag: "cloud-service-account-identity", tokenAccess: true},
	}
	for _, tt := range tests {
		t.Run(tt.component, func(t *testing.T) {
			objs := decodeObjects(t, buildInstaller(t, image, tt.component))
			sa := typed[corev1.ServiceAccount](t, only(t, objs, "ServiceAccount"))
			d := typed[appsv1.Deployment](t, only(t, objs, "Deployment"))
			if d.Spec.Template.Spec.ServiceAccountName != sa.Name {
				t.Fatalf("the manager runs as %q, the bundle's ServiceAccount is %q", d.Spec.Template.Spec.ServiceAccountName, sa.Name)
			}
			if tt.annotation != "" && sa.Annotations[tt.annotation] == "" {
				t.Errorf("with %s the manager's ServiceAccount has annotations %v; want %s", tt.component, sa.Annotations, tt.annotation)
			}
			if tt.podLabel != "" && d.Spec.Template.Labels[tt.podLabel] != "true" {
				t.Errorf("with %s the manager's Pods have labels %v; want %s: \"true\"", tt.component, d.Spec.Template.Labels, tt.podLabel)
			}
			argv := managerArgv(managerContainer(t, d))
			if _, ok := flagValue(argv, "cloud-service-account-identity"); ok != (tt.flag != "") {
				t.Errorf("with %s the manager runs %v; want --cloud-service-account-identity %v", tt.component, argv, tt.flag != "")
			}
			if got := mayCreateTokens(t, objs, sa); got != tt.tokenAccess {
				t.Errorf("with %s the manager's ServiceAccount may create ServiceAccount tokens: %v, want %v", tt.component, got, tt.tokenAccess)
			}
		})
	}
}

// mayCreateTokens reports whether a ClusterRoleBinding of objs binds sa
// to a ClusterRole of objs that grants create on serviceaccounts/token.
func mayCreateTokens(t *testing.T, objs []*unstructured.Unstructured, sa *corev1.ServiceAccount) bool {
	t.Helper()
	grants := map[string]bool{}
	for _, o := range ofKind(objs, "ClusterRole") {
		for _, r := range typed[rbacv1.ClusterRole](t, o).Rules {
			if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, "serviceaccounts/token") && (slices.Contains(r.Verbs, "create") || slices.Contains(r.Verbs, "*")) {
				grants[o.GetName()] = true
			}
		}
	}
	for _, o := range ofKind(objs, "ClusterRoleBinding") {
		b := typed[rbacv1.ClusterRoleBinding](t, o)
		if b.RoleRef.Kind != "ClusterRole" || !grants[b.RoleRef.Name] {
			continue
		}
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa.Name && s.Namespace == sa.Namespace {
				return true
			}
		}
		t.Errorf("ClusterRoleBinding %s grants ServiceAccount tokens to %v, not to the manager's ServiceAccount %s/%s", b.Name, b.Subjects, sa.Namespace, sa.Name)
	}
	return false
}
