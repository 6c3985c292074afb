package controller

import (
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Scope is the part of a cluster one manager reconciles, so that several
// managers can split a cluster between them (sharding) and each caches
// only its part. The zero Scope is the whole cluster.
type Scope struct {
	// Selector picks the Artifacts (--watch-label-selector); nil or empty
	// selects all. The outputs of an Artifact carry copies of its labels
	// for the keys Selector names, so that they fall into the same shard:
	// see outputLabels.
	Selector labels.Selector
	// Namespaces are the only namespaces watched (--watch-namespaces);
	// empty means all.
	Namespaces []string
}

// requirements returns the Selector's requirements, none when it selects
// everything.
func (s Scope) requirements() labels.Requirements {
	if s.Selector == nil || s.Selector.Empty() {
		return nil
	}
	reqs, _ := s.Selector.Requirements()
	return reqs
}

// sharded reports whether the manager reconciles only some Artifacts by
// their labels: then its cache holds only the outputs labelled for its
// shard, and an output of an Artifact that moved here may be missing
// from it until relabelled.
func (s Scope) sharded() bool { return len(s.requirements()) > 0 }

// shardKeys returns the label keys the Selector names, sorted and
// without duplicates.
func (s Scope) shardKeys() []string {
	var keys []string
	for _, r := range s.requirements() {
		keys = append(keys, r.Key())
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// outputLabels returns the labels an output of an Artifact with the labels
// artifact carries for the shard: the Artifact's value of each key the
// Selector names, where it has one. A requirement looks at its own key
// only, so the Selector matches these labels exactly when it matches the
// Artifact's, whatever else the output carries.
func (s Scope) outputLabels(artifact map[string]string) map[string]string {
	out := map[string]string{}
	for _, k := range s.shardKeys() {
		// A label's value is always valid; the check keeps an invalid
		// one from making every write of the output fail.
		if v, ok := artifact[k]; ok && len(validation.IsValidLabelValue(v)) == 0 {
			out[k] = v
		}
	}
	return out
}

// relabel makes the labels dst of an output carry the shard labels of an
// Artifact with the labels artifact: the values outputLabels gives, and
// none of the keys the Selector names that the Artifact lacks (an
// Artifact that moved to a shard selecting "!key"). It returns the labels,
// allocated if dst was nil and a label is added, and whether they changed.
func (s Scope) relabel(dst, artifact map[string]string) (map[string]string, bool) {
	want := s.outputLabels(artifact)
	changed := false
	for _, k := range s.shardKeys() {
		v, ok := want[k]
		old, had := dst[k]
		switch {
		case ok && (!had || old != v):
			if dst == nil {
				dst = map[string]string{}
			}
			dst[k] = v
			changed = true
		case !ok && had:
			delete(dst, k)
			changed = true
		}
	}
	return dst, changed
}

// withShardLabels returns a copy of base with the shard labels of an
// Artifact with the labels artifact.
func (s Scope) withShardLabels(base, artifact map[string]string) map[string]string {
	out := maps.Clone(base)
	out, _ = s.relabel(out, artifact)
	return out
}
