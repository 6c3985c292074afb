package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// maxConfigMapBytes is what the API server accepts in one ConfigMap's
// data and binaryData together.
const maxConfigMapBytes = maxOutputBytes

// annotationChecksum holds a hash of the ConfigMap's content as ocisync
// wrote it, so that an edit by someone else is noticed without
// downloading anything.
const annotationChecksum = "ocisync.io/checksum"

// annotationObservedChecksum is set on the cache's copies of output
// ConfigMaps only, never written: the cache keeps the checksum of the
// content it saw instead of the content, up to 1 MiB per output, which
// the reconciler never reads back (TrimForCache).
const annotationObservedChecksum = "ocisync.io/observed-checksum"

// observedChecksum is the checksum of cm's content: the one the cache
// recorded when it dropped the content, or else computed from it.
func observedChecksum(cm *corev1.ConfigMap) string {
	if sum, ok := cm.Annotations[annotationObservedChecksum]; ok {
		return sum
	}
	return contentChecksum(cm)
}

// trimConfigMap turns a cached output ConfigMap into its checksum: the
// content goes, the checksum of what it was stays (observedChecksum).
func trimConfigMap(cm *corev1.ConfigMap) {
	sum := contentChecksum(cm)
	cm.Data, cm.BinaryData = nil, nil
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[annotationObservedChecksum] = sum
}

// file is one selected layer with its verified content.
type file struct {
	name    string
	content []byte
}

// configMapFor builds the desired ConfigMap: valid UTF-8 in data, the
// rest in binaryData.
func configMapFor(obj *v1alpha1.Artifact, digest string, files []file) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      obj.Spec.ConfigMap.Name,
			Namespace: obj.Namespace,
		},
	}
	for _, f := range files {
		if utf8.Valid(f.content) {
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[f.name] = string(f.content)
		} else {
			if cm.BinaryData == nil {
				cm.BinaryData = map[string][]byte{}
			}
			cm.BinaryData[f.name] = f.content
		}
	}
	cm.Labels = map[string]string{v1alpha1.LabelArtifactName: labelValue(obj.Name)}
	cm.Annotations = map[string]string{
		v1alpha1.AnnotationDigest: digest,
		annotationChecksum:        contentChecksum(cm),
	}
	return cm
}

// labelValue fits an object name (up to 253 characters) into a label
// value (up to 63).
func labelValue(name string) string {
	if len(validation.IsValidLabelValue(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:50] + "-" + hex.EncodeToString(sum[:])[:12]
}

// contentChecksum hashes data and binaryData in a canonical order.
func contentChecksum(cm *corev1.ConfigMap) string {
	return checksumOf(cm.Data, cm.BinaryData)
}

// checkConfigMapFit refuses, before anything is downloaded, files that a
// ConfigMap cannot hold.
func checkConfigMapFit(names []string, total int64) error {
	return checkOutputFit("ConfigMap", fitHint{
		keys: "select other layers with spec.mediaType or use spec.volume",
		size: "use spec.volume for artifacts this large",
	}, names, total)
}

// ownedConfigMap returns the ConfigMap spec.configMap names, whether it
// exists, and an OutputConflict error when it is not this Artifact's.
//
// The cache holds only labelled ConfigMaps, so when it has none the API
// server is asked: the name may be taken by someone else's ConfigMap, or
// by an output written before ocisync labelled them, or labelled for the
// shard of another manager before its Artifact moved to this one. A
// labelled output, the steady state, costs no API request.
func (r *ArtifactReconciler) ownedConfigMap(ctx context.Context, obj *v1alpha1.Artifact) (*corev1.ConfigMap, bool, error) {
	key := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Spec.ConfigMap.Name}
	cm := &corev1.ConfigMap{}
	err := r.Get(ctx, key, cm)
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{}
		err = r.reader().Get(ctx, key, cm)
	}
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, transient(v1alpha1.ReasonOutputFailed, "reading ConfigMap %q: %w", obj.Spec.ConfigMap.Name, err)
	}
	if !controlledBy(cm, obj) {
		return nil, true, outputConflict("ConfigMap", cm.Name, "spec.configMap.name")
	}
	return cm, true, nil
}

// configMapIntact reports whether the output still holds digest exactly
// as it was written. An intact output without ocisync's label, or without
// the shard labels of its Artifact (one that moved here from another
// shard), is labelled: the cache would miss it on every sync, and its
// drift would go unnoticed.
func (r *ArtifactReconciler) configMapIntact(ctx context.Context, obj *v1alpha1.Artifact, digest string) (bool, error) {
	cm, exists, err := r.ownedConfigMap(ctx, obj)
	if err != nil || !exists {
		return false, err
	}
	if cm.Annotations[v1alpha1.AnnotationDigest] != digest || cm.Annotations[annotationChecksum] != observedChecksum(cm) {
		return false, nil
	}
	labelled := cm.DeepCopy()
	var changed bool
	labelled.Labels, changed = r.labelOutput(cm.Labels, obj)
	if changed {
		// A patch of the labels alone: the cached copy has no content to
		// send back, and one read from the API server needs none sent.
		if err := r.Patch(ctx, labelled, client.MergeFrom(cm)); err != nil {
			return false, transient(v1alpha1.ReasonOutputFailed, "labelling ConfigMap %q as this Artifact's output: %w", cm.Name, err)
		}
	}
	return true, nil
}

// publishConfigMap writes desired, with the shard labels of obj, in one
// create or update, and reports whether it wrote. Unless force is set, a
// ConfigMap that holds desired already, content and metadata, is left as
// it is: a sync that read its Artifact from a cache not yet showing the
// status of the sync that wrote it would otherwise write it again and
// announce it twice.
func (r *ArtifactReconciler) publishConfigMap(ctx context.Context, obj *v1alpha1.Artifact, desired *corev1.ConfigMap, force bool) (bool, error) {
	desired.Labels = r.Scope.withShardLabels(desired.Labels, obj.Labels)
	if err := controllerutil.SetControllerReference(obj, desired, r.Scheme); err != nil {
		return false, transient(v1alpha1.ReasonOutputFailed, "setting the owner of ConfigMap %q: %w", desired.Name, err)
	}
	current, exists, err := r.ownedConfigMap(ctx, obj)
	if err != nil {
		return false, err
	}
	if !exists {
		if err := r.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return false, transient(v1alpha1.ReasonOutputConflict, "ConfigMap %q was created by someone else meanwhile; it is left alone", desired.Name)
			}
			return false, transient(v1alpha1.ReasonOutputFailed, "creating ConfigMap %q: %w", desired.Name, err)
		}
		return true, nil
	}
	updated := current.DeepCopy()
	updated.Data, updated.BinaryData = desired.Data, desired.BinaryData
	r.mergeOutputMeta(updated, desired, obj, annotationObservedChecksum)
	if !force && holdsConfigMap(current, updated) {
		return false, nil
	}
	// Update, not patch: the resourceVersion makes a concurrent edit fail
	// the write instead of being merged into it.
	if err := r.Update(ctx, updated); err != nil {
		return false, transient(v1alpha1.ReasonOutputFailed, "updating ConfigMap %q: %w", desired.Name, err)
	}
	return true, nil
}

// holdsConfigMap reports whether current, as read (from the cache: its
// content replaced by a checksum), is already updated: the same content
// and the same labels, annotations and owners.
func holdsConfigMap(current, updated *corev1.ConfigMap) bool {
	return observedChecksum(current) == contentChecksum(updated) && sameOutputMeta(current, updated, annotationObservedChecksum)
}
