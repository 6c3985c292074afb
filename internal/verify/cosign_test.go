package verify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ocisync/ocisync/internal/oci"
)

// fakeRepo is an in-memory repository: manifests by digest and tag,
// blobs by digest, and referrers found by the manifests' subjects. With
// noReferrersAPI it lists them the way the referrers tag schema would
// (a registry without the API), which the tests do not need to tell
// apart: internal/oci has its own tests of both.
type fakeRepo struct {
	manifests map[string][]byte // digest or tag
	types     map[string]string // media type by digest or tag
	blobs     map[digest.Digest][]byte
	failBlobs bool
}

func newFakeRepo() *fakeRepo {
	return &fakeRepo{manifests: map[string][]byte{}, types: map[string]string{}, blobs: map[digest.Digest][]byte{}}
}

func (f *fakeRepo) putBlob(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	f.blobs[d] = data
	return d
}

func (f *fakeRepo) putManifest(t *testing.T, m ocispec.Manifest, tag string) ocispec.Descriptor {
	t.Helper()
	m.Versioned = specs.Versioned{SchemaVersion: 2}
	m.MediaType = ocispec.MediaTypeImageManifest
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := ocispec.Descriptor{MediaType: m.MediaType, ArtifactType: m.ArtifactType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	f.manifests[d.Digest.String()], f.types[d.Digest.String()] = data, m.MediaType
	if tag != "" {
		f.manifests[tag], f.types[tag] = data, m.MediaType
	}
	return d
}

func (f *fakeRepo) Referrers(_ context.Context, subject digest.Digest, artifactType string, max int) (oci.Referrers, error) {
	var out oci.Referrers
	for ref, data := range f.manifests {
		if !strings.Contains(ref, ":") {
			continue // a tag
		}
		var m ocispec.Manifest
		if json.Unmarshal(data, &m) != nil || m.Subject == nil || m.Subject.Digest != subject || m.ArtifactType != artifactType {
			continue
		}
		if len(out.Descriptors) == max {
			out.Truncated = true
			break
		}
		out.Descriptors = append(out.Descriptors, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: m.ArtifactType, Digest: digest.Digest(ref), Size: int64(len(data))})
	}
	return out, nil
}

func (f *fakeRepo) FetchManifest(_ context.Context, ref string) (ocispec.Descriptor, []byte, error) {
	data, ok := f.manifests[ref]
	if !ok {
		return ocispec.Descriptor{}, nil, fmt.Errorf("manifest %s: %w", ref, oci.ErrManifestUnknown)
	}
	return ocispec.Descriptor{MediaType: f.types[ref], Digest: digest.FromBytes(data), Size: int64(len(data))}, data, nil
}

func (f *fakeRepo) FetchManifestDescriptor(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	_, data, err := f.FetchManifest(ctx, desc.Digest.String())
	return data, err
}

func (f *fakeRepo) FetchBlob(_ context.Context, desc ocispec.Descriptor, maxSize int64) (io.ReadCloser, error) {
	if f.failBlobs {
		return nil, errors.New("registry unavailable")
	}
	if maxSize > 0 && desc.Size > maxSize {
		return nil, fmt.Errorf("blob %s is %d bytes, over %d: %w", desc.Digest, desc.Size, maxSize, oci.ErrTooLarge)
	}
	data, ok := f.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, oci.ErrBlobUnknown)
	}
	return oci.NewVerifier(io.NopCloser(bytes.NewReader(data)), desc), nil
}

// subjectManifest pushes an artifact manifest to sign and returns its
// descriptor.
func subjectManifest(t *testing.T, f *fakeRepo, text string) ocispec.Descriptor {
	layer := []byte(text)
	return f.putManifest(t, ocispec.Manifest{
		Config: ocispec.DescriptorEmptyJSON,
		Layers: []ocispec.Descriptor{{MediaType: "text/plain", Digest: f.putBlob(layer), Size: int64(len(layer))}},
	}, "")
}

// testKey is a signing key made in the test, as cosign generate-key-pair
// makes one (ECDSA P-256).
type testKey struct {
	pair   *sign.EphemeralKeypair
	pubPEM []byte
}

func newTestKey(t *testing.T) testKey {
	t.Helper()
	pair, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := pair.GetPublicKeyPem()
	if err != nil {
		t.Fatal(err)
	}
	return testKey{pair: pair, pubPEM: []byte(pem)}
}

// bundleFor signs an in-toto statement naming statementDigest, as
// cosign 3 does, and attaches the bundle to subject as a referrer.
func bundleFor(t *testing.T, f *fakeRepo, k testKey, subject ocispec.Descriptor, statementDigest digest.Digest, tamper bool) {
	t.Helper()
	bundleWith(t, f, k, subject, statementDigest, SignPredicate, tamper)
}

