package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/ocisync/ocisync/internal/oci"
)

// Formats of cosign signatures.
const (
	// BundleArtifactType is the artifact type of the referrer manifest
	// cosign 3 writes by default, and the media type of its one layer: a
	// Sigstore bundle whose DSSE envelope holds an in-toto statement
	// about the signed manifest digest.
	BundleArtifactType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// simpleSigningType is the layer media type of the legacy form: the
	// simple-signing payload, signed, under the <alg>-<hex>.sig tag.
	simpleSigningType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// signatureAnnotation holds a legacy layer's base64 signature.
	signatureAnnotation = "dev.cosignproject.cosign/signature"
	// TrustedRootKey is the Secret key (and file name) of the Sigstore
	// trusted root for keyless verification.
	TrustedRootKey = "trusted_root.json"
)

// Identity is who a keyless signature may come from: regular
// expressions over the certificate's OIDC issuer and subject.
type Identity struct{ Issuer, Subject string }

// Cosign verifies cosign signatures: with public keys, or keyless
// against a Sigstore trusted root and a list of identities.
type Cosign struct {
	keys       []cosignKey
	identities []sgverify.CertificateIdentity
	trusted    *root.TrustedRoot
	// keyless verifies bundles against trusted, offline.
	keyless *sgverify.Verifier
	// MaxBlob bounds each signature blob read; set it to the client's
	// manifest limit, so that signatures count against the same caps as
	// the artifact's own metadata.
	MaxBlob int64
}

type cosignKey struct {
	name, fingerprint string
	verifier          signature.Verifier
}

func (k cosignKey) identity() string { return fmt.Sprintf("key %s (%s)", k.name, k.fingerprint) }

// NewCosign reads the trust material: with identities, the Sigstore
// trusted root under trusted_root.json (keyless); without, every PEM
// public key under a name ending in .pub (a signature by any one
// verifies). Errors wrap ErrTrustMaterial and name the entry at fault,
// never its content.
func NewCosign(material map[string][]byte, identities []Identity) (*Cosign, error) {
	c := &Cosign{MaxBlob: oci.DefaultMaxManifestBytes}
	if len(identities) > 0 {
		data, ok := material[TrustedRootKey]
		if !ok {
			return nil, fmt.Errorf("%w: keyless cosign verification needs the Sigstore trusted root under %s", ErrTrustMaterial, TrustedRootKey)
		}
		tr, err := root.NewTrustedRootFromJSON(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not a Sigstore trusted root: %v", ErrTrustMaterial, TrustedRootKey, err)
		}
		c.trusted = tr
		if c.keyless, err = keylessVerifier(tr); err != nil {
			return nil, err
		}
		for i, id := range identities {
			if id.Issuer == "" || id.Subject == "" {
				return nil, fmt.Errorf("%w: identity %d: give both an issuer and a subject regular expression (.* matches any)", ErrTrustMaterial, i)
			}
			if _, err := regexp.Compile(id.Issuer); err != nil {
				return nil, fmt.Errorf("%w: identity %d: issuer %q is not a regular expression: %v", ErrTrustMaterial, i, id.Issuer, err)
			}
			if _, err := regexp.Compile(id.Subject); err != nil {
				return nil, fmt.Errorf("%w: identity %d: subject %q is not a regular expression: %v", ErrTrustMaterial, i, id.Subject, err)
			}
			ci, err := sgverify.NewShortCertificateIdentity("", id.Issuer, "", id.Subject)
			if err != nil {
				return nil, fmt.Errorf("%w: identity %d: %v", ErrTrustMaterial, i, err)
			}
			c.identities = append(c.identities, ci)
		}
		return c, nil
	}
	names := make([]string, 0, len(material))
	for name := range material {
		if strings.HasSuffix(name, ".pub") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(material[name])
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not a PEM public key: %v", ErrTrustMaterial, name, err)
		}
		v, err := signature.LoadDefaultVerifier(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrTrustMaterial, name, err)
		}
		der, err := cryptoutils.MarshalPublicKeyToDER(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrTrustMaterial, name, err)
		}
		sum := sha256.Sum256(der)
		c.keys = append(c.keys, cosignKey{name: name, fingerprint: "sha256:" + hex.EncodeToString(sum[:])[:16], verifier: v})
	}
	if len(c.keys) == 0 {
		return nil, fmt.Errorf("%w: no cosign public key: put PEM public keys (as cosign generate-key-pair writes cosign.pub) under names ending in .pub, or match identities for keyless signatures", ErrTrustMaterial)
	}
	return c, nil
}

