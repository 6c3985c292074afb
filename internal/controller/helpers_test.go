package controller

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err    error
		reason string
		stall  bool
	}{
		{fmt.Errorf("x: %w", oci.ErrInvalidReference), v1alpha1.ReasonInvalidReference, true},
		{fmt.Errorf("x: %w", oci.ErrDigestMismatch), v1alpha1.ReasonVerificationFailed, false},
		{fmt.Errorf("x: %w", oci.ErrSizeMismatch), v1alpha1.ReasonVerificationFailed, false},
		{fmt.Errorf("x: %w: %w", oci.ErrSizeMismatch, io.ErrUnexpectedEOF), v1alpha1.ReasonRegistryUnavailable, false},
		{fmt.Errorf("x: %w", oci.ErrTooLarge), v1alpha1.ReasonTooLarge, true},
		{fmt.Errorf("x: %w", oci.ErrUnauthorized), v1alpha1.ReasonAuthenticationFailed, false},
		{fmt.Errorf("x: %w", oci.ErrDenied), v1alpha1.ReasonAuthenticationFailed, false},
		{fmt.Errorf("x: %w", oci.ErrManifestUnknown), v1alpha1.ReasonNotFound, false},
		{fmt.Errorf("x: %w", oci.ErrUnsupported), v1alpha1.ReasonSelectorMismatch, true},
		{fmt.Errorf("x: %w", oci.ErrPlatformMismatch), v1alpha1.ReasonSelectorMismatch, true},
		{fmt.Errorf("x: %w", oci.ErrTooManyRequests), v1alpha1.ReasonRegistryUnavailable, false},
		{errors.New("connection refused"), v1alpha1.ReasonRegistryUnavailable, false},
		{fmt.Errorf("wrapped: %w", stalled(v1alpha1.ReasonInvalidSpec, "bad")), v1alpha1.ReasonInvalidSpec, true},
	}
	for _, tt := range tests {
		se := classify(tt.err)
		if se.reason != tt.reason || se.stall != tt.stall {
			t.Errorf("classify(%v) = %s stall=%v, want %s stall=%v", tt.err, se.reason, se.stall, tt.reason, tt.stall)
		}
	}
}

func TestConfigMapFor(t *testing.T) {
	obj := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns"}, Spec: v1alpha1.ArtifactSpec{ConfigMap: &v1alpha1.ConfigMapOutput{Name: "out"}}}
	cm := configMapFor(obj, "sha256:abc", []file{
		{name: "text.yaml", content: []byte("key: value\n")},
		{name: "blob.bin", content: []byte{0xff, 0x00, 0xfe}},
		{name: "empty", content: nil},
	})
	if cm.Name != "out" || cm.Namespace != "ns" {
		t.Errorf("ConfigMap %s/%s, want ns/out", cm.Namespace, cm.Name)
	}
	if cm.Data["text.yaml"] != "key: value\n" || cm.Data["empty"] != "" {
		t.Errorf("data = %q", cm.Data)
	}
	if _, ok := cm.Data["empty"]; !ok {
		t.Error("an empty file is missing from data")
	}
	if string(cm.BinaryData["blob.bin"]) != "\xff\x00\xfe" {
		t.Errorf("binaryData = %q", cm.BinaryData)
	}
	if cm.Labels[v1alpha1.LabelArtifactName] != "a" || cm.Annotations[v1alpha1.AnnotationDigest] != "sha256:abc" {
		t.Errorf("labels %v annotations %v", cm.Labels, cm.Annotations)
	}
	if cm.Annotations[annotationChecksum] != contentChecksum(cm) {
		t.Error("checksum annotation does not match the content")
	}
}

func TestContentChecksumNoticesEdits(t *testing.T) {
	base := &corev1.ConfigMap{Data: map[string]string{"a": "1", "b": "2"}, BinaryData: map[string][]byte{"c": {3}}}
	sum := contentChecksum(base)
	edits := map[string]func(cm *corev1.ConfigMap){
		"value changed":        func(cm *corev1.ConfigMap) { cm.Data["a"] = "x" },
		"key added":            func(cm *corev1.ConfigMap) { cm.Data["z"] = "" },
		"key removed":          func(cm *corev1.ConfigMap) { delete(cm.Data, "b") },
		"moved to binaryData":  func(cm *corev1.ConfigMap) { delete(cm.Data, "a"); cm.BinaryData["a"] = []byte("1") },
		"binary value changed": func(cm *corev1.ConfigMap) { cm.BinaryData["c"] = []byte{4} },
		"boundary shifted":     func(cm *corev1.ConfigMap) { cm.Data["a"] = "12"; cm.Data["b"] = "" },
	}
	for name, edit := range edits {
		cm := base.DeepCopy()
		edit(cm)
		if contentChecksum(cm) == sum {
			t.Errorf("%s: checksum unchanged", name)
		}
	}
	if contentChecksum(base.DeepCopy()) != sum {
		t.Error("checksum is not deterministic")
	}
}

