package rollout

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

func TestAnnotationKey(t *testing.T) {
	long := strings.Repeat("a", 253)
	tests := []struct {
		artifact string
		want     string // "" checks only validity and length
	}{
		{artifact: "app-config", want: "ocisync.io/digest-app-config"},
		{artifact: "a.b.c", want: "ocisync.io/digest-a.b.c"},
		// 7 characters of "digest-" and 56 of the name: 63, the limit.
		{artifact: strings.Repeat("x", 56), want: "ocisync.io/digest-" + strings.Repeat("x", 56)},
		{artifact: strings.Repeat("x", 57)},
		{artifact: long},
		{artifact: strings.Repeat("ab.", 30) + "c"},
		{artifact: strings.Repeat("a", 44) + "-" + strings.Repeat("b", 30)},
	}
	for _, tt := range tests {
		got := AnnotationKey(tt.artifact)
		if errs := validation.IsQualifiedName(got); len(errs) > 0 {
			t.Errorf("AnnotationKey(%q) = %q, not a valid annotation key: %v", tt.artifact, got, errs)
		}
		if tt.want != "" && got != tt.want {
			t.Errorf("AnnotationKey(%q) = %q, want %q", tt.artifact, got, tt.want)
		}
		if !strings.HasPrefix(got, v1alpha1.AnnotationRolloutPrefix) {
			t.Errorf("AnnotationKey(%q) = %q lacks the prefix %s", tt.artifact, got, v1alpha1.AnnotationRolloutPrefix)
		}
		if AnnotationKey(tt.artifact) != got {
			t.Errorf("AnnotationKey(%q) is not deterministic", tt.artifact)
		}
	}
	// Names that share the first 45 characters get keys of their own.
	a, b := AnnotationKey(long), AnnotationKey(long[:200]+"b")
	if a == b {
		t.Errorf("two long names share the key %q", a)
	}
	if !strings.HasPrefix(a, "ocisync.io/digest-"+strings.Repeat("a", 45)+"-") || len(a) != len("ocisync.io/")+63 {
		t.Errorf("AnnotationKey(long) = %q; want the name cut to 45 characters, a dash and 10 hex digits", a)
	}
}

func TestGroupVersionKind(t *testing.T) {
	for _, kind := range []string{"Deployment", "StatefulSet", "DaemonSet"} {
		gvk, ok := GroupVersionKind(kind)
		if !ok || gvk.Group != "apps" || gvk.Version != "v1" || gvk.Kind != kind {
			t.Errorf("GroupVersionKind(%s) = %v, %v", kind, gvk, ok)
		}
		if m := Metadata(kind); m == nil || m.GroupVersionKind() != gvk {
			t.Errorf("Metadata(%s) = %v", kind, m)
		}
		if u := Object(kind); u == nil || u.GroupVersionKind() != gvk {
			t.Errorf("Object(%s) = %v", kind, u)
		}
	}
	for _, kind := range []string{"ReplicaSet", "Job", "deployment", ""} {
		if _, ok := GroupVersionKind(kind); ok {
			t.Errorf("GroupVersionKind(%q) is supported", kind)
		}
		if Metadata(kind) != nil || Object(kind) != nil {
			t.Errorf("Metadata or Object(%q) is not nil", kind)
		}
	}
	if got := Kinds(); len(got) != 3 {
		t.Errorf("Kinds() = %v", got)
	}
}

func TestPatchAndTemplateAnnotation(t *testing.T) {
	key := AnnotationKey("app-config")
	const digest = "sha256:0123456789abcdef"
	data, err := Patch(key, digest)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"spec":{"template":{"metadata":{"annotations":{"ocisync.io/digest-app-config":"sha256:0123456789abcdef"}}}}}`
	if string(data) != want {
		t.Errorf("Patch = %s, want %s", data, want)
	}

	tests := []struct {
		name   string
		obj    map[string]any
		want   string
		wantOK bool
	}{
		{name: "no template", obj: map[string]any{"spec": map[string]any{}}},
		{name: "no annotations", obj: map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{}}}}},
		{name: "other annotations", obj: withAnnotations(map[string]any{"other": "x"})},
		{name: "set", obj: withAnnotations(map[string]any{key: digest, "other": "x"}), want: digest, wantOK: true},
		{name: "not a string", obj: withAnnotations(map[string]any{key: int64(3)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := TemplateAnnotation(&unstructured.Unstructured{Object: tt.obj}, key)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("TemplateAnnotation = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}

	// The patch, applied as a merge patch would be, yields what
	// TemplateAnnotation reads.
	var patched map[string]any
	if err := json.Unmarshal(data, &patched); err != nil {
		t.Fatal(err)
	}
	if got, ok := TemplateAnnotation(&unstructured.Unstructured{Object: patched}, key); !ok || got != digest {
		t.Errorf("the patch sets %q, %v", got, ok)
	}
}

func TestIndexKey(t *testing.T) {
	if got := IndexKey("Deployment", "app"); got != "Deployment/app" {
		t.Errorf("IndexKey = %q", got)
	}
}

func withAnnotations(a map[string]any) map[string]any {
	return map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": a}}}}
}