// bundleWith is bundleFor with a statement of predicate type predicate:
// cosign attest writes others (provenance, SBOMs) in the same form.
func bundleWith(t *testing.T, f *fakeRepo, k testKey, subject ocispec.Descriptor, statementDigest digest.Digest, predicate string, tamper bool) {
	t.Helper()
	statement := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.example/app","digest":{%q:%q}}],"predicateType":%q,"predicate":{}}`,
		statementDigest.Algorithm().String(), statementDigest.Encoded(), predicate)
	pb, err := sign.Bundle(&sign.DSSEData{Data: []byte(statement), PayloadType: "application/vnd.in-toto+json"}, k.pair, sign.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tamper {
		pb.GetDsseEnvelope().Payload = bytes.Replace(pb.GetDsseEnvelope().Payload, []byte("cosign/sign"), []byte("cosign/SIGN"), 1)
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	layer := ocispec.Descriptor{MediaType: BundleArtifactType, Digest: f.putBlob(raw), Size: int64(len(raw))}
	f.putManifest(t, ocispec.Manifest{
		ArtifactType: BundleArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &subject,
	}, "")
}

// legacyFor signs the simple-signing payload naming payloadDigest with
// a raw ECDSA key, as cosign's legacy form does, under subject's .sig tag.
func legacyFor(t *testing.T, f *fakeRepo, key *ecdsa.PrivateKey, subject ocispec.Descriptor, payloadDigest digest.Digest) {
	t.Helper()
	payload := []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":"registry.example/app"},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, payloadDigest))
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	layer := ocispec.Descriptor{
		MediaType: simpleSigningType, Digest: f.putBlob(payload), Size: int64(len(payload)),
		Annotations: map[string]string{signatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	}
	f.putManifest(t, ocispec.Manifest{Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{layer}},
		strings.Replace(subject.Digest.String(), ":", "-", 1)+".sig")
}

func ecdsaKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return key, pem
}

// cosignCase is one signature setup and what verifying it must give.
type cosignCase struct {
	name     string
	setup    func(f *fakeRepo, subject ocispec.Descriptor)
	material map[string][]byte
	want     string // substring of the identity when ok, else of the error
	ok       bool
}

func runCosignCases(t *testing.T, tests []cosignCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRepo()
			subject := subjectManifest(t, f, "v1")
			tc.setup(f, subject)
			c, err := NewCosign(tc.material, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Verify(context.Background(), f, subject)
			if tc.ok {
				if err != nil || res.Provider != "cosign" || !strings.Contains(res.Identity, tc.want) {
					t.Fatalf("Verify = %+v, %v; want cosign and an identity with %q", res, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %+v, %v; want ErrNotVerified mentioning %q", res, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "BEGIN PUBLIC KEY") {
				t.Errorf("the error shows key material: %v", err)
			}
		})
	}
}

func TestCosignBundles(t *testing.T) {
	a, b := newTestKey(t), newTestKey(t)
	runCosignCases(t, []cosignCase{
		{"signed by the key", func(f *fakeRepo, s ocispec.Descriptor) { bundleFor(t, f, a, s, s.Digest, false) },
			map[string][]byte{"a.pub": a.pubPEM}, "key a.pub (sha256:", true},
		{"signed by one of two keys", func(f *fakeRepo, s ocispec.Descriptor) { bundleFor(t, f, b, s, s.Digest, false) },
			map[string][]byte{"a.pub": a.pubPEM, "b.pub": b.pubPEM, "notes.txt": []byte("not a key")}, "key b.pub", true},
		{"signed by another key", func(f *fakeRepo, s ocispec.Descriptor) { bundleFor(t, f, b, s, s.Digest, false) },
			map[string][]byte{"a.pub": a.pubPEM}, "a.pub", false},
		{"not signed", func(*fakeRepo, ocispec.Descriptor) {},
			map[string][]byte{"a.pub": a.pubPEM}, "no cosign signature", false},
		{"a signature of another digest attached to this one", func(f *fakeRepo, s ocispec.Descriptor) {
			bundleFor(t, f, a, s, digest.FromString("another manifest"), false)
		}, map[string][]byte{"a.pub": a.pubPEM}, "a.pub", false},
		{"a tampered payload", func(f *fakeRepo, s ocispec.Descriptor) { bundleFor(t, f, a, s, s.Digest, true) },
			map[string][]byte{"a.pub": a.pubPEM}, "a.pub", false},
		{"an attestation by the key, not a signature", func(f *fakeRepo, s ocispec.Descriptor) {
			bundleWith(t, f, a, s, s.Digest, "https://slsa.dev/provenance/v1", false)
		}, map[string][]byte{"a.pub": a.pubPEM}, "not a signature", false},
		{"one bad signature, one good", func(f *fakeRepo, s ocispec.Descriptor) {
			bundleFor(t, f, b, s, s.Digest, false)
			bundleFor(t, f, a, s, s.Digest, false)
		}, map[string][]byte{"a.pub": a.pubPEM}, "key a.pub", true},
	})
}

func TestCosignLegacy(t *testing.T) {
	key, pub := ecdsaKey(t)
	other, otherPub := ecdsaKey(t)
	runCosignCases(t, []cosignCase{
		{"signed by the key", func(f *fakeRepo, s ocispec.Descriptor) { legacyFor(t, f, key, s, s.Digest) },
			map[string][]byte{"cosign.pub": pub}, "key cosign.pub", true},
		{"signed by another key", func(f *fakeRepo, s ocispec.Descriptor) { legacyFor(t, f, other, s, s.Digest) },
			map[string][]byte{"cosign.pub": pub}, "not signed by any of the keys (cosign.pub)", false},
		{"another digest's signature copied to this tag", func(f *fakeRepo, s ocispec.Descriptor) {
			legacyFor(t, f, key, s, digest.FromString("another manifest"))
		}, map[string][]byte{"cosign.pub": pub}, "a signature of sha256:", false},
		{"either of two keys", func(f *fakeRepo, s ocispec.Descriptor) { legacyFor(t, f, other, s, s.Digest) },
			map[string][]byte{"cosign.pub": pub, "other.pub": otherPub}, "key other.pub", true},
	})
}

func TestCosignLimitsAndFailures(t *testing.T) {
	a := newTestKey(t)
	material := map[string][]byte{"a.pub": a.pubPEM}
	t.Run("a signature blob over the limit does not verify", func(t *testing.T) {
		f := newFakeRepo()
		subject := subjectManifest(t, f, "v1")
		bundleFor(t, f, a, subject, subject.Digest, false)
		c, err := NewCosign(material, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.MaxBlob = 64
		if _, err := c.Verify(context.Background(), f, subject); !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "over") {
			t.Errorf("Verify = %v, want ErrNotVerified saying the blob is over the limit", err)
		}
	})
	t.Run("a registry failure is not a verification failure", func(t *testing.T) {
		f := newFakeRepo()
		subject := subjectManifest(t, f, "v1")
		bundleFor(t, f, a, subject, subject.Digest, false)
		f.failBlobs = true
		c, err := NewCosign(material, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Verify(context.Background(), f, subject)
		if err == nil || errors.Is(err, ErrNotVerified) {
			t.Errorf("Verify = %v, want the registry's error, not ErrNotVerified (it is retried, not reported as unsigned)", err)
		}
	})
}

// A registry listing more signatures than maxSignatures is read only up
// to the bound, and the error says so.
func TestCosignSignatureBound(t *testing.T) {
	a, b := newTestKey(t), newTestKey(t)
	f := newFakeRepo()
	subject := subjectManifest(t, f, "v1")
	for i := 0; i < maxSignatures+5; i++ {
		// Another digest's statement each, so each bundle is its own.
		bundleFor(t, f, b, subject, digest.FromString(fmt.Sprint("other ", i)), false)
	}
	c, err := NewCosign(map[string][]byte{"a.pub": a.pubPEM}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Verify(context.Background(), f, subject)
	if !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), fmt.Sprintf("only the first %d", maxSignatures)) {
		t.Errorf("Verify = %v, want ErrNotVerified saying only the first %d were looked at", err, maxSignatures)
	}
	if got := strings.Count(err.Error(), "bundle sha256:"); got > maxSignatures {
		t.Errorf("%d bundles looked at, over the bound %d", got, maxSignatures)
	}
}

func TestNewCosignRefusals(t *testing.T) {
	a := newTestKey(t)
	for _, tc := range []struct {
		name     string
		material map[string][]byte
		ids      []Identity
		want     string
	}{
		{"no key", map[string][]byte{"readme.txt": []byte("x")}, nil, "no cosign public key"},
		{"a key that does not parse", map[string][]byte{"bad.pub": []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")}, nil, "bad.pub is not a PEM public key"},
		{"keyless without a trusted root", map[string][]byte{"a.pub": a.pubPEM}, []Identity{{Issuer: ".*", Subject: ".*"}}, TrustedRootKey},
		{"keyless with a broken trusted root", map[string][]byte{TrustedRootKey: []byte("{")}, []Identity{{Issuer: ".*", Subject: ".*"}}, "not a Sigstore trusted root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCosign(tc.material, tc.ids)
			if !errors.Is(err, ErrTrustMaterial) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewCosign = %v, want ErrTrustMaterial mentioning %q", err, tc.want)
			}
		})
	}
}

func TestTrustHash(t *testing.T) {
	base := TrustHash(map[string][]byte{"a.pub": []byte("A"), "b.pub": []byte("B")}, "cosign")
	if again := TrustHash(map[string][]byte{"b.pub": []byte("B"), "a.pub": []byte("A")}, "cosign"); again != base {
		t.Error("the hash depends on map order")
	}
	for name, other := range map[string]string{
		"content":  TrustHash(map[string][]byte{"a.pub": []byte("A"), "b.pub": []byte("C")}, "cosign"),
		"name":     TrustHash(map[string][]byte{"a.pub": []byte("A"), "c.pub": []byte("B")}, "cosign"),
		"settings": TrustHash(map[string][]byte{"a.pub": []byte("A"), "b.pub": []byte("B")}, "notation"),
		"boundary": TrustHash(map[string][]byte{"a.pub": []byte("AB"), "b.pub": nil}, "cosign"),
	} {
		if other == base {
			t.Errorf("a change of %s leaves the hash as it was", name)
		}
	}
}
