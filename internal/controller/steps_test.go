package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/cloudauth"
	"github.com/ocisync/ocisync/internal/cloudauth/cloudtest"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/errdef"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

func TestStepsOrder(t *testing.T) {
	var got []string
	for _, s := range (&ArtifactReconciler{}).steps() {
		got = append(got, s.name)
	}
	want := "resolve verify fetch publish record rollout"
	if strings.Join(got, " ") != want {
		t.Errorf("steps = %v, want %s: nothing may be published before it is verified, nor recorded before it is published", got, want)
	}
}

// TestRunStepsUpToDate: once a step finds the output up to date, only the
// steps that act on what it holds (rollout) run; an error ends the sync
// and names its step.
func TestRunStepsUpToDate(t *testing.T) {
	var ran []string
	step := func(name string, upToDate bool, run func(*syncState) error) syncStep {
		return syncStep{name: name, upToDate: upToDate, run: func(_ context.Context, s *syncState) error {
			ran = append(ran, name)
			return run(s)
		}}
	}
	ok := func(*syncState) error { return nil }
	steps := func(fetch func(*syncState) error, notify func(*syncState) error) []syncStep {
		return []syncStep{
			step("resolve", false, ok),
			step("fetch", false, fetch),
			step("publish", false, ok),
			step("record", false, ok),
			step("rollout", true, notify),
		}
	}
	tests := []struct {
		name     string
		fetch    func(*syncState) error
		notify   func(*syncState) error
		want     string
		wantStep string
	}{
		{name: "new digest", fetch: ok, notify: ok, want: "resolve fetch publish record rollout"},
		{name: "up to date", fetch: func(s *syncState) error { s.upToDate = true; return nil }, notify: ok, want: "resolve fetch rollout"},
		{name: "fetch fails", fetch: func(*syncState) error { return errors.New("boom") }, notify: ok, want: "resolve fetch", wantStep: "fetch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran = nil
			s := &syncState{obj: &v1alpha1.Artifact{}, out: &syncOutcome{}}
			err := runSteps(t.Context(), s, steps(tt.fetch, tt.notify))
			if got := strings.Join(ran, " "); got != tt.want {
				t.Errorf("ran %q, want %q", got, tt.want)
			}
			if (err != nil) != (tt.wantStep != "") || s.out.step != tt.wantStep {
				t.Errorf("err %v, step %q; want step %q", err, s.out.step, tt.wantStep)
			}
		})
	}
}

func titledLayer(title, mediaType string, size int64) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Size: size, Digest: digest.FromString(title)}
	if title != "" {
		d.Annotations = map[string]string{oci.AnnotationTitle: title}
	}
	return d
}