// Verify looks for a cosign signature of subject that verifies: first
// Sigstore bundles among its referrers, then the legacy .sig tag.
func (c *Cosign) Verify(ctx context.Context, repo Fetcher, subject ocispec.Descriptor) (Result, error) {
	var why failures
	found, err := repo.Referrers(ctx, subject.Digest, BundleArtifactType, maxSignatures)
	if err != nil {
		return Result{}, err
	}
	for _, d := range found.Descriptors {
		res, err := c.verifyBundle(ctx, repo, subject.Digest, d)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, ErrNotVerified) {
			return Result{}, err
		}
		why.add("bundle %s: %v", shortDigest(d.Digest), err)
	}
	legacyTag := strings.Replace(subject.Digest.String(), ":", "-", 1) + ".sig"
	res, err := c.verifyLegacy(ctx, repo, subject.Digest, legacyTag, &why)
	if err == nil {
		return res, nil
	}
	if !errors.Is(err, ErrNotVerified) {
		return Result{}, err
	}
	if len(why) == 0 {
		return Result{}, notVerified("no cosign signature of %s: %s and no %s tag; sign it with cosign sign", subject.Digest, oci.DescribeReferrers(found, "Sigstore bundle"), legacyTag)
	}
	looked := ""
	if found.Truncated {
		looked = fmt.Sprintf(" (only the first %d Sigstore bundles were looked at)", maxSignatures)
	}
	return Result{}, notVerified("no cosign signature of %s verified%s: %s", subject.Digest, looked, why)
}

// notVerified is a signature that does not verify: the reason alone,
// for the caller's list of reasons, that is ErrNotVerified.
func notVerified(format string, args ...any) error {
	return &reasonError{fmt.Sprintf(format, args...)}
}

type reasonError struct{ msg string }

func (e *reasonError) Error() string        { return e.msg }
func (e *reasonError) Is(target error) bool { return target == ErrNotVerified }

func (c *Cosign) verifyBundle(ctx context.Context, repo Fetcher, subject digest.Digest, d ocispec.Descriptor) (Result, error) {
	data, err := repo.FetchManifestDescriptor(ctx, d)
	if err != nil {
		return Result{}, fmt.Errorf("fetching the signature manifest %s: %w", d.Digest, err)
	}
	m, err := oci.DecodeManifest(d.MediaType, data)
	if err != nil {
		return Result{}, notVerified("not a manifest: %v", err)
	}
	if m.Subject == nil || m.Subject.Digest != subject {
		return Result{}, notVerified("its subject is not %s", subject)
	}
	var layer *ocispec.Descriptor
	for i := range m.Layers {
		if m.Layers[i].MediaType == BundleArtifactType {
			layer = &m.Layers[i]
			break
		}
	}
	if layer == nil {
		return Result{}, notVerified("no layer of type %s", BundleArtifactType)
	}
	raw, err := readBlob(ctx, repo, *layer, c.MaxBlob)
	if err != nil {
		if errors.Is(err, oci.ErrTooLarge) {
			return Result{}, notVerified("%v", err)
		}
		return Result{}, fmt.Errorf("fetching the Sigstore bundle %s: %w", layer.Digest, err)
	}
	b := &bundle.Bundle{}
	if err := b.UnmarshalJSON(raw); err != nil {
		return Result{}, notVerified("not a Sigstore bundle: %v", err)
	}
	want, err := hex.DecodeString(subject.Encoded())
	if err != nil {
		return Result{}, notVerified("subject digest %s: %v", subject, err)
	}
	artifact := sgverify.WithArtifactDigest(subject.Algorithm().String(), want)
	if c.trusted != nil {
		return c.verifyKeyless(b, artifact)
	}
	var why []string
	for _, k := range c.keys {
		key := root.NewExpiringKey(k.verifier, time.Time{}, time.Time{})
		material := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
		v, err := sgverify.NewVerifier(material, sgverify.WithNoObserverTimestamps())
		if err != nil {
			return Result{}, fmt.Errorf("setting up the verifier: %w", err)
		}
		res, err := v.Verify(b, sgverify.NewPolicy(artifact, sgverify.WithKey()))
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", k.name, err))
			continue
		}
		if err := checkPredicate(res); err != nil {
			return Result{}, err
		}
		return Result{Provider: "cosign", Identity: k.identity()}, nil
	}
	return Result{}, notVerified("%s", strings.Join(why, "; "))
}

