package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"sort"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
)

// What the outputs the manager writes itself, the ConfigMap
// (configmap.go) and the Secret (secret.go), have in common: one key per
// file, at most 1 MiB, a checksum of the content, ownership by the
// Artifact and its labels.

// maxOutputBytes is what the API server accepts in one ConfigMap's data
// and binaryData together, and in one Secret's data.
const maxOutputBytes = 1 << 20

// fitHint says what to do about files that do not fit an output kind.
type fitHint struct {
	// keys: for a file that cannot be a key.
	keys string
	// size: for files over maxOutputBytes.
	size string
}

// checkOutputFit refuses, before anything is downloaded, files that an
// output object of kind cannot hold: names that are no valid key, a name
// twice, more than maxOutputBytes.
func checkOutputFit(kind string, hint fitHint, names []string, total int64) error {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		// Secret keys follow the ConfigMap key rules.
		if errs := validation.IsConfigMapKey(n); len(errs) > 0 {
			return stalled(v1alpha1.ReasonSelectorMismatch, "file %q cannot be a %s key (%s); %s", n, kind, errs[0], hint.keys)
		}
		// One key would silently hold only the last layer of the title.
		if seen[n] {
			return stalled(v1alpha1.ReasonSelectorMismatch, "two selected layers have the title %q, and a %s holds one value per key; select one of them with spec.mediaType", n, kind)
		}
		seen[n] = true
	}
	if total > maxOutputBytes {
		return stalled(v1alpha1.ReasonTooLarge, "the selected files hold %d bytes, more than the %d a %s can; %s", total, maxOutputBytes, kind, hint.size)
	}
	return nil
}

// refuseDirectories refuses folder layers (ORAS's unpack annotation),
// which an output of kind, holding files only, cannot take.
func refuseDirectories(kind string, layers []ocispec.Descriptor) error {
	for _, l := range layers {
		if l.Annotations[oci.AnnotationUnpack] == "true" {
			return stalled(v1alpha1.ReasonSelectorMismatch, "layer %q is a directory; a %s holds only files: select files with spec.mediaType or use spec.volume", l.Annotations[oci.AnnotationTitle], kind)
		}
	}
	return nil
}

// titles returns the titles of layers: the keys they are published
// under.
func titles(layers []ocispec.Descriptor) []string {
	names := make([]string, 0, len(layers))
	for _, l := range layers {
		names = append(names, l.Annotations[oci.AnnotationTitle])
	}
	return names
}

// checksumOf hashes text and binary values in a canonical order; a key
// moved from one to the other changes it.
func checksumOf(data map[string]string, binaryData map[string][]byte) string {
	h := sha256.New()
	keys := make([]string, 0, len(data)+len(binaryData))
	for k := range data {
		keys = append(keys, "d/"+k)
	}
	for k := range binaryData {
		keys = append(keys, "b/"+k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var v []byte
		if k[0] == 'd' {
			v = []byte(data[k[2:]])
		} else {
			v = binaryData[k[2:]]
		}
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(v))
		h.Write(v)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// controlledBy reports whether obj is o's controlling owner.
func controlledBy(o metav1.Object, obj metav1.Object) bool {
	owner := metav1.GetControllerOf(o)
	return owner != nil && owner.UID == obj.GetUID()
}

// outputConflict reports an output object of that name that belongs to
// someone else.
func outputConflict(kind, name, field string) error {
	return transient(v1alpha1.ReasonOutputConflict, "%s %q already exists and is not owned by this Artifact; it is left alone: delete it or choose another %s", kind, name, field)
}

// labelOutput returns the labels an intact output of obj needs, and
// whether they differ from current: ocisync's label, without which the
// cache would miss a ConfigMap output on every sync, and the shard labels
// of obj (one that moved here from another shard).
func (r *ArtifactReconciler) labelOutput(current map[string]string, obj *v1alpha1.Artifact) (map[string]string, bool) {
	labels := make(map[string]string, len(current)+1)
	for k, v := range current {
		labels[k] = v
	}
	labels, changed := r.Scope.relabel(labels, obj.Labels)
	if want := labelValue(obj.Name); labels[v1alpha1.LabelArtifactName] != want {
		labels[v1alpha1.LabelArtifactName] = want
		changed = true
	}
	return labels, changed
}

// mergeOutputMeta carries desired's labels, annotations and owner
// references into updated, an output object as it exists, keeping the
// labels and annotations others added; drop names annotations to remove.
// A shard label obj no longer has goes too.
func (r *ArtifactReconciler) mergeOutputMeta(updated, desired metav1.Object, obj *v1alpha1.Artifact, drop ...string) {
	updated.SetOwnerReferences(desired.GetOwnerReferences())
	labels := updated.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range desired.GetLabels() {
		labels[k] = v
	}
	labels, _ = r.Scope.relabel(labels, obj.Labels)
	updated.SetLabels(labels)
	annotations := updated.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	for _, k := range drop {
		delete(annotations, k)
	}
	for k, v := range desired.GetAnnotations() {
		annotations[k] = v
	}
	updated.SetAnnotations(annotations)
}

// sameOutputMeta reports whether an output as read (current) has the
// labels, annotations and owners an update would leave (updated), the
// annotations in ignore apart: the write would change no metadata.
func sameOutputMeta(current, updated metav1.Object, ignore ...string) bool {
	annotations := maps.Clone(current.GetAnnotations())
	for _, k := range ignore {
		delete(annotations, k)
	}
	return maps.Equal(annotations, updated.GetAnnotations()) && maps.Equal(current.GetLabels(), updated.GetLabels()) &&
		equality.Semantic.DeepEqual(current.GetOwnerReferences(), updated.GetOwnerReferences())
}
