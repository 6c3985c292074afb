package controller

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

func unitScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// countingAPI reads through c and counts the reads, as the API server
// would see them.
func countingAPI(c client.WithWatch, reads *int) client.Reader {
	return interceptor.NewClient(c, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			*reads++
			return c.Get(ctx, key, obj, opts...)
		},
	})
}

func TestRefCacheReadsOnlyWhatChanged(t *testing.T) {
	ctx := t.Context()
	key := types.NamespacedName{Namespace: "ns", Name: "creds"}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
			Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: `{"data":"again"}`}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte("v1")},
	}
	// The fake client stands in for the metadata informer and the API
	// server at once: both always agree here.
	fc := fake.NewClientBuilder().WithScheme(unitScheme(t)).WithObjects(secret).Build()
	var reads int
	api := countingAPI(fc, &reads)
	c := newSecretCache()

	steps := []struct {
		name     string
		change   func()
		key      types.NamespacedName
		data     string // "" for NotFound
		reads    int    // API reads so far
		retained int
	}{
		{"first use reads it", nil, key, "v1", 1, 1},
		{"unchanged: kept copy", nil, key, "v1", 1, 1},
		{"changed: read again", func() {
			s := &corev1.Secret{}
			if err := fc.Get(ctx, key, s); err != nil {
				t.Fatal(err)
			}
			s.Data[corev1.DockerConfigJsonKey] = []byte("v2")
			if err := fc.Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		}, key, "v2", 2, 1},
		{"unchanged again: kept copy", nil, key, "v2", 2, 1},
		{"never there: no API read", nil, types.NamespacedName{Namespace: "ns", Name: "missing"}, "", 2, 1},
		{"deleted: dropped without an API read", func() {
			if err := fc.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}); err != nil {
				t.Fatal(err)
			}
		}, key, "", 2, 0},
	}
	for _, st := range steps {
		if st.change != nil {
			st.change()
		}
		got, err := c.get(ctx, fc, api, st.key)
		switch {
		case st.data == "" && !apierrors.IsNotFound(err):
			t.Fatalf("%s: err = %v, want NotFound", st.name, err)
		case st.data != "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.data != "" && string(got.Data[corev1.DockerConfigJsonKey]) != st.data:
			t.Fatalf("%s: data %q, want %q", st.name, got.Data[corev1.DockerConfigJsonKey], st.data)
		case st.data != "" && (got.Type != secret.Type || len(got.Annotations) > 0):
			t.Fatalf("%s: kept %+v, want the type and data only", st.name, got)
		}
		if reads != st.reads {
			t.Fatalf("%s: %d API reads in all, want %d", st.name, reads, st.reads)
		}
		if n := c.len(); n != st.retained {
			t.Fatalf("%s: %d entries kept, want %d", st.name, n, st.retained)
		}
	}
}