// keylessVerifier is the verifier of bundles signed with short-lived
// certificates, offline against tr: it requires what tr lists, and
// fetches nothing. A certificate is checked at the time an observer
// vouches for (a timestamp authority's signed timestamp, or a log's
// signed integrated time), never at the current time: Fulcio's
// certificates expire minutes after signing.
func keylessVerifier(tr *root.TrustedRoot) (*sgverify.Verifier, error) {
	if len(tr.FulcioCertificateAuthorities()) == 0 {
		return nil, fmt.Errorf("%w: %s lists no certificate authority (such as Fulcio) to check signing certificates against", ErrTrustMaterial, TrustedRootKey)
	}
	if len(tr.RekorLogs()) == 0 && len(tr.TimestampingAuthorities()) == 0 {
		return nil, fmt.Errorf("%w: %s lists neither a transparency log nor a timestamp authority, so the signing time of a short-lived certificate cannot be checked; use the trusted root of the Sigstore the signatures come from", ErrTrustMaterial, TrustedRootKey)
	}
	opts := []sgverify.VerifierOption{sgverify.WithObserverTimestamps(1)}
	if len(tr.RekorLogs()) > 0 {
		// A bundle of a Sigstore with a log must hold a log entry, its
		// inclusion proof checked against the log's key; with a signed
		// entry timestamp, its integrated time is an observer timestamp.
		opts = append(opts, sgverify.WithTransparencyLog(1))
	}
	if len(tr.CTLogs()) > 0 {
		// Fulcio embeds certificate timestamps of the CT logs it lists.
		opts = append(opts, sgverify.WithSignedCertificateTimestamps(1))
	}
	v, err := sgverify.NewVerifier(tr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s cannot verify: %v", ErrTrustMaterial, TrustedRootKey, err)
	}
	return v, nil
}

func (c *Cosign) verifyKeyless(b *bundle.Bundle, artifact sgverify.ArtifactPolicyOption) (Result, error) {
	if err := c.keylessPrecheck(b); err != nil {
		return Result{}, err
	}
	var policy []sgverify.PolicyOption
	for _, id := range c.identities {
		policy = append(policy, sgverify.WithCertificateIdentity(id))
	}
	res, err := c.keyless.Verify(b, sgverify.NewPolicy(artifact, policy...))
	var noMatch *sgverify.ErrNoMatchingCertificateIdentity
	switch {
	case errors.As(err, &noMatch):
		// Everything else verified: the identity is the last check.
		return Result{}, notVerified("signed by %s, which matches none of the identities (%s)", certIdentity(b), c.identityList())
	case err != nil:
		return Result{}, notVerified("not verified against the trusted root: %v", err)
	}
	if err := checkPredicate(res); err != nil {
		return Result{}, err
	}
	identity := "a certificate"
	if res.Signature != nil && res.Signature.Certificate != nil {
		identity = summaryIdentity(*res.Signature.Certificate)
	}
	return Result{Provider: "cosign", Identity: identity}, nil
}

// keylessPrecheck refuses, in words that say what to look at, the
// bundles that cannot verify for a plain reason: a key rather than a
// certificate, no entry of a log the trusted root lists, no signed
// time. sigstore-go refuses them too, in its own words.
func (c *Cosign) keylessPrecheck(b *bundle.Bundle) error {
	vc, err := b.VerificationContent()
	if err != nil {
		return notVerified("not a Sigstore bundle: %v", err)
	}
	if vc.Certificate() == nil {
		return notVerified("signed with a key, not a keyless certificate; key-signed signatures verify with the public key instead of identities")
	}
	entries, err := b.TlogEntries()
	if err != nil {
		return notVerified("not a Sigstore bundle: %v", err)
	}
	if logs := c.trusted.RekorLogs(); len(logs) > 0 {
		if len(entries) == 0 {
			return notVerified("the bundle holds no transparency log entry, which %s requires as it lists a log", TrustedRootKey)
		}
		known := false
		for _, e := range entries {
			if _, ok := logs[hex.EncodeToString([]byte(e.LogKeyID()))]; ok {
				known = true
				break
			}
		}
		if !known {
			return notVerified("the bundle is logged only in transparency logs %s does not list: it comes from another Sigstore than the trusted root's", TrustedRootKey)
		}
	}
	stamps, err := b.Timestamps()
	if err != nil {
		return notVerified("not a Sigstore bundle: %v", err)
	}
	if len(stamps) == 0 && !b.HasInclusionPromise() {
		return notVerified("the bundle holds no signed time (a timestamp authority's signed timestamp or a log's signed entry timestamp), so its short-lived certificate cannot be checked")
	}
	return nil
}

