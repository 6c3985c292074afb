package controller

import (
	"context"

	"github.com/Masterminds/semver/v3"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

// resolveStep checks the spec, builds the registry client with the
// Artifact's credentials, and resolves the reference (the newest tag in a
// semver range, or the tag or digest named) to a manifest digest.
func (r *ArtifactReconciler) resolveStep(ctx context.Context, s *syncState) error {
	spec := &s.obj.Spec
	if spec.Platform != "" {
		p, err := oci.ParsePlatform(spec.Platform)
		if err != nil {
			return stalled(v1alpha1.ReasonInvalidSpec, "spec.platform: %w", err)
		}
		s.platform = &p
	}
	var constraint *semver.Constraints
	if spec.SemVer != "" {
		c, err := semver.NewConstraint(spec.SemVer)
		if err != nil {
			return stalled(v1alpha1.ReasonInvalidSpec, "spec.semver %q is not a valid semantic version range: %v", spec.SemVer, err)
		}
		constraint = c
	}
	ref, err := reference.Parse(spec.Reference)
	if err != nil {
		return stalled(v1alpha1.ReasonInvalidReference, "spec.reference: %w", err)
	}
	if s.client, s.access, err = r.registryClient(ctx, s.obj); err != nil {
		return err
	}
	s.repo = s.client.Repository(ref)
	// A cloud credential the registry refuses (401, 403) is renewed and
	// the resolution tried once more within this sync.
	if err := s.access.cloud.retry(ctx, func(ctx context.Context) error {
		return s.resolveDigest(ctx, ref, constraint)
	}); err != nil {
		return err
	}
	return nil
}

// resolveDigest is the resolve step's registry part: the tag, then the
// digest of ref.
func (s *syncState) resolveDigest(ctx context.Context, ref reference.Reference, constraint *semver.Constraints) error {
	spec := &s.obj.Spec
	var err error
	if constraint != nil {
		tag, err := newestTag(ctx, s.repo, constraint, spec.SemVer)
		if err != nil {
			return err
		}
		if ref, err = ref.WithTag(tag); err != nil {
			return err
		}
	} else {
		ref = ref.WithDefaultTag()
	}
	s.ref = ref
	// An Artifact never resolved needs the manifest whatever its digest:
	// one GET gives both, verified against the digest the registry
	// names. Later syncs ask with a HEAD whether anything changed.
	var desc ocispec.Descriptor
	if s.obj.Status.Digest == "" {
		if s.target, err = s.repo.FetchTarget(ctx, ref.Reference(), s.platform); err != nil {
			return err
		}
		desc = s.target.Root
	} else if desc, err = s.repo.Resolve(ctx, ref.Reference()); err != nil {
		return err
	}
	s.desc = desc
	s.out.digest = desc.Digest.String()
	// String leaves the ":" out for a reference by digest alone.
	s.resolved = ref
	s.resolved.Digest = desc.Digest
	return nil
}

// newestTag lists the repository's tags and returns the newest that
// satisfies c. Tags that are not semantic versions are ignored.
func newestTag(ctx context.Context, repo *oci.Repository, c *semver.Constraints, raw string) (string, error) {
	tags, err := repo.Tags(ctx)
	if err != nil {
		return "", err
	}
	var best *semver.Version
	bestTag := ""
	for _, t := range tags {
		v, err := semver.NewVersion(t)
		if err != nil || !c.Check(v) {
			continue
		}
		if best == nil || v.GreaterThan(best) {
			best, bestTag = v, t
		}
	}
	if best == nil {
		return "", transient(v1alpha1.ReasonNotFound, "no tag of %s satisfies spec.semver %q (%d tags listed)", repo, raw, len(tags))
	}
	return bestTag, nil
}