func TestSweepRefsKeepsWhatArtifactsReference(t *testing.T) {
	ctx := t.Context()
	secret := func(name string) client.Object {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	}
	account := func(name string, pull ...string) client.Object {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		for _, p := range pull {
			sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: p})
		}
		return sa
	}
	artifact := &v1alpha1.Artifact{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"},
		Spec: v1alpha1.ArtifactSpec{
			PullSecrets:        []corev1.LocalObjectReference{{Name: "direct"}},
			CertSecretRef:      &corev1.LocalObjectReference{Name: "tls"},
			ServiceAccountName: "used",
		},
	}
	fc := fake.NewClientBuilder().WithScheme(unitScheme(t)).
		WithIndex(&v1alpha1.Artifact{}, indexSecretNames, secretNamesOf).
		WithIndex(&v1alpha1.Artifact{}, indexServiceAccount, func(o client.Object) []string {
			return []string{o.(*v1alpha1.Artifact).Spec.ServiceAccountName}
		}).
		WithObjects(artifact,
			secret("direct"), secret("tls"), secret("via-account"), secret("orphan"), secret("via-orphan-account"),
			account("used", "via-account"), account("orphan-account", "via-orphan-account"),
		).Build()
	r := &ArtifactReconciler{Client: fc, APIReader: fc}
	secrets, accounts := r.refs()
	for _, name := range []string{"used", "orphan-account"} {
		if _, err := accounts.get(ctx, fc, fc, types.NamespacedName{Namespace: "ns", Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"direct", "tls", "via-account", "orphan", "via-orphan-account"} {
		if _, err := secrets.get(ctx, fc, fc, types.NamespacedName{Namespace: "ns", Name: name}); err != nil {
			t.Fatal(err)
		}
	}

	// A Secret event finds the Artifact through a kept ServiceAccount.
	if reqs := r.artifactsForSecret(ctx, secret("via-account")); len(reqs) != 1 || reqs[0].Name != "a" {
		t.Errorf("artifactsForSecret(via-account) = %v, want the Artifact that uses its ServiceAccount", reqs)
	}

	r.sweepRefs(ctx)
	gotSecrets, gotAccounts := names(secrets.kept("ns")), names(accounts.kept("ns"))
	slices.Sort(gotSecrets)
	if want := []string{"direct", "tls", "via-account"}; !slices.Equal(gotSecrets, want) {
		t.Errorf("Secrets kept after a sweep: %v, want %v", gotSecrets, want)
	}
	if want := []string{"used"}; !slices.Equal(gotAccounts, want) {
		t.Errorf("ServiceAccounts kept after a sweep: %v, want %v", gotAccounts, want)
	}
}

func TestTrimForCache(t *testing.T) {
	now := metav1.Now()
	meta := metav1.ObjectMeta{
		Namespace: "ns", Name: "n", UID: "u", ResourceVersion: "7", DeletionTimestamp: &now,
		Labels:          map[string]string{"l": "v"},
		Annotations:     map[string]string{corev1.LastAppliedConfigAnnotation: `{"data":{"token":"c2VjcmV0"}}`},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "o"}},
		Finalizers:      []string{"f"},
	}

	partial := &metav1.PartialObjectMetadata{ObjectMeta: *meta.DeepCopy()}
	partial.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	out, err := TrimForCache(partial)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*metav1.PartialObjectMetadata)
	want := metav1.ObjectMeta{Namespace: "ns", Name: "n", UID: "u", ResourceVersion: "7", DeletionTimestamp: &now}
	if got.GroupVersionKind() != partial.GroupVersionKind() {
		t.Errorf("kind %v lost", got.GroupVersionKind())
	}
	if !equality.Semantic.DeepEqual(got.ObjectMeta, want) {
		t.Errorf("metadata kept %+v, want only %+v", got.ObjectMeta, want)
	}

	// An output ConfigMap keeps what an update from the cache must write
	// back, and its content only as the checksum of it.
	cm := &corev1.ConfigMap{ObjectMeta: *meta.DeepCopy(), Data: map[string]string{"k": "v"}, BinaryData: map[string][]byte{"b": {0xff}}}
	sum := contentChecksum(cm)
	out, err = TrimForCache(cm.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	kept := out.(*corev1.ConfigMap)
	wantCM := meta.DeepCopy()
	wantCM.ManagedFields = nil
	wantCM.Annotations[annotationObservedChecksum] = sum
	if !equality.Semantic.DeepEqual(kept.ObjectMeta, *wantCM) || kept.Data != nil || kept.BinaryData != nil {
		t.Errorf("ConfigMap kept %+v, want all metadata but managed fields, the content's checksum, and no content", kept)
	}
	if got := observedChecksum(kept); got != sum {
		t.Errorf("observedChecksum of the cached copy = %q, want the content's %q", got, sum)
	}
	if got := observedChecksum(cm); got != sum {
		t.Errorf("observedChecksum of a copy read from the API server = %q, want %q", got, sum)
	}

	// An Artifact loses kubectl's copy of its spec, and nothing else.
	art := &v1alpha1.Artifact{ObjectMeta: *meta.DeepCopy()}
	art.Annotations[v1alpha1.AnnotationReconcileRequestedAt] = "now"
	out, err = TrimForCache(art)
	if err != nil {
		t.Fatal(err)
	}
	trimmed := out.(*v1alpha1.Artifact)
	if _, ok := trimmed.Annotations[corev1.LastAppliedConfigAnnotation]; ok || trimmed.Annotations[v1alpha1.AnnotationReconcileRequestedAt] != "now" || trimmed.ManagedFields != nil || trimmed.Labels["l"] != "v" {
		t.Errorf("Artifact kept %+v, want its metadata but kubectl's last-applied annotation and managed fields", trimmed.ObjectMeta)
	}
}
