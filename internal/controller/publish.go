package controller

import (
	"context"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/blobcache"
	"github.com/ocisync/ocisync/internal/oci"
)

// publishStep writes the selected layers to the Artifact's output: a sync
// Job pulls them onto the claim of spec.volume, or the manager downloads
// them into the ConfigMap of spec.configMap or the Secret of spec.secret.
// Without an output there is nothing to write. Each output is written
// whole or not at all, so a failure leaves the last good content where it
// was.
func (r *ArtifactReconciler) publishStep(ctx context.Context, s *syncState) error {
	obj, spec := s.obj, &s.obj.Spec
	if spec.Volume != nil {
		var live string
		if v := obj.Status.Volume; v != nil {
			live = v.LiveDigest
		}
		wait, err := r.syncVolume(ctx, obj, s.resolved, s.access)
		if err != nil {
			return err
		}
		if wait != nil {
			return &pendingError{wait}
		}
		// The Job that just finished pulled the layers; a forced sync that
		// found the Job of this digest still kept pulled nothing.
		if obj.Status.Volume.LiveDigest != live {
			s.out.written, s.out.bytes = true, s.total
		}
	} else {
		obj.Status.Volume = nil
		if err := r.deleteSyncJobs(ctx, obj); err != nil {
			return err
		}
	}
	switch {
	case spec.ConfigMap != nil:
		return r.publishConfigMapStep(ctx, s)
	case spec.Secret != nil:
		return r.publishSecretStep(ctx, s)
	}
	return nil
}

// publishConfigMapStep downloads the layers and writes them as the
// ConfigMap of spec.configMap, after checking that they fit one.
func (r *ArtifactReconciler) publishConfigMapStep(ctx context.Context, s *syncState) error {
	if err := checkConfigMapFit(titles(s.layers), s.total); err != nil {
		return err
	}
	if err := refuseDirectories("ConfigMap", s.layers); err != nil {
		return err
	}
	// A forced sync downloads again: it is how to get past anything
	// cached, whatever it is.
	cache := r.BlobCache
	if s.force {
		cache = nil
	}
	files, err := download(ctx, s.repo, s.layers, cache)
	if err != nil {
		return err
	}
	for _, f := range files {
		s.out.bytes += int64(len(f.content))
	}
	written, err := r.publishConfigMap(ctx, s.obj, configMapFor(s.obj, s.desc.Digest.String(), files), s.force)
	if err != nil {
		return err
	}
	s.out.written = written
	return nil
}

// download fetches and verifies each layer into memory, through cache
// (nil: straight from the registry). Only the ConfigMap and Secret
// outputs do this, and they are bounded to 1 MiB in all.
func download(ctx context.Context, repo *oci.Repository, layers []ocispec.Descriptor, cache *blobcache.Cache) ([]file, error) {
	files := make([]file, 0, len(layers))
	for _, l := range layers {
		rc, err := cache.Open(ctx, repo.String(), l, func(ctx context.Context) (io.ReadCloser, error) {
			return repo.FetchBlob(ctx, l, maxConfigMapBytes)
		})
		if err != nil {
			return nil, err
		}
		content, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", l.Annotations[oci.AnnotationTitle], err)
		}
		files = append(files, file{name: l.Annotations[oci.AnnotationTitle], content: content})
	}
	return files, nil
}
