package cli

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// TestOwnImage: without --sync-image, sync Jobs run the manager's own
// image, read from its Pod.
func TestOwnImage(t *testing.T) {
	pod := func(containers ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ocisync-system", Name: "manager-abc"}}
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "registry.example/" + c + ":v1"})
		}
		return p
	}
	tests := []struct {
		name         string
		podName      string
		pod          *corev1.Pod
		want, errHas string
	}{
		{name: "the manager container", podName: "manager-abc", pod: pod("sidecar", "manager"), want: "registry.example/manager:v1"},
		{name: "the only container", podName: "manager-abc", pod: pod("ocisync"), want: "registry.example/ocisync:v1"},
		{name: "no manager among several", podName: "manager-abc", pod: pod("a", "b"), errHas: `no container named "manager"`},
		{name: "no such Pod", podName: "gone", pod: pod("manager"), errHas: "reading the manager's Pod ocisync-system/gone"},
		{name: "not in a Pod", pod: pod("manager"), errHas: "POD_NAMESPACE and POD_NAME are not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.podName != "" {
				t.Setenv("POD_NAMESPACE", "ocisync-system")
				t.Setenv("POD_NAME", tt.podName)
			} else {
				t.Setenv("POD_NAMESPACE", "")
				t.Setenv("POD_NAME", "")
			}
			c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(tt.pod).Build()
			got, err := ownImage(context.Background(), c)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("ownImage = %q, %v; want an error mentioning %q", got, err, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ownImage = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