// TestFetchStep covers the refusals of the fetch step, with the manifest
// already at hand (as on an Artifact's first sync), so that no registry is
// asked.
func TestFetchStep(t *testing.T) {
	manifest := &oci.Manifest{
		ArtifactType: "application/vnd.example.config",
		Layers: []ocispec.Descriptor{
			titledLayer("a.yaml", "text/yaml", 10),
			titledLayer("b.json", "application/json", 20),
			titledLayer("", "text/yaml", 5),
		},
	}
	tests := []struct {
		name       string
		spec       v1alpha1.ArtifactSpec
		wantReason string // "" for success
		wantLayers int
		wantTotal  int64
	}{
		{name: "every titled layer", wantLayers: 2, wantTotal: 30},
		{name: "by media type", spec: v1alpha1.ArtifactSpec{MediaType: "text/yaml"}, wantLayers: 1, wantTotal: 10},
		{name: "no such media type", spec: v1alpha1.ArtifactSpec{MediaType: "text/plain"}, wantReason: v1alpha1.ReasonSelectorMismatch},
		{name: "artifact type matches", spec: v1alpha1.ArtifactSpec{ArtifactType: "application/vnd.example.config"}, wantLayers: 2, wantTotal: 30},
		{name: "artifact type differs", spec: v1alpha1.ArtifactSpec{ArtifactType: "application/vnd.other"}, wantReason: v1alpha1.ReasonSelectorMismatch},
		{name: "over maxSize", spec: v1alpha1.ArtifactSpec{MaxSize: resource.NewQuantity(29, resource.BinarySI)}, wantReason: v1alpha1.ReasonTooLarge},
		{name: "at maxSize", spec: v1alpha1.ArtifactSpec{MaxSize: resource.NewQuantity(30, resource.BinarySI)}, wantLayers: 2, wantTotal: 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &v1alpha1.Artifact{Spec: tt.spec}
			s := &syncState{obj: obj, out: &syncOutcome{}, ref: reference.Reference{Registry: "r.example", Repository: "app", Tag: "v1"},
				desc: ocispec.Descriptor{Digest: digest.FromString("m")}, target: &oci.Target{Manifest: manifest}}
			err := (&ArtifactReconciler{}).fetchStep(t.Context(), s)
			if tt.wantReason != "" {
				se := classify(err)
				if err == nil || se.reason != tt.wantReason || !se.stall {
					t.Fatalf("fetchStep = %v, want a stalling %s", err, tt.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("fetchStep: %v", err)
			}
			if len(s.layers) != tt.wantLayers || s.total != tt.wantTotal || s.upToDate {
				t.Errorf("fetchStep selected %d layers of %d bytes (upToDate %v), want %d of %d", len(s.layers), s.total, s.upToDate, tt.wantLayers, tt.wantTotal)
			}
			if s.artifactType != manifest.ArtifactType {
				t.Errorf("artifact type %q, want %q", s.artifactType, manifest.ArtifactType)
			}
		})
	}
}

func TestRecordStep(t *testing.T) {
	d1, d2 := digest.FromString("one"), digest.FromString("two")
	tests := []struct {
		name        string
		spec        v1alpha1.ArtifactSpec
		last        digest.Digest
		written     bool // what publish reported
		wantWritten bool
		wantNew     bool
	}{
		{name: "no output, new digest", last: d1, wantWritten: true, wantNew: true},
		{name: "no output, same digest", last: d2},
		{name: "configMap written", spec: v1alpha1.ArtifactSpec{ConfigMap: &v1alpha1.ConfigMapOutput{Name: "x"}}, last: d2, written: true, wantWritten: true},
		{name: "configMap, first digest", spec: v1alpha1.ArtifactSpec{ConfigMap: &v1alpha1.ConfigMapOutput{Name: "x"}}, written: true, wantWritten: true, wantNew: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &v1alpha1.Artifact{Spec: tt.spec, Status: v1alpha1.ArtifactStatus{Digest: tt.last.String()}}
			ref := reference.Reference{Registry: "r.example", Repository: "app", Tag: "v1"}
			resolved := ref
			resolved.Digest = d2
			s := &syncState{obj: obj, out: &syncOutcome{written: tt.written}, ref: ref, resolved: resolved,
				desc: ocispec.Descriptor{Digest: d2}, artifactType: "t", total: 10,
				layers: []ocispec.Descriptor{titledLayer("a.yaml", "text/yaml", 10)}}
			if err := recordStep(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			if s.out.written != tt.wantWritten || s.out.newDigest != tt.wantNew {
				t.Errorf("written %v, newDigest %v; want %v, %v", s.out.written, s.out.newDigest, tt.wantWritten, tt.wantNew)
			}
			st := obj.Status
			if st.Digest != d2.String() || st.Tag != "v1" || st.ResolvedReference != resolved.String() || st.Size != 10 || st.LastSyncTime == nil {
				t.Errorf("status %+v does not record %s", st, resolved)
			}
			if len(st.Files) != 1 || st.Files[0].Name != "a.yaml" || st.Files[0].Digest != digest.FromString("a.yaml").String() {
				t.Errorf("files %+v, want a.yaml", st.Files)
			}
		})
	}
}

// TestRunStepsCloudRetry: with a cloud provider, a step that reads from
// the registry and meets a refused credential (401, 403) after resolve
// succeeded gets a fresh credential and one more run within the sync;
// a step that does not read from the registry, and a refusal that
// persists, do not loop.
func TestRunStepsCloudRetry(t *testing.T) {
	const host = "us-central1-docker.pkg.dev"
	fake := cloudtest.NewGCP(t)
	// Only the fake metadata server: none of this machine's Google
	// credentials (ADC is found under $HOME).
	t.Setenv("GCE_METADATA_HOST", fake.MetadataHost())
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("HOME", t.TempDir())
	creds, err := cloudauth.New(cloudauth.GCP, cloudauth.Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	if err != nil {
		t.Fatal(err)
	}
	refused := fmt.Errorf("GET blob: 403 Forbidden: %w", errdef.ErrDenied)
	tests := []struct {
		name     string
		registry bool
		refusals int // how many runs the registry refuses
		wantRuns int
		wantErr  bool
		wantNew  int // fresh tokens asked for
	}{
		{name: "refused once", registry: true, refusals: 1, wantRuns: 2, wantNew: 1},
		{name: "refused for good", registry: true, refusals: 9, wantRuns: 2, wantErr: true, wantNew: 1},
		{name: "not refused", registry: true, refusals: 0, wantRuns: 1},
		{name: "not a registry step", registry: false, refusals: 1, wantRuns: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The credential resolve used.
			if _, err := creds.Get(t.Context(), host, nil); err != nil {
				t.Fatal(err)
			}
			before := len(fake.Tokens())
			runs := 0
			s := &syncState{obj: &v1alpha1.Artifact{}, out: &syncOutcome{},
				access: &registryAccess{cloud: &cloudAccess{creds: creds, host: host}}}
			err := runSteps(t.Context(), s, []syncStep{{name: "fetch", registry: tt.registry, run: func(ctx context.Context, s *syncState) error {
				runs++
				if _, err := creds.Get(ctx, host, nil); err != nil {
					return err
				}
				if runs <= tt.refusals {
					return refused
				}
				return nil
			}}})
			if runs != tt.wantRuns || (err != nil) != tt.wantErr {
				t.Errorf("ran %d times, err %v; want %d runs, error %t", runs, err, tt.wantRuns, tt.wantErr)
			}
			if got := len(fake.Tokens()) - before; got != tt.wantNew {
				t.Errorf("%d fresh tokens, want %d", got, tt.wantNew)
			}
		})
	}
	// Without a cloud provider a refusal is the sync's error at once.
	runs := 0
	s := &syncState{obj: &v1alpha1.Artifact{}, out: &syncOutcome{}, access: &registryAccess{}}
	err = runSteps(t.Context(), s, []syncStep{{name: "fetch", registry: true, run: func(context.Context, *syncState) error { runs++; return refused }}})
	if runs != 1 || !errors.Is(err, errdef.ErrDenied) {
		t.Errorf("generic provider: %d runs, err %v", runs, err)
	}
}

// TestHoldsConfigMap: an output ConfigMap, as the cache holds it (content
// replaced by its checksum), is left unwritten only when content,
// labels, annotations and owners are all what the write would leave.
func TestHoldsConfigMap(t *testing.T) {
	obj := &v1alpha1.Artifact{}
	obj.Name, obj.Namespace, obj.UID = "art", "ns", "uid-1"
	obj.Spec.ConfigMap = &v1alpha1.ConfigMapOutput{Name: "out"}
	owner := metav1.OwnerReference{APIVersion: "ocisync.io/v1alpha1", Kind: "Artifact", Name: "art", UID: "uid-1", Controller: new(true)}
	written := func() *corev1.ConfigMap {
		cm := configMapFor(obj, "sha256:aaa", []file{{name: "a.txt", content: []byte("a\n")}})
		cm.OwnerReferences = []metav1.OwnerReference{owner}
		return cm
	}
	cached := func(change func(*corev1.ConfigMap)) *corev1.ConfigMap {
		cm := written()
		if change != nil {
			change(cm)
		}
		trimConfigMap(cm)
		return cm
	}
	tests := []struct {
		name   string
		change func(*corev1.ConfigMap)
		want   bool
	}{
		{name: "as written", want: true},
		{name: "content edited", change: func(cm *corev1.ConfigMap) { cm.Data["a.txt"] = "b\n" }},
		{name: "another digest", change: func(cm *corev1.ConfigMap) { cm.Annotations[v1alpha1.AnnotationDigest] = "sha256:bbb" }},
		{name: "a label lost", change: func(cm *corev1.ConfigMap) { cm.Labels = nil }},
		{name: "another owner", change: func(cm *corev1.ConfigMap) { cm.OwnerReferences[0].UID = "uid-2" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			updated := written()
			if got := holdsConfigMap(cached(tt.change), updated); got != tt.want {
				t.Errorf("holdsConfigMap = %t, want %t", got, tt.want)
			}
		})
	}
}
