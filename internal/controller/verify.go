package controller

import (
	"context"
	"errors"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/verify"
)

// verifyStep verifies the resolved digest's signature (verifySignature).
func (r *ArtifactReconciler) verifyStep(ctx context.Context, s *syncState) error {
	return r.verifySignature(ctx, s.obj, s.repo, s.client.MaxManifestBytes(), s.desc)
}

// verifySignature is the verify step: with spec.verify, the digest desc
// is published only once a signature of it verifies, by the provider of
// spec.verify.provider (cosign or notation), against the trust material
// of spec.verify.secretRef. A digest verified before against the
// same material (status.verified) is not verified again, so the steady
// state stays one HEAD; nor is one another Artifact verified moments ago
// (verifiedCache). A signature that does not verify is retried with
// backoff (it may be pushed after the artifact), not Stalled; the output
// is left as it was because this step runs before any is written.
func (r *ArtifactReconciler) verifySignature(ctx context.Context, obj *v1alpha1.Artifact, repo *oci.Repository, maxBlob int64, desc ocispec.Descriptor) error {
	spec := obj.Spec.Verify
	if spec == nil {
		obj.Status.Verified = nil
		apimeta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionSourceVerified)
		return nil
	}
	secret, err := r.secret(ctx, obj.Namespace, spec.SecretRef.Name, "spec.verify.secretRef")
	if err != nil {
		unverified(obj, v1alpha1.ReasonCredentialsNotFound, err.Error())
		return err
	}
	ids := make([]verify.Identity, 0, len(spec.MatchOIDCIdentity))
	settings := []string{spec.Provider}
	for _, id := range spec.MatchOIDCIdentity {
		ids = append(ids, verify.Identity{Issuer: id.Issuer, Subject: id.Subject})
		settings = append(settings, id.Issuer, id.Subject)
	}
	scope := verify.RepositoryScope(repo)
	if spec.Provider == v1alpha1.VerifyProviderNotation {
		// The trust policy statement that applies depends on the
		// repository: the same digest in another one verifies again.
		settings = append(settings, scope)
	}
	hash := verify.TrustHash(secret.Data, settings...)
	if v := obj.Status.Verified; v != nil && v.Digest == desc.Digest.String() && v.Provider == spec.Provider && v.TrustHash == hash && isSourceVerified(obj) {
		return nil
	}
	key := verifiedKey(repo.String(), desc.Digest.String(), hash)
	if res, ok := r.verified.get(key); ok {
		markVerified(obj, desc, res, hash)
		return nil
	}
	var verifier verify.Verifier
	switch spec.Provider {
	case v1alpha1.VerifyProviderNotation:
		var n *verify.Notation
		if n, err = verify.NewNotation(secret.Data); err == nil {
			n.MaxBlob, n.Repository = maxBlob, scope
			verifier = n
		}
	default:
		var c *verify.Cosign
		if c, err = verify.NewCosign(secret.Data, ids); err == nil {
			c.MaxBlob = maxBlob
			verifier = c
		}
	}
	if err != nil {
		// Only a change of the Secret or of spec.verify can mend it; both
		// are watched.
		se := stalled(v1alpha1.ReasonVerificationFailed, "spec.verify: Secret %q: %w", spec.SecretRef.Name, err)
		unverified(obj, se.reason, se.Error())
		return se
	}
	res, err := verifier.Verify(ctx, repo, desc)
	if errors.Is(err, verify.ErrNotVerified) {
		se := transient(v1alpha1.ReasonVerificationFailed, "%w", err)
		unverified(obj, se.reason, se.Error())
		return se
	}
	if err != nil {
		se := classify(err)
		unverified(obj, se.reason, "verifying "+desc.Digest.String()+": "+se.Error())
		return se
	}
	r.verified.put(key, res)
	markVerified(obj, desc, res, hash)
	return nil
}

// markVerified records a verified digest in the status.
func markVerified(obj *v1alpha1.Artifact, desc ocispec.Descriptor, res verify.Result, hash string) {
	obj.Status.Verified = &v1alpha1.VerifiedStatus{Digest: desc.Digest.String(), Provider: res.Provider, Identity: res.Identity, TrustHash: hash}
	setCondition(obj, v1alpha1.ConditionSourceVerified, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, "verified "+desc.Digest.String()+": signed by "+res.Identity)
}

// unverified sets SourceVerified False with reason and msg.
func unverified(obj *v1alpha1.Artifact, reason, msg string) {
	setCondition(obj, v1alpha1.ConditionSourceVerified, metav1.ConditionFalse, reason, msg)
}

func isSourceVerified(obj *v1alpha1.Artifact) bool {
	return apimeta.IsStatusConditionTrue(obj.Status.Conditions, v1alpha1.ConditionSourceVerified)
}
