package controller

import (
	"maps"
	"slices"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

func mustSelector(t *testing.T, s string) labels.Selector {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatalf("labels.Parse(%q): %v", s, err)
	}
	return sel
}

// TestOutputLabels checks that an output carries the Artifact's labels
// for exactly the keys the selector names, so that the selector matches
// the output exactly when it matches the Artifact.
func TestOutputLabels(t *testing.T) {
	artifacts := []map[string]string{
		nil,
		{"ocisync.io/shard": "a"},
		{"ocisync.io/shard": "b", "team": "x"},
		{"team": "x", "env": "prod"},
		{"team": "y", "env": "dev", "tier": "3"},
		{"ocisync.io/shard": "a", "team": "x", "env": "prod", "unrelated": "z"},
	}
	tests := []struct {
		selector string
		keys     []string
		// copied is what outputLabels gives for artifacts[5].
		copied map[string]string
	}{
		{"", nil, map[string]string{}},
		{"ocisync.io/shard=a", []string{"ocisync.io/shard"}, map[string]string{"ocisync.io/shard": "a"}},
		{"!ocisync.io/shard", []string{"ocisync.io/shard"}, map[string]string{"ocisync.io/shard": "a"}},
		{"ocisync.io/shard in (a,b)", []string{"ocisync.io/shard"}, map[string]string{"ocisync.io/shard": "a"}},
		{"ocisync.io/shard notin (a)", []string{"ocisync.io/shard"}, map[string]string{"ocisync.io/shard": "a"}},
		{"team=x,env!=dev", []string{"env", "team"}, map[string]string{"team": "x", "env": "prod"}},
		{"team,!tier", []string{"team", "tier"}, map[string]string{"team": "x"}},
		{"tier>2", []string{"tier"}, map[string]string{}},
		// One key named twice is copied once.
		{"team!=y,team!=z", []string{"team"}, map[string]string{"team": "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.selector, func(t *testing.T) {
			sel := mustSelector(t, tt.selector)
			s := Scope{Selector: sel}
			if got := s.shardKeys(); !slices.Equal(got, tt.keys) {
				t.Errorf("shardKeys = %q, want %q", got, tt.keys)
			}
			if got := s.outputLabels(artifacts[5]); !maps.Equal(got, tt.copied) {
				t.Errorf("outputLabels = %v, want %v", got, tt.copied)
			}
			for _, a := range artifacts {
				// An output as ocisync makes it, one as another shard
				// left it (its values of the keys, and a key the
				// Artifact lacks), and one someone labelled more.
				for _, base := range []map[string]string{
					{v1alpha1.LabelArtifactName: "art"},
					{v1alpha1.LabelArtifactName: "art", "ocisync.io/shard": "c", "team": "q", "tier": "9", "env": "x"},
					nil,
				} {
					out := s.withShardLabels(base, a)
					if got, want := sel.Matches(labels.Set(out)), sel.Matches(labels.Set(a)); got != want {
						t.Errorf("selector %q matches output %v: %v, Artifact %v: %v", tt.selector, out, got, a, want)
					}
					if base != nil && out[v1alpha1.LabelArtifactName] != "art" {
						t.Errorf("the output lost its label %s: %v", v1alpha1.LabelArtifactName, out)
					}
					for k, v := range out {
						if !slices.Contains(s.shardKeys(), k) && base[k] != v {
							t.Errorf("output label %s=%s is neither a shard key nor the output's own (base %v, Artifact %v)", k, v, base, a)
						}
					}
					// Relabelling what is already labelled changes nothing:
					// the steady state writes nothing.
					if again, changed := s.relabel(maps.Clone(out), a); changed || !maps.Equal(again, out) {
						t.Errorf("relabelling %v again for Artifact %v changed it to %v", out, a, again)
					}
				}
			}
		})
	}
}

