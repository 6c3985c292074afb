package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/notaryproject/notation-core-go/signature"
	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/signer"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const notationTestRepo = "registry.example/app"

// notationCA is a certificate authority made in the test, which issues
// code signing certificates as Notation requires them.
type notationCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var notationSerial int64

func notationCertificate(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	notationSerial++
	tmpl.SerialNumber = big.NewInt(notationSerial)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func newNotationCA(t *testing.T, name string) notationCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"ocisync tests"}},
		NotBefore:             time.Now().Add(-72 * time.Hour),
		NotAfter:              time.Now().Add(72 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	cert := notationCertificate(t, tmpl, tmpl, key.Public(), key)
	return notationCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}
}

// leaf issues a code signing certificate valid from notBefore to
// notAfter: digital signature its only key usage, code signing its
// extended key usage, not a CA.
func (ca notationCA) leaf(t *testing.T, name string, notBefore, notAfter time.Time) (*ecdsa.PrivateKey, []*x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert := notationCertificate(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"ocisync tests"}, Province: []string{"Test"}, Country: []string{"ZZ"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}, ca.cert, key.Public(), ca.key)
	return key, []*x509.Certificate{cert, ca.cert}
}

// notationSigner signs with a leaf certificate of a test CA.
type notationSigner struct {
	key   *ecdsa.PrivateKey
	chain []*x509.Certificate
}

