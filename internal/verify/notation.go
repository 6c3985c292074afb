package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/notaryproject/notation-core-go/signature"
	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	nverifier "github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

// Formats of Notation signatures.
const (
	// NotationArtifactType is the artifact type of the referrer manifest
	// notation sign writes: one layer, the signature envelope.
	NotationArtifactType = "application/vnd.cncf.notary.signature"
	// TrustPolicyKey is the Secret key (and file name) of the Notation
	// trust policy document.
	TrustPolicyKey = "trustpolicy.json"
)

// notationEnvelopes are the layer media types of Notation signatures:
// JWS and COSE envelopes.
var notationEnvelopes = []string{jws.MediaTypeEnvelope, cose.MediaTypeEnvelope}

// Notation verifies Notary Project signatures with notation-go, against
// a trust policy document and named trust stores of certificates.
type Notation struct {
	policy   *trustpolicy.Document
	verifier notation.Verifier
	// MaxBlob bounds each signature envelope read; set it to the client's
	// manifest limit, as for cosign.
	MaxBlob int64
	// Repository is the registry/repository of the artifacts Verify is
	// given, as the trust policy's registryScopes name it (see
	// RepositoryScope): the statement that applies is chosen by it.
	// Verify refuses to run without it.
	Repository string
}

// RepositoryScope is the name trust policy registryScopes give repo:
// registry/repository, with Docker Hub as docker.io.
func RepositoryScope(repo *oci.Repository) string {
	return reference.Reference{Registry: repo.Registry, Repository: repo.Name}.Name()
}

// NewNotation reads the trust material: the trust policy document under
// trustpolicy.json, and certificates (PEM, or one DER certificate)
// under names ending in .crt or .pem. Such a name without its extension
// names a trust store: the policy's ca:NAME, signingAuthority:NAME and
// tsa:NAME all hold the certificates of NAME.crt and NAME.pem. Every
// trust store the policy names must hold one. Errors wrap
// ErrTrustMaterial and name the entry at fault, never its content.
func NewNotation(material map[string][]byte) (*Notation, error) {
	raw, ok := material[TrustPolicyKey]
	if !ok {
		return nil, fmt.Errorf("%w: notation verification needs the trust policy document under %s", ErrTrustMaterial, TrustPolicyKey)
	}
	var doc trustpolicy.Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%w: %s is not a Notation trust policy document: %s", ErrTrustMaterial, TrustPolicyKey, describeJSONError(err))
	}
	if err := doc.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrTrustMaterial, TrustPolicyKey, err)
	}

	stores := certStores{}
	names := make([]string, 0, len(material))
	for name := range material {
		if strings.HasSuffix(name, ".crt") || strings.HasSuffix(name, ".pem") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		certs, err := parseCertificates(material[name])
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not a PEM or DER certificate: %v", ErrTrustMaterial, name, err)
		}
		if err := truststore.ValidateCertificates(certs); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrTrustMaterial, name, err)
		}
		store := name[:len(name)-len(".crt")] // as long as ".pem"
		stores[store] = append(stores[store], certs...)
	}
	if len(stores) == 0 {
		return nil, fmt.Errorf("%w: no certificate: put the certificates of each trust store that %s names (ca:NAME) under NAME.crt or NAME.pem", ErrTrustMaterial, TrustPolicyKey)
	}
	for _, statement := range doc.TrustPolicies {
		for _, ts := range statement.TrustStores {
			typ, name, _ := strings.Cut(ts, ":") // Validate checked the form
			certs := stores[name]
			if len(certs) == 0 {
				return nil, fmt.Errorf("%w: %s: statement %q names the trust store %s, but there is no %s.crt or %s.pem", ErrTrustMaterial, TrustPolicyKey, statement.Name, ts, name, name)
			}
			if truststore.Type(typ) != truststore.TypeTSA {
				continue
			}
			for _, c := range certs {
				if !isRootCA(c) {
					return nil, fmt.Errorf("%w: %s: statement %q names the trust store %s, whose certificates must be root CAs, and %q in %s.crt or %s.pem is not", ErrTrustMaterial, TrustPolicyKey, statement.Name, ts, c.Subject, name, name)
				}
			}
		}
	}
	// No plugin manager: a signature that needs a verification plugin
	// does not verify. Revocation is checked as Notation checks it
	// (OCSP, then CRL, for certificates that name a responder or a list),
	// unless the policy skips it.
	v, err := nverifier.NewWithOptions(&doc, stores, nil, nverifier.VerifierOptions{})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrTrustMaterial, TrustPolicyKey, err)
	}
	return &Notation{policy: &doc, verifier: v, MaxBlob: oci.DefaultMaxManifestBytes}, nil
}

// certStores is an in-memory trust store: certificates by store name,
// the same for every store type.
type certStores map[string][]*x509.Certificate

func (s certStores) GetCertificates(_ context.Context, typ truststore.Type, name string) ([]*x509.Certificate, error) {
	certs := s[name]
	if len(certs) == 0 {
		return nil, truststore.TrustStoreError{Msg: fmt.Sprintf("no certificate for the trust store %s:%s (%s.crt or %s.pem)", typ, name, name, name)}
	}
	return certs, nil
}

// parseCertificates reads PEM certificates, or DER ones when the data is
// not PEM.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return x509.ParseCertificates(data)
	}
	var certs []*x509.Certificate
	for ; block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM block of type %q, not CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	return certs, nil
}

