//go:build linux

package bench

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/controller"
)

// cachedSizes is what one object of each kind the manager caches holds
// in its heap, as the cache keeps it.
type cachedSizes struct {
	artifact, configMap, secretMeta int64
	artifactJSON, configMapJSON     int // the object as the API server sends it
}

// cachedFormCopies is how many copies each measure holds at once: enough
// that the heap's own granularity is lost in the average.
const cachedFormCopies = 2000

// measureCachedForms reads the Artifact art-0 of ns and its ConfigMap
// output from the API server, as the manager's informers receive them,
// and a Secret as a Helm release revision (48 KiB) that it creates, and
// measures the heap each takes once decoded and trimmed as the cache
// does (controller.TrimForCache): the Secret as the metadata-only watch
// holds it.
func measureCachedForms(t *testing.T, k8s client.Client, ns string) cachedSizes {
	t.Helper()
	ctx := t.Context()
	var res cachedSizes
	a := &ocisyncv1alpha1.Artifact{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "art-0"}, a); err != nil {
		t.Fatalf("reading Artifact art-0: %v", err)
	}
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "art-0"}, cm); err != nil {
		t.Fatalf("reading ConfigMap art-0: %v", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sh.helm.release.v1.app.v7", Labels: map[string]string{"owner": "helm", "name": "app", "status": "deployed", "version": "7"}},
		Type:       "helm.sh/release.v1",
		Data:       map[string][]byte{"release": []byte(strings.Repeat("H4sI", 12<<10))},
	}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatalf("creating a Secret to measure: %v", err)
	}
	meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: secret.ObjectMeta}

	encode := func(o any) []byte {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	aJSON, cmJSON, metaJSON := encode(a), encode(cm), encode(meta)
	res.artifactJSON, res.configMapJSON = len(aJSON), len(cmJSON)
	res.artifact = heapPerCopy(t, func() any { return decodeTrimmed(t, aJSON, &ocisyncv1alpha1.Artifact{}) })
	res.configMap = heapPerCopy(t, func() any { return decodeTrimmed(t, cmJSON, &corev1.ConfigMap{}) })
	res.secretMeta = heapPerCopy(t, func() any { return decodeTrimmed(t, metaJSON, &metav1.PartialObjectMetadata{}) })
	t.Logf("cached forms: Artifact %d B (%d B of JSON), ConfigMap output %d B (%d B of JSON), Secret metadata %d B",
		res.artifact, res.artifactJSON, res.configMap, res.configMapJSON, res.secretMeta)
	return res
}

// decodeTrimmed decodes data into obj, each string its own allocation as
// an informer's are, and trims it as the cache does.
func decodeTrimmed(t *testing.T, data []byte, obj any) any {
	if err := json.Unmarshal(data, obj); err != nil {
		t.Fatal(err)
	}
	out, err := controller.TrimForCache(obj)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// heapPerCopy is the live heap one result of build holds: cachedFormCopies
// of them kept at once, measured between two collections.
func heapPerCopy(t *testing.T, build func() any) int64 {
	t.Helper()
	keep := make([]any, 0, cachedFormCopies)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range cachedFormCopies {
		keep = append(keep, build())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	return int64(after.HeapAlloc-before.HeapAlloc) / cachedFormCopies
}