func (ca notationCA) signer(t *testing.T, name string) notationSigner {
	key, chain := ca.leaf(t, name, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	return notationSigner{key: key, chain: chain}
}

// sign signs target with notation-go's signer in the envelope format
// mediaType and attaches the signature to subject as notation sign
// does: a referrer manifest of artifact type NotationArtifactType whose
// one layer is the envelope.
func (s notationSigner) sign(t *testing.T, f *fakeRepo, subject, target ocispec.Descriptor, mediaType string) {
	t.Helper()
	g, err := signer.NewGenericSigner(s.key, s.chain)
	if err != nil {
		t.Fatal(err)
	}
	env, _, err := g.Sign(context.Background(), target, notation.SignerSignOptions{SignatureMediaType: mediaType})
	if err != nil {
		t.Fatal(err)
	}
	attachNotation(t, f, subject, env, mediaType)
}

func attachNotation(t *testing.T, f *fakeRepo, subject ocispec.Descriptor, env []byte, mediaType string) {
	t.Helper()
	f.putManifest(t, ocispec.Manifest{
		ArtifactType: NotationArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{{MediaType: mediaType, Digest: f.putBlob(env), Size: int64(len(env))}},
		Subject:      &subject,
	}, "")
}

// signExpired signs subject with a leaf that was valid a day ago, at a
// signing time within its validity: notation-go's signer always signs
// now, so this one goes through notation-core-go's envelope directly.
func (ca notationCA) signExpired(t *testing.T, f *fakeRepo, subject ocispec.Descriptor) {
	t.Helper()
	then := time.Now().Add(-36 * time.Hour)
	key, chain := ca.leaf(t, "expired signer", then.Add(-time.Hour), then.Add(time.Hour))
	local, err := signature.NewLocalSigner(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(map[string]ocispec.Descriptor{"targetArtifact": {MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}})
	if err != nil {
		t.Fatal(err)
	}
	env, err := signature.NewEnvelope(jws.MediaTypeEnvelope)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Sign(&signature.SignRequest{
		Payload:       signature.Payload{ContentType: "application/vnd.cncf.notary.payload.v1+json", Content: payload},
		Signer:        local,
		SigningTime:   then,
		SigningScheme: signature.SigningSchemeX509,
		SigningAgent:  "ocisync tests",
	})
	if err != nil {
		t.Fatal(err)
	}
	attachNotation(t, f, subject, raw, jws.MediaTypeEnvelope)
}

// notationPolicy is a trust policy document with one statement.
func notationPolicy(scope, level, store string, identities ...string) []byte {
	if len(identities) == 0 {
		identities = []string{"*"}
	}
	doc := map[string]any{"version": "1.0", "trustPolicies": []map[string]any{{
		"name":                  "ocisync-test",
		"registryScopes":        []string{scope},
		"signatureVerification": map[string]string{"level": level},
		"trustStores":           []string{store},
		"trustedIdentities":     identities,
	}}}
	data, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return data
}

func TestNotation(t *testing.T) {
	acme, other := newNotationCA(t, "Acme CA"), newNotationCA(t, "Other CA")
	alice := acme.signer(t, "alice")
	mallory := other.signer(t, "mallory")
	trusted := map[string][]byte{
		TrustPolicyKey: notationPolicy(notationTestRepo, "strict", "ca:acme"),
		"acme.crt":     acme.pem,
	}
	with := func(key string, value []byte) map[string][]byte {
		m := map[string][]byte{key: value}
		for k, v := range trusted {
			if k != key {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name     string
		setup    func(f *fakeRepo, subject ocispec.Descriptor)
		material map[string][]byte
		want     string // substring of the identity, or of the error
		ok       bool
	}{
		{"a JWS signature", func(f *fakeRepo, s ocispec.Descriptor) { alice.sign(t, f, s, s, jws.MediaTypeEnvelope) },
			trusted, "CN=alice,O=ocisync tests,ST=Test,C=ZZ issued by CN=Acme CA,O=ocisync tests", true},
		{"a COSE signature", func(f *fakeRepo, s ocispec.Descriptor) { alice.sign(t, f, s, s, cose.MediaTypeEnvelope) },
			trusted, "CN=alice", true},
		{"the CA under NAME.pem, a wildcard scope, a matching identity", func(f *fakeRepo, s ocispec.Descriptor) {
			alice.sign(t, f, s, s, cose.MediaTypeEnvelope)
		}, map[string][]byte{
			TrustPolicyKey: notationPolicy("*", "strict", "ca:acme", "x509.subject: CN=alice, O=ocisync tests, ST=Test, C=ZZ"),
			"acme.pem":     acme.pem,
		}, "CN=alice", true},
		{"one untrusted signature, one good", func(f *fakeRepo, s ocispec.Descriptor) {
			mallory.sign(t, f, s, s, jws.MediaTypeEnvelope)
			alice.sign(t, f, s, s, jws.MediaTypeEnvelope)
		}, trusted, "CN=alice", true},
		{"an untrusted CA", func(f *fakeRepo, s ocispec.Descriptor) { mallory.sign(t, f, s, s, jws.MediaTypeEnvelope) },
			trusted, "signed by CN=mallory,O=ocisync tests,ST=Test,C=ZZ issued by CN=Other CA,O=ocisync tests: none of its certificates is in the trust stores ca:acme", false},
		{"an expired certificate", func(f *fakeRepo, s ocispec.Descriptor) { acme.signExpired(t, f, s) },
			trusted, "expired", false},
		{"registry scopes that do not name the repository", func(f *fakeRepo, s ocispec.Descriptor) { alice.sign(t, f, s, s, jws.MediaTypeEnvelope) },
			with(TrustPolicyKey, notationPolicy("registry.example/other", "strict", "ca:acme")),
			"no statement of trustpolicy.json applies to registry.example/app", false},
		{"another trusted identity", func(f *fakeRepo, s ocispec.Descriptor) { alice.sign(t, f, s, s, jws.MediaTypeEnvelope) },
			with(TrustPolicyKey, notationPolicy(notationTestRepo, "strict", "ca:acme", "x509.subject: CN=bob, O=ocisync tests, ST=Test, C=ZZ")),
			"trusted identities", false},
		{"not signed", func(*fakeRepo, ocispec.Descriptor) {},
			trusted, "no Notation signature of sha256:", false},
		{"a signature of another digest attached to this one", func(f *fakeRepo, s ocispec.Descriptor) {
			otherDigest := ocispec.Descriptor{MediaType: s.MediaType, Digest: digest.FromString("another manifest"), Size: s.Size}
			alice.sign(t, f, s, otherDigest, jws.MediaTypeEnvelope)
		}, trusted, "a signature of sha256:", false},
		{"a policy that skips verification", func(f *fakeRepo, s ocispec.Descriptor) { alice.sign(t, f, s, s, jws.MediaTypeEnvelope) },
			map[string][]byte{
				TrustPolicyKey: []byte(`{"version":"1.0","trustPolicies":[{"name":"lax","registryScopes":["*"],"signatureVerification":{"level":"skip"}}]}`),
				"acme.crt":     acme.pem,
			}, `statement "lax" of trustpolicy.json skips signature verification`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRepo()
			subject := subjectManifest(t, f, "v1")
			tc.setup(f, subject)
			n, err := NewNotation(tc.material)
			if err != nil {
				t.Fatal(err)
			}
			n.Repository = notationTestRepo
			res, err := n.Verify(context.Background(), f, subject)
			if tc.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if res.Provider != "notation" || !strings.Contains(res.Identity, tc.want) {
					t.Errorf("verified by %+v, want an identity with %q", res, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %+v, %v; want ErrNotVerified mentioning %q", res, err, tc.want)
			}
		})
	}
}

func TestNotationSaysWhereItLooked(t *testing.T) {
	acme := newNotationCA(t, "Acme CA")
	f := newFakeRepo()
	subject := subjectManifest(t, f, "v1")
	n, err := NewNotation(map[string][]byte{TrustPolicyKey: notationPolicy(notationTestRepo, "strict", "ca:acme"), "acme.crt": acme.pem})
	if err != nil {
		t.Fatal(err)
	}
	n.Repository = notationTestRepo
	_, err = n.Verify(context.Background(), f, subject)
	want := fmt.Sprintf("no Notation signature of %s in %s: no referrer of type %s (referrers API); sign it with notation sign", subject.Digest, notationTestRepo, NotationArtifactType)
	if !errors.Is(err, ErrNotVerified) || err.Error() != want {
		t.Errorf("Verify = %v\nwant %s", err, want)
	}
}

func TestNotationLimitsAndFailures(t *testing.T) {
	acme := newNotationCA(t, "Acme CA")
	alice := acme.signer(t, "alice")
	material := map[string][]byte{TrustPolicyKey: notationPolicy(notationTestRepo, "strict", "ca:acme"), "acme.crt": acme.pem}
	setup := func(t *testing.T) (*fakeRepo, ocispec.Descriptor, *Notation) {
		f := newFakeRepo()
		subject := subjectManifest(t, f, "v1")
		alice.sign(t, f, subject, subject, jws.MediaTypeEnvelope)
		n, err := NewNotation(material)
		if err != nil {
			t.Fatal(err)
		}
		n.Repository = notationTestRepo
		return f, subject, n
	}
	t.Run("an envelope over the limit does not verify", func(t *testing.T) {
		f, subject, n := setup(t)
		n.MaxBlob = 64
		if _, err := n.Verify(context.Background(), f, subject); !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "over") {
			t.Errorf("Verify = %v, want ErrNotVerified saying the envelope is over the limit", err)
		}
	})
	t.Run("a registry failure is not a verification failure", func(t *testing.T) {
		f, subject, n := setup(t)
		f.failBlobs = true
		if _, err := n.Verify(context.Background(), f, subject); err == nil || errors.Is(err, ErrNotVerified) {
			t.Errorf("Verify = %v, want the registry's error, not ErrNotVerified", err)
		}
	})
	t.Run("more signatures than the bound", func(t *testing.T) {
		f := newFakeRepo()
		subject := subjectManifest(t, f, "v1")
		for i := 0; i < maxSignatures+1; i++ {
			attachNotation(t, f, subject, []byte(fmt.Sprintf("not an envelope %d", i)), jws.MediaTypeEnvelope)
		}
		n, err := NewNotation(material)
		if err != nil {
			t.Fatal(err)
		}
		n.Repository = notationTestRepo
		_, err = n.Verify(context.Background(), f, subject)
		if !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), fmt.Sprintf("only the first %d signatures", maxSignatures)) {
			t.Errorf("Verify = %v, want ErrNotVerified saying only %d signatures were looked at", err, maxSignatures)
		}
	})
	t.Run("without the repository", func(t *testing.T) {
		f, subject, n := setup(t)
		n.Repository = ""
		if _, err := n.Verify(context.Background(), f, subject); err == nil || errors.Is(err, ErrNotVerified) {
			t.Errorf("Verify = %v, want an error that is not ErrNotVerified", err)
		}
	})
}

func TestNewNotationRefusals(t *testing.T) {
	acme := newNotationCA(t, "Acme CA")
	_, leafChain := acme.leaf(t, "alice", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafChain[0].Raw})
	intermediateKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	intermediate := notationCertificate(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "Acme Intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, acme.cert, intermediateKey.Public(), acme.key)
	intermediatePEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: intermediate.Raw})
	policy := notationPolicy(notationTestRepo, "strict", "ca:acme")
	for _, tc := range []struct {
		name     string
		material map[string][]byte
		want     string
	}{
		{"no trust policy", map[string][]byte{"acme.crt": acme.pem}, "needs the trust policy document under trustpolicy.json"},
		{"a trust policy that is not JSON", map[string][]byte{TrustPolicyKey: []byte("version: 1.0"), "acme.crt": acme.pem}, "trustpolicy.json is not a Notation trust policy document: invalid JSON at byte"},
		{"a trust policy of the wrong shape", map[string][]byte{TrustPolicyKey: []byte(`{"version":"1.0","trustPolicies":{}}`), "acme.crt": acme.pem}, "field trustPolicies cannot be a JSON object"},
		{"a trust policy without a version", map[string][]byte{TrustPolicyKey: []byte(`{"trustPolicies":[]}`), "acme.crt": acme.pem}, "trustpolicy.json: trust policy document has empty version"},
		{"no certificate", map[string][]byte{TrustPolicyKey: policy, "notes.txt": []byte("x")}, "no certificate"},
		{"no certificate for a named trust store", map[string][]byte{TrustPolicyKey: policy, "other.crt": acme.pem}, `statement "ocisync-test" names the trust store ca:acme, but there is no acme.crt or acme.pem`},
		{"a certificate that does not parse", map[string][]byte{TrustPolicyKey: policy, "acme.crt": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}, "acme.crt is not a PEM or DER certificate"},
		{"a leaf certificate as trust anchor", map[string][]byte{TrustPolicyKey: policy, "acme.crt": leafPEM}, "acme.crt: certificate with subject"},
		{"a tsa trust store that is not a root CA", map[string][]byte{
			TrustPolicyKey: []byte(`{"version":"1.0","trustPolicies":[{"name":"ts","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:acme","tsa:acme"],"trustedIdentities":["*"]}]}`),
			"acme.crt":     append(append([]byte{}, acme.pem...), intermediatePEM...),
		}, `names the trust store tsa:acme, whose certificates must be root CAs, and "CN=Acme Intermediate" in acme.crt or acme.pem is not`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewNotation(tc.material)
			if !errors.Is(err, ErrTrustMaterial) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewNotation = %v, want ErrTrustMaterial mentioning %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "BEGIN CERTIFICATE") {
				t.Errorf("the error shows certificate material: %v", err)
			}
		})
	}
}
