package controller

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
)

// recordStep writes what the sync published into the status: the
// digest, the reference it was resolved from, and the name, media type,
// digest and size of each file (never their content).
func recordStep(_ context.Context, s *syncState) error {
	spec, st := &s.obj.Spec, &s.obj.Status
	digest := s.desc.Digest.String()
	s.out.newDigest = digest != st.Digest
	if spec.ConfigMap == nil && spec.Secret == nil && spec.Volume == nil {
		// Without an output, resolving is all a sync does.
		s.out.written = s.out.newDigest
	}
	now := metav1.Now()
	st.Digest = digest
	st.ShortDigest = shortDigest(digest)
	st.Tag = s.ref.Tag
	st.ResolvedReference = s.resolved.String()
	st.ArtifactType = s.artifactType
	st.Files = st.Files[:0]
	for _, l := range s.layers {
		st.Files = append(st.Files, v1alpha1.ArtifactFile{Name: l.Annotations[oci.AnnotationTitle], MediaType: l.MediaType, Digest: l.Digest.String(), Size: l.Size})
	}
	st.Size = s.total
	st.LastSyncTime = &now
	return nil
}
