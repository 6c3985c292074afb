// Package rollout is what ocisync knows of the workloads that spec.rollout
// restarts: the kinds it supports, the Pod template annotation that
// carries an Artifact's digest, and the patch that sets it. Setting the
// annotation changes the Pod template, so the workload's own controller
// rolls its Pods out with its usual strategy; ocisync never deletes or
// restarts a Pod itself.
//
// The package talks to no API server; internal/controller does, with
// what this package builds.
package rollout

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// kinds are the workloads spec.rollout supports, all of group apps/v1 and
// all with a Pod template at spec.template.
var kinds = []string{v1alpha1.WorkloadKindDeployment, v1alpha1.WorkloadKindStatefulSet, v1alpha1.WorkloadKindDaemonSet}

// Kinds returns the kinds of workload spec.rollout supports.
func Kinds() []string { return slices.Clone(kinds) }

// GroupVersionKind returns the apps/v1 GroupVersionKind of kind, and false
// for a kind spec.rollout does not support.
func GroupVersionKind(kind string) (schema.GroupVersionKind, bool) {
	if !slices.Contains(kinds, kind) {
		return schema.GroupVersionKind{}, false
	}
	return schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: kind}, true
}

// Metadata returns an empty PartialObjectMetadata of kind, to read or
// watch a workload's metadata only; nil for a kind not supported.
func Metadata(kind string) *metav1.PartialObjectMetadata {
	gvk, ok := GroupVersionKind(kind)
	if !ok {
		return nil
	}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	return m
}

// Object returns an empty unstructured object of kind, to read a whole
// workload; nil for a kind not supported.
func Object(kind string) *unstructured.Unstructured {
	gvk, ok := GroupVersionKind(kind)
	if !ok {
		return nil
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

// IndexKey is the value under which an Artifact is indexed for a workload
// it names: kind/name. Names cannot contain "/", so it is unambiguous.
func IndexKey(kind, name string) string { return kind + "/" + name }

// Limits of an annotation key's name part (after the prefix's "/"),
// which must be a qualified name: at most 63 characters.
const (
	maxNameLength = 63
	// hashLength is the hex digits of the hash that ends a shortened key.
	hashLength = 10
)

// AnnotationKey returns the Pod template annotation that carries the
// digest of the Artifact named artifact: ocisync.io/digest-<name>. The
// part after "/" must be a qualified name of at most 63 characters; an
// Artifact name is a DNS subdomain of up to 253 characters, so a name that
// does not fit is cut and ends with "-" and 10 hex digits of its SHA-256:
// the key stays deterministic, and distinct for distinct names but for a
// hash collision.
func AnnotationKey(artifact string) string {
	prefix, name, _ := strings.Cut(v1alpha1.AnnotationRolloutPrefix, "/")
	part := name + artifact
	if len(part) > maxNameLength {
		sum := sha256.Sum256([]byte(artifact))
		keep := maxNameLength - len(name) - 1 - hashLength
		part = name + artifact[:keep] + "-" + hex.EncodeToString(sum[:])[:hashLength]
	}
	return prefix + "/" + part
}

// Patch returns the JSON merge patch that sets the Pod template
// annotation key to digest, leaving every other annotation as it is.
func Patch(key, digest string) ([]byte, error) {
	patch := map[string]any{
		"spec": map[string]any{
			"template": map[string]any{
				"metadata": map[string]any{
					"annotations": map[string]string{key: digest},
				},
			},
		},
	}
	data, err := json.Marshal(patch)
	if err != nil {
		return nil, fmt.Errorf("building the rollout patch: %w", err)
	}
	return data, nil
}

// TemplateAnnotation returns the value of the Pod template annotation key
// of a workload read whole, and whether it is set.
func TemplateAnnotation(workload *unstructured.Unstructured, key string) (string, bool) {
	v, ok, err := unstructured.NestedString(workload.Object, "spec", "template", "metadata", "annotations", key)
	if err != nil {
		return "", false
	}
	return v, ok
}