func isRootCA(c *x509.Certificate) bool {
	return c.BasicConstraintsValid && c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// describeJSONError says where JSON is malformed without quoting it.
func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %s cannot be a JSON %s", typ.Field, typ.Value)
	default:
		return "invalid JSON"
	}
}

// Verify looks among subject's referrers for a Notation signature that
// verifies under the trust policy statement that applies to
// n.Repository.
func (n *Notation) Verify(ctx context.Context, repo Fetcher, subject ocispec.Descriptor) (Result, error) {
	if n.Repository == "" {
		return Result{}, errors.New("notation verification needs the artifact's repository to choose the trust policy statement")
	}
	ref := n.Repository + "@" + subject.Digest.String()
	statement, err := n.policy.GetApplicableTrustPolicy(ref)
	if err != nil {
		return Result{}, notVerified("no statement of %s applies to %s: none lists it, or *, in its registryScopes", TrustPolicyKey, n.Repository)
	}
	if level, err := statement.SignatureVerification.GetVerificationLevel(); err == nil && level.Name == trustpolicy.LevelSkip.Name {
		return Result{}, notVerified("statement %q of %s skips signature verification for %s, but spec.verify asks for a signature: give it level strict", statement.Name, TrustPolicyKey, n.Repository)
	}

	found, err := repo.Referrers(ctx, subject.Digest, NotationArtifactType, maxSignatures)
	if err != nil {
		return Result{}, err
	}
	var why failures
	for _, d := range found.Descriptors {
		res, err := n.verifySignature(ctx, repo, subject, ref, statement, d)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, ErrNotVerified) {
			return Result{}, err
		}
		why.add("signature %s: %v", shortDigest(d.Digest), err)
	}
	if len(why) == 0 {
		return Result{}, notVerified("no Notation signature of %s in %s: %s; sign it with notation sign", subject.Digest, n.Repository, oci.DescribeReferrers(found, "referrer of type "+NotationArtifactType))
	}
	looked := ""
	if found.Truncated {
		looked = fmt.Sprintf(" (only the first %d signatures were looked at)", maxSignatures)
	}
	return Result{}, notVerified("no Notation signature of %s verified under statement %q of %s%s: %s", subject.Digest, statement.Name, TrustPolicyKey, looked, why)
}

func (n *Notation) verifySignature(ctx context.Context, repo Fetcher, subject ocispec.Descriptor, ref string, statement *trustpolicy.TrustPolicy, d ocispec.Descriptor) (Result, error) {
	data, err := repo.FetchManifestDescriptor(ctx, d)
	if err != nil {
		return Result{}, fmt.Errorf("fetching the signature manifest %s: %w", d.Digest, err)
	}
	m, err := oci.DecodeManifest(d.MediaType, data)
	if err != nil {
		return Result{}, notVerified("not a manifest: %v", err)
	}
	if m.Subject == nil || m.Subject.Digest != subject.Digest {
		return Result{}, notVerified("its subject is not %s", subject.Digest)
	}
	if len(m.Layers) != 1 || !slices.Contains(notationEnvelopes, m.Layers[0].MediaType) {
		types := make([]string, len(m.Layers))
		for i, l := range m.Layers {
			types[i] = l.MediaType
		}
		return Result{}, notVerified("a Notation signature has one layer, of type %s; this one has [%s]", strings.Join(notationEnvelopes, " or "), strings.Join(types, ", "))
	}
	layer := m.Layers[0]
	envelope, err := readBlob(ctx, repo, layer, n.MaxBlob)
	if err != nil {
		if errors.Is(err, oci.ErrTooLarge) {
			return Result{}, notVerified("%v", err)
		}
		return Result{}, fmt.Errorf("fetching the signature envelope %s: %w", layer.Digest, err)
	}
	outcome, err := n.verifier.Verify(ctx, subject, envelope, notation.VerifierVerifyOptions{
		ArtifactReference:  ref,
		SignatureMediaType: layer.MediaType,
	})
	if err != nil {
		return Result{}, notVerified("%s", explainNotation(err, outcome, subject.Digest, statement))
	}
	if outcome == nil || outcome.EnvelopeContent == nil || len(outcome.EnvelopeContent.SignerInfo.CertificateChain) == 0 {
		return Result{}, notVerified("the verifier returned no signer")
	}
	leaf := outcome.EnvelopeContent.SignerInfo.CertificateChain[0]
	return Result{Provider: "notation", Identity: fmt.Sprintf("%s issued by %s", leaf.Subject, leaf.Issuer)}, nil
}

// explainNotation turns a notation-go verification error into what the
// user needs to know.
func explainNotation(err error, outcome *notation.VerificationOutcome, subject digest.Digest, statement *trustpolicy.TrustPolicy) string {
	var signer string
	if outcome != nil && outcome.EnvelopeContent != nil {
		var payload struct {
			TargetArtifact ocispec.Descriptor `json:"targetArtifact"`
		}
		if json.Unmarshal(outcome.EnvelopeContent.Payload.Content, &payload) == nil && payload.TargetArtifact.Digest != subject {
			return fmt.Sprintf("a signature of %s, not of %s", payload.TargetArtifact.Digest, subject)
		}
		if chain := outcome.EnvelopeContent.SignerInfo.CertificateChain; len(chain) > 0 {
			signer = fmt.Sprintf("signed by %s issued by %s: ", chain[0].Subject, chain[0].Issuer)
		}
	}
	var untrusted *signature.SignatureAuthenticityError
	if errors.As(err, &untrusted) {
		return fmt.Sprintf("%snone of its certificates is in the trust stores %s", signer, strings.Join(statement.TrustStores, ", "))
	}
	return signer + err.Error()
}