func TestLabelValue(t *testing.T) {
	if got := labelValue("short"); got != "short" {
		t.Errorf("labelValue(short) = %q", got)
	}
	long := strings.Repeat("a", 200)
	got := labelValue(long)
	if len(got) > 63 || !strings.HasPrefix(got, strings.Repeat("a", 50)) {
		t.Errorf("labelValue(long) = %q (%d chars)", got, len(got))
	}
	if labelValue(long+"b") == got {
		t.Error("different long names map to one label value")
	}
}

func TestCheckConfigMapFit(t *testing.T) {
	tests := []struct {
		names  []string
		total  int64
		reason string
	}{
		{[]string{"a.txt", "b_c-d"}, 10, ""},
		{[]string{"dir/file"}, 10, v1alpha1.ReasonSelectorMismatch},
		{[]string{"a"}, maxConfigMapBytes, ""},
		{[]string{"a"}, maxConfigMapBytes + 1, v1alpha1.ReasonTooLarge},
	}
	for _, tt := range tests {
		err := checkConfigMapFit(tt.names, tt.total)
		if tt.reason == "" {
			if err != nil {
				t.Errorf("checkConfigMapFit(%v, %d) = %v", tt.names, tt.total, err)
			}
			continue
		}
		se := classify(err)
		if err == nil || se.reason != tt.reason || !se.stall {
			t.Errorf("checkConfigMapFit(%v, %d) = %v, want stalled %s", tt.names, tt.total, err, tt.reason)
		}
		if tt.reason == v1alpha1.ReasonTooLarge && !strings.Contains(err.Error(), "spec.volume") {
			t.Errorf("TooLarge message %q does not point to spec.volume", err)
		}
	}
}

func TestDockerConfigOf(t *testing.T) {
	json := []byte(`{"auths":{"r.example.com":{"username":"u","password":"p"}}}`)
	legacy := []byte(`{"r.example.com":{"username":"u","password":"p"}}`)
	tests := []struct {
		name    string
		secret  corev1.Secret
		wantKey string
		wantErr string
	}{
		{"dockerconfigjson", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: json}}, ".dockerconfigjson", ""},
		{"dockercfg", corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: legacy}}, ".dockercfg", ""},
		{"opaque", corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{corev1.DockerConfigJsonKey: json}}, "", "kubernetes.io/dockerconfigjson"},
		{"missing key", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson}, "", "no data"},
		{"malformed", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte("{not json")}}, "", "JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, key, err := dockerConfigOf(&tt.secret)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c := store.Lookup("r.example.com"); c.Username != "u" || c.Password != "p" {
				t.Errorf("Lookup = %v", c)
			}
			if key != tt.wantKey {
				t.Errorf("key = %q, want %q (the Job mounts this key)", key, tt.wantKey)
			}
		})
	}
}

func TestShortDigest(t *testing.T) {
	if got := shortDigest("sha256:0123456789abcdef"); got != "0123456789ab" {
		t.Errorf("shortDigest = %q", got)
	}
	if got := shortDigest("odd"); got != "odd" {
		t.Errorf("shortDigest(odd) = %q", got)
	}
}

func TestRetryLimiterIsCappedAtTheDefaultInterval(t *testing.T) {
	l := retryLimiter()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "a"}}
	if first := l.When(req); first != 100*time.Millisecond {
		t.Errorf("first retry after %v, want 100ms", first)
	}
	var last time.Duration
	for range 40 {
		last = l.When(req)
	}
	if last != defaultInterval {
		t.Errorf("retry delay after many failures is %v, want it capped at %v", last, defaultInterval)
	}
	l.Forget(req)
	if again := l.When(req); again != 100*time.Millisecond {
		t.Errorf("after a success the first retry waits %v, want 100ms", again)
	}
}
