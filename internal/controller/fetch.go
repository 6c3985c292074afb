package controller

import (
	"context"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
)

// fetchStep ends the sync when the output is up to date (the digest
// published, the spec observed, the output intact) unless it is forced;
// otherwise it fetches the manifest by digest, so that a tag moved
// meanwhile cannot mix two artifacts, and selects the layers wanted,
// refusing a selection over spec.maxSize before anything is downloaded.
func (r *ArtifactReconciler) fetchStep(ctx context.Context, s *syncState) error {
	obj, spec := s.obj, &s.obj.Spec
	digest := s.desc.Digest.String()
	if !s.force && digest == obj.Status.Digest && obj.Status.ObservedGeneration == obj.Generation && isReady(obj) {
		intact, err := r.outputIntact(ctx, obj, digest)
		if err != nil {
			return err
		}
		if intact {
			s.upToDate = true
			return nil
		}
	}
	if s.target == nil {
		var err error
		if s.target, err = s.repo.FetchTarget(ctx, digest, s.platform); err != nil {
			return err
		}
	}
	s.artifactType = oci.ArtifactType(s.target.Manifest)
	if spec.ArtifactType != "" && s.artifactType != spec.ArtifactType {
		return stalled(v1alpha1.ReasonSelectorMismatch, "%s has artifact type %q, spec.artifactType wants %q", s.ref, s.artifactType, spec.ArtifactType)
	}
	layers, err := oci.SelectLayers(s.target.Manifest, spec.MediaType)
	if err != nil {
		return stalled(v1alpha1.ReasonSelectorMismatch, "%s: %w", s.ref, err)
	}
	s.layers, s.total = layers, 0
	for _, l := range layers {
		s.total += l.Size
	}
	if limit := maxSize(obj); s.total > limit {
		return stalled(v1alpha1.ReasonTooLarge, "%s: the selected layers hold %d bytes, over spec.maxSize (%d bytes); raise spec.maxSize or select fewer layers", s.ref, s.total, limit)
	}
	return nil
}

// outputIntact reports whether the output still holds digest as it was
// written. Only outputs the manager writes itself can drift unnoticed: a
// claim's content is the sync Job's, and without an output there is
// nothing to check.
func (r *ArtifactReconciler) outputIntact(ctx context.Context, obj *v1alpha1.Artifact, digest string) (bool, error) {
	switch {
	case obj.Spec.ConfigMap != nil:
		return r.configMapIntact(ctx, obj, digest)
	case obj.Spec.Secret != nil:
		return r.secretIntact(ctx, obj, digest)
	}
	return true, nil
}