func summaryIdentity(s certificate.Summary) string {
	return fmt.Sprintf("%s from issuer %s", s.SubjectAlternativeName, s.Issuer)
}

// certIdentity names who b's certificate says signed it.
func certIdentity(b *bundle.Bundle) string {
	vc, err := b.VerificationContent()
	if err != nil || vc.Certificate() == nil {
		return "a certificate"
	}
	s, err := certificate.SummarizeCertificate(vc.Certificate())
	if err != nil {
		return "a certificate"
	}
	return summaryIdentity(s)
}

func (c *Cosign) identityList() string {
	out := make([]string, len(c.identities))
	for i, id := range c.identities {
		out[i] = fmt.Sprintf("issuer matching %s and subject matching %s", id.Issuer.Regexp.String(), id.SubjectAlternativeName.Regexp.String())
	}
	return strings.Join(out, "; ")
}

// SignPredicate is the predicate type of the statement cosign sign
// writes. A bundle of another predicate (cosign attest: provenance, an
// SBOM) says something about the digest, but is not its signature.
const SignPredicate = "https://sigstore.dev/cosign/sign/v1"

func checkPredicate(res *sgverify.VerificationResult) error {
	if res == nil || res.Statement == nil {
		return notVerified("the bundle holds no in-toto statement")
	}
	if pt := res.Statement.GetPredicateType(); pt != SignPredicate {
		return notVerified("an attestation of predicate type %q, not a signature (%s)", pt, SignPredicate)
	}
	return nil
}

// simpleSigning is the part of the legacy payload that names what was
// signed.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

func (c *Cosign) verifyLegacy(ctx context.Context, repo Fetcher, subject digest.Digest, tag string, why *failures) (Result, error) {
	desc, data, err := repo.FetchManifest(ctx, tag)
	if errors.Is(err, oci.ErrNotFound) || errors.Is(err, oci.ErrManifestUnknown) {
		return Result{}, ErrNotVerified
	}
	if err != nil {
		return Result{}, fmt.Errorf("fetching the cosign signature tag %s: %w", tag, err)
	}
	m, err := oci.DecodeManifest(desc.MediaType, data)
	if err != nil {
		why.add("tag %s: not a manifest: %v", tag, err)
		return Result{}, ErrNotVerified
	}
	count := 0
	for i, l := range m.Layers {
		if count == maxSignatures {
			why.add("tag %s: only the first %d signatures were looked at", tag, maxSignatures)
			break
		}
		if l.MediaType != simpleSigningType {
			continue
		}
		count++
		if c.trusted != nil {
			why.add("tag %s: a legacy signature verifies only with a public key; keyless signatures must be Sigstore bundles (cosign 3's default)", tag)
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[signatureAnnotation])
		if err != nil || len(sig) == 0 {
			why.add("tag %s layer %d: no base64 signature in %s", tag, i, signatureAnnotation)
			continue
		}
		payload, err := readBlob(ctx, repo, l, c.MaxBlob)
		if err != nil {
			if errors.Is(err, oci.ErrTooLarge) {
				why.add("tag %s layer %d: %v", tag, i, err)
				continue
			}
			return Result{}, fmt.Errorf("fetching the cosign signature payload %s: %w", l.Digest, err)
		}
		var ss simpleSigning
		if err := json.Unmarshal(payload, &ss); err != nil {
			why.add("tag %s layer %d: the payload is not a simple-signing document", tag, i)
			continue
		}
		if ss.Critical.Image.DockerManifestDigest != subject.String() {
			why.add("tag %s layer %d: a signature of %s, not of %s", tag, i, ss.Critical.Image.DockerManifestDigest, subject)
			continue
		}
		for _, k := range c.keys {
			if k.verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload)) == nil {
				return Result{Provider: "cosign", Identity: k.identity()}, nil
			}
		}
		why.add("tag %s layer %d: not signed by any of the keys (%s)", tag, i, c.keyNames())
	}
	return Result{}, ErrNotVerified
}

func (c *Cosign) keyNames() string {
	names := make([]string, len(c.keys))
	for i, k := range c.keys {
		names[i] = k.name
	}
	return strings.Join(names, ", ")
}

func shortDigest(d digest.Digest) string {
	s := d.String()
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}
