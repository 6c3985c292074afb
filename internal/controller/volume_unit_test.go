package controller

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

func TestJobNamePrefix(t *testing.T) {
	tests := []struct{ name, want string }{
		{"art", "art"},
		{strings.Repeat("a", 52), strings.Repeat("a", 52)},
		{strings.Repeat("a", 53), strings.Repeat("a", 52)},
		// A cut that ends in a separator drops it: names end alphanumeric.
		{strings.Repeat("a", 50) + "-.b", strings.Repeat("a", 50)},
		{"my.artifact", "my.artifact"},
	}
	for _, tt := range tests {
		if got := jobNamePrefix(tt.name); got != tt.want {
			t.Errorf("jobNamePrefix(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// testReconciler builds sync Jobs without a cluster.
func testReconciler(t *testing.T) *ArtifactReconciler {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return &ArtifactReconciler{Scheme: s, SyncImage: "example.com/ocisync:1"}
}

func volumeArtifact(name string) *v1alpha1.Artifact {
	return &v1alpha1.Artifact{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: "uid-1"},
		Spec: v1alpha1.ArtifactSpec{
			Reference: "r.example.com/team/model:v1",
			Volume:    &v1alpha1.VolumeOutput{ClaimName: "data"},
		},
	}
}

// TestSyncJobName checks that a Job's name is a valid label value for any
// Artifact name, stays the same for the same work, and changes with
// anything that changes what the Job does.
func TestSyncJobName(t *testing.T) {
	r := testReconciler(t)
	ref := reference.MustParse("r.example.com/team/model:v1@sha256:" + strings.Repeat("a", 64))
	other := reference.MustParse("r.example.com/team/model:v1@sha256:" + strings.Repeat("b", 64))
	name := func(obj *v1alpha1.Artifact, ref reference.Reference, access *registryAccess) string {
		t.Helper()
		job, err := r.syncJob(obj, ref, access)
		if err != nil {
			t.Fatal(err)
		}
		return job.Name
	}
	base := name(volumeArtifact("art"), ref, &registryAccess{})
	if again := name(volumeArtifact("art"), ref, &registryAccess{}); again != base {
		t.Errorf("the same work gives %q, then %q", base, again)
	}
	long := name(volumeArtifact(strings.Repeat("x", 253)), ref, &registryAccess{})
	if errs := validation.IsDNS1123Label(long); len(errs) > 0 {
		t.Errorf("Job name %q of a 253-character Artifact is not a valid label: %v", long, errs)
	}
	changes := map[string]func(*v1alpha1.Artifact){
		"subPath":         func(a *v1alpha1.Artifact) { a.Spec.Volume.SubPath = "x" },
		"extract":         func(a *v1alpha1.Artifact) { a.Spec.Volume.Extract = true },
		"mediaType":       func(a *v1alpha1.Artifact) { a.Spec.MediaType = "text/plain" },
		"platform":        func(a *v1alpha1.Artifact) { a.Spec.Platform = "linux/arm64" },
		"claimName":       func(a *v1alpha1.Artifact) { a.Spec.Volume.ClaimName = "other" },
		"maxUnpackedSize": func(a *v1alpha1.Artifact) { a.Spec.Volume.MaxUnpackedSize = new(resource.MustParse("1Mi")) },
		"plainHTTP":       func(a *v1alpha1.Artifact) { a.Spec.PlainHTTP = true },
	}
	for field, change := range changes {
		a := volumeArtifact("art")
		change(a)
		if got := name(a, ref, &registryAccess{}); got == base {
			t.Errorf("changing %s keeps the Job name %q", field, got)
		}
	}
	if got := name(volumeArtifact("art"), other, &registryAccess{}); got == base {
		t.Errorf("another digest keeps the Job name %q", got)
	}
	if got := name(volumeArtifact("art"), ref, &registryAccess{pullSecrets: []pullSecret{{"s", ".dockerconfigjson"}}}); got == base {
		t.Errorf("a pull Secret keeps the Job name %q", got)
	}
}

func TestSyncJobTarget(t *testing.T) {
	r := testReconciler(t)
	ref := reference.MustParse("r.example.com/team/model:v1@sha256:" + strings.Repeat("a", 64))
	tests := []struct {
		subPath, want, wantErr string
	}{
		{"", "/data", ""},
		{"models", "/data/models", ""},
		{"/models/bert/", "/data/models/bert", ""},
		{"a/./b//c", "/data/a/b/c", ""},
		{"a/../b", "/data/b", ""},
		{"a/../../b", "", "leads outside the claim"},
		{"..", "", "leads outside the claim"},
	}
	for _, tt := range tests {
		a := volumeArtifact("art")
		a.Spec.Volume.SubPath = tt.subPath
		job, err := r.syncJob(a, ref, &registryAccess{})
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("subPath %q: err = %v, want %q", tt.subPath, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("subPath %q: %v", tt.subPath, err)
		}
		args := job.Spec.Template.Spec.Containers[0].Args
		if got := args[len(args)-1]; got != tt.want {
			t.Errorf("subPath %q: target %q, want %q", tt.subPath, got, tt.want)
		}
	}
}
