package controller

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

// A sync is a fixed list of named steps, each in a file of its own:
//
//	resolve  the reference to a digest (resolve.go)
//	verify   its signature, with spec.verify (verify.go)
//	fetch    its manifest and select the layers, unless the output is
//	         up to date (fetch.go)
//	publish  the layers to the output (publish.go)
//	record   what was published in the status (record.go)
//
// A step returns a *syncError (errors.go) whose kind decides between
// retry with backoff and Stalled, or a *pendingError while a sync Job
// runs; the first error ends the sync. Status is patched once, by
// Reconcile, after the last step.
type syncStep struct {
	name string
	run  func(context.Context, *syncState) error
}

// syncState is what the steps of one sync share: each reads what the
// steps before it found and adds its own.
type syncState struct {
	obj   *v1alpha1.Artifact
	force bool
	out   *syncOutcome

	// Set by resolve.
	ref      reference.Reference // with the tag a semver range chose
	resolved reference.Reference // ref with the digest
	platform *oci.Platform
	client   *oci.Client
	access   *registryAccess
	repo     *oci.Repository
	desc     ocispec.Descriptor
	target   *oci.Target // fetched already when nothing was resolved before

	// Set by fetch.
	artifactType string
	layers       []ocispec.Descriptor
	total        int64 // bytes of the layers

	// upToDate: the output holds the digest as it was written; the steps
	// after fetch have nothing to do.
	upToDate bool
}

// steps returns the sync's steps in order.
func (r *ArtifactReconciler) steps() []syncStep {
	return []syncStep{
		{"resolve", r.resolveStep},
		{"verify", r.verifyStep},
		{"fetch", r.fetchStep},
		{"publish", r.publishStep},
		{"record", recordStep},
	}
}

// syncSteps runs the steps within spec.timeout, stopping at the first
// error or once the output is found up to date; out.step names the step
// that failed.
func (r *ArtifactReconciler) syncSteps(ctx context.Context, obj *v1alpha1.Artifact, force bool, out *syncOutcome) error {
	ctx, cancel := context.WithTimeout(ctx, timeout(obj))
	defer cancel()
	s := &syncState{obj: obj, force: force, out: out}
	for _, step := range r.steps() {
		if err := step.run(ctx, s); err != nil {
			out.step = step.name
			return err
		}
		if s.upToDate {
			return nil
		}
	}
	return nil
}