func TestRelabelReportsChanges(t *testing.T) {
	s := Scope{Selector: mustSelector(t, "ocisync.io/shard=a")}
	tests := []struct {
		name          string
		output, artfc map[string]string
		want          map[string]string
		changed       bool
	}{
		{"unchanged", map[string]string{"k": "v", "ocisync.io/shard": "a"}, map[string]string{"ocisync.io/shard": "a"}, map[string]string{"k": "v", "ocisync.io/shard": "a"}, false},
		{"added", map[string]string{"k": "v"}, map[string]string{"ocisync.io/shard": "a"}, map[string]string{"k": "v", "ocisync.io/shard": "a"}, true},
		{"added to nil", nil, map[string]string{"ocisync.io/shard": "a"}, map[string]string{"ocisync.io/shard": "a"}, true},
		{"changed", map[string]string{"ocisync.io/shard": "b"}, map[string]string{"ocisync.io/shard": "a"}, map[string]string{"ocisync.io/shard": "a"}, true},
		{"removed", map[string]string{"k": "v", "ocisync.io/shard": "b"}, nil, map[string]string{"k": "v"}, true},
		{"nothing to do on nil", nil, map[string]string{"team": "x"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := s.relabel(maps.Clone(tt.output), tt.artfc)
			if changed != tt.changed || !maps.Equal(got, tt.want) {
				t.Errorf("relabel(%v, %v) = %v, %v; want %v, %v", tt.output, tt.artfc, got, changed, tt.want, tt.changed)
			}
		})
	}
	if got, changed := (Scope{}).relabel(map[string]string{"ocisync.io/shard": "b"}, nil); changed || got["ocisync.io/shard"] != "b" {
		t.Errorf("without a selector relabel touched the labels: %v, %v", got, changed)
	}
}

// TestCacheOptionsForAScope checks what each cache of a sharded or
// namespaced manager holds.
func TestCacheOptionsForAScope(t *testing.T) {
	mine := map[string]string{"ocisync.io/shard": "a"}
	theirs := map[string]string{"ocisync.io/shard": "b"}
	tests := []struct {
		name       string
		scope      Scope
		artifacts  string // the Artifact cache's selector; "-" for no entry (all)
		outputs    string
		namespaces []string
	}{
		{"the whole cluster", Scope{}, "-", v1alpha1.LabelArtifactName, nil},
		{"an empty selector", Scope{Selector: labels.Everything()}, "-", v1alpha1.LabelArtifactName, nil},
		{"a shard", Scope{Selector: mustSelector(t, "ocisync.io/shard=a")}, "ocisync.io/shard=a", v1alpha1.LabelArtifactName + ",ocisync.io/shard=a", nil},
		{"namespaces", Scope{Namespaces: []string{"team-a", "team-b"}}, "-", v1alpha1.LabelArtifactName, []string{"team-a", "team-b"}},
		{"a shard of two namespaces", Scope{Selector: mustSelector(t, "ocisync.io/shard=a"), Namespaces: []string{"team-a", "team-b"}},
			"ocisync.io/shard=a", v1alpha1.LabelArtifactName + ",ocisync.io/shard=a", []string{"team-a", "team-b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := CacheOptions(tt.scope)
			by := map[string]cache.ByObject{}
			for o, b := range opts.ByObject {
				by[kindOf(o)] = b
			}
			if a, ok := by["Artifact"]; tt.artifacts == "-" && ok {
				t.Errorf("Artifacts are cached by %v; want all", a.Label)
			} else if tt.artifacts != "-" && (!ok || a.Label == nil || a.Label.String() != tt.artifacts) {
				t.Errorf("Artifacts are cached by %v; want %s", a.Label, tt.artifacts)
			}
			for _, kind := range []string{"ConfigMap", "Job"} {
				b, ok := by[kind]
				if !ok || b.Label == nil || b.Label.String() != tt.outputs {
					t.Fatalf("%ss are cached by %v; want %s", kind, b.Label, tt.outputs)
				}
				// An output of this shard's Artifact is cached, one of
				// another shard's is not (with a selector), one not
				// ocisync's never.
				sel, s := b.Label, tt.scope
				if !sel.Matches(labels.Set(s.withShardLabels(map[string]string{v1alpha1.LabelArtifactName: "art"}, mine))) {
					t.Errorf("%s cache misses an output of this shard", kind)
				}
				if s.sharded() && sel.Matches(labels.Set(s.withShardLabels(map[string]string{v1alpha1.LabelArtifactName: "art"}, theirs))) {
					t.Errorf("%s cache holds an output of another shard", kind)
				}
				if sel.Matches(labels.Set(mine)) {
					t.Errorf("%s cache holds an object ocisync did not make", kind)
				}
			}
			var namespaces []string
			for ns := range opts.DefaultNamespaces {
				namespaces = append(namespaces, ns)
			}
			slices.Sort(namespaces)
			if !slices.Equal(namespaces, tt.namespaces) {
				t.Errorf("DefaultNamespaces %v, want %v", namespaces, tt.namespaces)
			}
			if opts.DefaultTransform == nil || !opts.ReaderFailOnMissingInformer {
				t.Error("the scope dropped the trimming transform or the failure on a missing informer")
			}
		})
	}
}

func kindOf(o client.Object) string {
	switch o.(type) {
	case *v1alpha1.Artifact:
		return "Artifact"
	case *corev1.ConfigMap:
		return "ConfigMap"
	case *batchv1.Job:
		return "Job"
	}
	return "?"
}
