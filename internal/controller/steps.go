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
//	rollout  annotate the workloads of spec.rollout with the digest
//	         published, also when the output was up to date (rollout.go)
//
// A step returns a *syncError (errors.go) whose kind decides between
// retry with backoff and Stalled, or a *pendingError while a sync Job
// runs; the first error ends the sync. Status is patched once, by
// Reconcile, after the last step.
type syncStep struct {
	name string
	run  func(context.Context, *syncState) error
	// upToDate: the step runs also when the output was found up to date,
	// which skips the steps that write it. Such a step acts on what the
	// output holds (status.digest), not on what this sync fetched.
	upToDate bool
	// registry: the step reads from the registry with the credentials
	// resolve chose, and writes nothing before its reads are done, so
	// that with a cloud provider a refused credential (401, 403) is
	// renewed and the step run once more within the sync. Resolve does
	// this itself, around the part after the client is made.
	registry bool
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

	// upToDate: the output holds the digest as it was written; of the
	// steps after fetch only those marked upToDate (rollout) run.
	upToDate bool
}

// steps returns the sync's steps in order.
func (r *ArtifactReconciler) steps() []syncStep {
	return []syncStep{
		{name: "resolve", run: r.resolveStep},
		{name: "verify", run: r.verifyStep, registry: true},
		{name: "fetch", run: r.fetchStep, registry: true},
		{name: "publish", run: r.publishStep, registry: true},
		{name: "record", run: recordStep},
		{name: "rollout", run: r.rolloutStep, upToDate: true},
	}
}

// syncSteps runs the steps within spec.timeout, stopping at the first
// error; once the output is found up to date only the steps marked
// upToDate run. out.step names the step that failed.
func (r *ArtifactReconciler) syncSteps(ctx context.Context, obj *v1alpha1.Artifact, force bool, out *syncOutcome) error {
	ctx, cancel := context.WithTimeout(ctx, timeout(obj))
	defer cancel()
	return runSteps(ctx, &syncState{obj: obj, force: force, out: out}, r.steps())
}

// runSteps runs steps in order on s (see syncSteps).
func runSteps(ctx context.Context, s *syncState, steps []syncStep) error {
	for _, step := range steps {
		if s.upToDate && !step.upToDate {
			continue
		}
		if err := s.run(ctx, step); err != nil {
			s.out.step = step.name
			return err
		}
	}
	return nil
}

// run runs step, through the cloud provider's retry when it reads from
// the registry.
func (s *syncState) run(ctx context.Context, step syncStep) error {
	if !step.registry || s.access == nil {
		return step.run(ctx, s)
	}
	return s.access.cloud.retry(ctx, func(ctx context.Context) error { return step.run(ctx, s) })
}
