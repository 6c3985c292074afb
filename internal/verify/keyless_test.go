package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The identity keyless signatures are made for, and another.
const (
	alice   = "alice@example.com"
	mallory = "mallory@example.com"
	issuer  = "https://accounts.example.com"
	evil    = "https://accounts.example.net"
)

// aliceID matches alice's certificates only, as a careful user writes it.
var aliceID = Identity{Issuer: `^https://accounts\.example\.com$`, Subject: `^alice@example\.com$`}

// newSigstore makes a virtual Sigstore (a Fulcio-style CA, a Rekor log,
// a CT log and a timestamp authority, all in memory) with sigstore-go's
// test helpers.
func newSigstore(t *testing.T) *ca.VirtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// trustedRoot says which Sigstore each part of a trusted_root.json comes
// from; nil leaves the part out.
type trustedRoot struct {
	ca, rekor, tsa, ct *ca.VirtualSigstore
}

// json is the trusted root as a user puts it in a Secret: the format
// sigstore-go reads (and cosign trusted-root create writes).
func (r trustedRoot) json(t *testing.T) []byte {
	t.Helper()
	var cas []root.CertificateAuthority
	var tsas []root.TimestampingAuthority
	var rekor, ct map[string]*root.TransparencyLog
	if r.ca != nil {
		cas = r.ca.FulcioCertificateAuthorities()
	}
	if r.tsa != nil {
		tsas = r.tsa.TimestampingAuthorities()
	}
	if r.rekor != nil {
		rekor = logsByKeyID(t, r.rekor.RekorLogs())
	}
	if r.ct != nil {
		ct = logsByKeyID(t, r.ct.CTLogs())
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, cas, ct, tsas, rekor)
	if err != nil {
		t.Fatal(err)
	}
	data, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// logsByKeyID copies the virtual Sigstore's logs with their log ID as a
// real trusted root holds it: the raw SHA-256 of the log's key, where
// the helpers keep its hex form (which the JSON would encode as is, and
// no entry would then match).
func logsByKeyID(t *testing.T, logs map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
	t.Helper()
	out := map[string]*root.TransparencyLog{}
	for id, l := range logs {
		raw, err := hex.DecodeString(id)
		if err != nil {
			t.Fatal(err)
		}
		c := *l
		c.ID = raw
		out[id] = &c
	}
	return out
}

// keylessSig is a keyless signature to make: who signs, what the
// in-toto statement names, when the log integrates it, and in what form.
type keylessSig struct {
	subject, issuer string
	// digest is the statement's subject; empty: the manifest signed.
	digest digest.Digest
	// logged is the log's integrated time; zero: 5 minutes after the
	// certificate's start, within its 10 minutes, as Attest does.
	logged time.Time
	// rekorV2 makes a Rekor v2 entry (an inclusion proof, no signed
	// entry timestamp) rather than a Rekor v1 one.
	rekorV2 bool
	// noLog and noTimestamp leave the log entry or the timestamp
	// authority's signed timestamp out of the bundle.
	noLog, noTimestamp bool
	// tamper changes the payload after signing.
	tamper bool
}

// keylessBundleFor signs, as cosign 3 does, a DSSE envelope holding an
// in-toto statement about a manifest digest, with a certificate of vs's
// CA for the identity, and attaches the Sigstore bundle to subject as a
// referrer, as bundleFor does.
func keylessBundleFor(t *testing.T, f *fakeRepo, vs *ca.VirtualSigstore, subject ocispec.Descriptor, s keylessSig) {
	t.Helper()
	d := s.digest
	if d == "" {
		d = subject.Digest
	}
	statement := []byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.example/app","digest":{%q:%q}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`,
		d.Algorithm().String(), d.Encoded()))
	logged := s.logged
	if logged.IsZero() {
		logged = time.Now().Add(5 * time.Minute)
	}
	var entity *ca.TestEntity
	var err error
	if s.rekorV2 {
		entity, err = vs.AttestAtTimeHashedRekordV2(s.subject, s.issuer, statement, logged)
	} else {
		// With an inclusion proof: a bundle v0.3 must hold one.
		entity, err = vs.AttestAtTime(s.subject, s.issuer, statement, logged, true)
	}
	if err != nil {
		t.Fatal(err)
	}
	raw := bundleJSON(t, vs, entity, s)
	layer := ocispec.Descriptor{MediaType: BundleArtifactType, Digest: f.putBlob(raw), Size: int64(len(raw))}
	f.putManifest(t, ocispec.Manifest{
		ArtifactType: BundleArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &subject,
	}, "")
}

// bundleJSON writes the test entity as a Sigstore bundle v0.3: the leaf
// certificate, the DSSE envelope, the log entries and the timestamp
// authority's signed timestamps.
func bundleJSON(t *testing.T, vs *ca.VirtualSigstore, entity *ca.TestEntity, s keylessSig) []byte {
	t.Helper()
	vc, err := entity.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := entity.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	env := sc.EnvelopeContent().RawEnvelope()
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if s.tamper {
		payload = bytes.Replace(payload, []byte("cosign/sign"), []byte("cosign/SIGN"), 1)
	}
	pbEnv := &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType}
	for _, sig := range env.Signatures {
		raw, err := base64.StdEncoding.DecodeString(sig.Sig)
		if err != nil {
			t.Fatal(err)
		}
		pbEnv.Signatures = append(pbEnv.Signatures, &protodsse.Signature{Sig: raw, Keyid: sig.KeyID})
	}
	material := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
	}
	if !s.noLog {
		entries, err := entity.TlogEntries()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			material.TlogEntries = append(material.TlogEntries, logEntry(t, vs, e))
		}
	}
	if !s.noTimestamp {
		stamps, err := entity.Timestamps()
		if err != nil {
			t.Fatal(err)
		}
		material.TimestampVerificationData = &protobundle.TimestampVerificationData{}
		for _, ts := range stamps {
			material.TimestampVerificationData.Rfc3161Timestamps = append(material.TimestampVerificationData.Rfc3161Timestamps,
				&protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
		}
	}
	pb := &protobundle.Bundle{
		MediaType:            BundleArtifactType,
		VerificationMaterial: material,
		Content:              &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pbEnv},
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// logEntry is e as a bundle holds it. The helpers' Rekor v1 entries
// keep their signed entry timestamp (the log's promise, which makes the
// integrated time an observer timestamp) out of the protobuf entry and
// name no kind: the log signs the same payload again here, and the
// kind is the DSSE one of the envelope.
func logEntry(t *testing.T, vs *ca.VirtualSigstore, e *tlog.Entry) *protorekor.TransparencyLogEntry {
	t.Helper()
	tle := proto.Clone(e.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	if e.IsRekorV2() {
		return tle
	}
	if tle.KindVersion == nil {
		tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
	}
	set, err := vs.RekorSignPayload(tlog.RekorPayload{
		Body:           e.Body(),
		IntegratedTime: tle.IntegratedTime,
		LogIndex:       tle.LogIndex,
		LogID:          hex.EncodeToString(tle.LogId.KeyId),
	})
	if err != nil {
		t.Fatal(err)
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	return tle
}

// noNetwork fails the test on any HTTP request through the default
// transport and any host name lookup, the ways sigstore-go or anything
// under it would reach a public transparency log or TUF repository.
// The tests of this package do not run in parallel, so swapping the
// globals is safe.
func noNetwork(t *testing.T) {
	t.Helper()
	var mu sync.Mutex
	var reached []string
	record := func(what string) {
		mu.Lock()
		reached = append(reached, what)
		mu.Unlock()
	}
	transport, resolver := http.DefaultTransport, net.DefaultResolver
	http.DefaultTransport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		record(r.URL.String())
		return nil, errors.New("no network in tests")
	})
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(_ context.Context, _, address string) (net.Conn, error) {
		record("a host name lookup (DNS server " + address + ")")
		return nil, errors.New("no network in tests")
	}}
	t.Cleanup(func() {
		http.DefaultTransport, net.DefaultResolver = transport, resolver
		if len(reached) > 0 {
			t.Errorf("verification reached the network: %s", strings.Join(reached, ", "))
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestCosignKeyless(t *testing.T) {
	noNetwork(t)
	vs, other := newSigstore(t), newSigstore(t)
	// The trusted root of a Sigstore without a CT log: the helpers'
	// certificates carry no embedded certificate timestamps.
	full := trustedRoot{ca: vs, rekor: vs, tsa: vs}.json(t)
	sigBy := func(s keylessSig) func(*fakeRepo, ocispec.Descriptor) {
		return func(f *fakeRepo, subject ocispec.Descriptor) { keylessBundleFor(t, f, vs, subject, s) }
	}
	tests := []struct {
		name  string
		setup func(f *fakeRepo, subject ocispec.Descriptor)
		root  []byte
		ids   []Identity
		want  []string // substrings of the identity, or of the error
		ok    bool
	}{
		{"the identity and issuer match", sigBy(keylessSig{subject: alice, issuer: issuer}),
			full, []Identity{aliceID}, []string{alice + " from issuer " + issuer}, true},
		{"unanchored expressions match within, as cosign's and Flux's do", sigBy(keylessSig{subject: alice, issuer: issuer}),
			full, []Identity{{Issuer: `accounts\.example\.`, Subject: `@example\.com`}}, []string{alice}, true},
		{"another subject", sigBy(keylessSig{subject: mallory, issuer: issuer}),
			full, []Identity{aliceID}, []string{"signed by " + mallory + " from issuer " + issuer, "matches none of the identities", aliceID.Subject}, false},
		{"another issuer", sigBy(keylessSig{subject: alice, issuer: evil}),
			full, []Identity{aliceID}, []string{"signed by " + alice + " from issuer " + evil, "matches none of the identities", aliceID.Issuer}, false},
		{"the subject of one identity with the issuer of another", sigBy(keylessSig{subject: alice, issuer: evil}),
			full, []Identity{aliceID, {Issuer: `^https://accounts\.example\.net$`, Subject: `^bob@`}}, []string{"matches none of the identities"}, false},
		{"one of several identities matches", sigBy(keylessSig{subject: alice, issuer: issuer}),
			full, []Identity{{Issuer: `^https://accounts\.example\.net$`, Subject: `^bob@example\.com$`}, aliceID}, []string{alice + " from issuer " + issuer}, true},
		{"a signature of another digest attached to this one", sigBy(keylessSig{subject: alice, issuer: issuer, digest: digest.FromString("another manifest")}),
			full, []Identity{aliceID}, []string{"not verified against the trusted root", "digest"}, false},
		{"a tampered payload", sigBy(keylessSig{subject: alice, issuer: issuer, tamper: true}),
			full, []Identity{aliceID}, []string{"not verified against the trusted root"}, false},
		{"a bundle of another Sigstore", func(f *fakeRepo, s ocispec.Descriptor) {
			keylessBundleFor(t, f, other, s, keylessSig{subject: alice, issuer: issuer})
		}, full, []Identity{aliceID}, []string{"logged only in transparency logs trusted_root.json does not list"}, false},
		{"a certificate of a CA the trusted root does not list", sigBy(keylessSig{subject: alice, issuer: issuer}),
			trustedRoot{ca: other, rekor: vs, tsa: vs}.json(t), []Identity{aliceID}, []string{"leaf certificate verification failed"}, false},
		{"logged after the certificate expired", sigBy(keylessSig{subject: alice, issuer: issuer, logged: time.Now().Add(30 * time.Minute)}),
			full, []Identity{aliceID}, []string{"integrated time outside certificate validity"}, false},
		{"logged before the certificate was valid", sigBy(keylessSig{subject: alice, issuer: issuer, logged: time.Now().Add(-30 * time.Minute)}),
			full, []Identity{aliceID}, []string{"integrated time outside certificate validity"}, false},
		{"no log entry where the trusted root lists a log", sigBy(keylessSig{subject: alice, issuer: issuer, noLog: true}),
			full, []Identity{aliceID}, []string{"no transparency log entry"}, false},
		{"a log entry and its signed time, no timestamp authority's (Rekor v1, as the public Sigstore)", sigBy(keylessSig{subject: alice, issuer: issuer, noTimestamp: true}),
			full, []Identity{aliceID}, []string{alice}, true},
		{"a timestamp authority's signed time, no log, where the trusted root lists none", sigBy(keylessSig{subject: alice, issuer: issuer, noLog: true}),
			trustedRoot{ca: vs, tsa: vs}.json(t), []Identity{aliceID}, []string{alice}, true},
		{"a Rekor v2 entry and a timestamp authority's signed time", sigBy(keylessSig{subject: alice, issuer: issuer, rekorV2: true}),
			full, []Identity{aliceID}, []string{alice}, true},
		{"a Rekor v2 entry without a signed time", sigBy(keylessSig{subject: alice, issuer: issuer, rekorV2: true, noTimestamp: true}),
			full, []Identity{aliceID}, []string{"no signed time"}, false},
		{"no embedded certificate timestamp where the trusted root lists a CT log", sigBy(keylessSig{subject: alice, issuer: issuer}),
			trustedRoot{ca: vs, rekor: vs, tsa: vs, ct: vs}.json(t), []Identity{aliceID}, []string{"signed certificate timestamp"}, false},
		{"one bundle of another identity, one of the identity", func(f *fakeRepo, s ocispec.Descriptor) {
			keylessBundleFor(t, f, vs, s, keylessSig{subject: mallory, issuer: issuer})
			keylessBundleFor(t, f, vs, s, keylessSig{subject: alice, issuer: issuer})
		}, full, []Identity{aliceID}, []string{alice}, true},
		{"a key-signed bundle", func(f *fakeRepo, s ocispec.Descriptor) { bundleFor(t, f, newTestKey(t), s, s.Digest, false) },
			full, []Identity{aliceID}, []string{"signed with a key, not a keyless certificate"}, false},
		{"the legacy .sig form", func(f *fakeRepo, s ocispec.Descriptor) {
			key, _ := ecdsaKey(t)
			legacyFor(t, f, key, s, s.Digest)
		}, full, []Identity{aliceID}, []string{"keyless signatures must be Sigstore bundles"}, false},
		{"not signed", func(*fakeRepo, ocispec.Descriptor) {},
			full, []Identity{aliceID}, []string{"no cosign signature"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRepo()
			subject := subjectManifest(t, f, "v1")
			tc.setup(f, subject)
			c, err := NewCosign(map[string][]byte{TrustedRootKey: tc.root}, tc.ids)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Verify(context.Background(), f, subject)
			if tc.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				for _, w := range tc.want {
					if res.Provider != "cosign" || !strings.Contains(res.Identity, w) {
						t.Errorf("verified by %+v, want an identity with %q", res, w)
					}
				}
				return
			}
			if !errors.Is(err, ErrNotVerified) {
				t.Fatalf("Verify = %+v, %v; want ErrNotVerified", res, err)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Verify: %v\nwant it to mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "-----BEGIN") {
				t.Errorf("the error shows key material: %v", err)
			}
		})
	}
}

func TestNewCosignKeylessRefusals(t *testing.T) {
	vs := newSigstore(t)
	full := trustedRoot{ca: vs, rekor: vs, tsa: vs}.json(t)
	for _, tc := range []struct {
		name string
		root []byte
		ids  []Identity
		want string
	}{
		{"a trusted root without a certificate authority", trustedRoot{rekor: vs, tsa: vs}.json(t), []Identity{aliceID}, "no certificate authority"},
		{"a trusted root with neither a log nor a timestamp authority", trustedRoot{ca: vs}.json(t), []Identity{aliceID}, "neither a transparency log nor a timestamp authority"},
		{"a trusted root of another format", []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.9"}`), []Identity{aliceID}, "not a Sigstore trusted root"},
		{"an issuer that is not a regular expression", full, []Identity{{Issuer: "(", Subject: ".*"}}, `issuer "(" is not a regular expression`},
		{"a subject that is not a regular expression", full, []Identity{aliceID, {Issuer: ".*", Subject: "a["}}, `identity 1: subject "a[" is not a regular expression`},
		{"no subject", full, []Identity{{Issuer: aliceID.Issuer}}, "identity 0: give both an issuer and a subject"},
		{"no issuer", full, []Identity{{Subject: aliceID.Subject}}, "identity 0: give both an issuer and a subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCosign(map[string][]byte{TrustedRootKey: tc.root}, tc.ids)
			if !errors.Is(err, ErrTrustMaterial) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewCosign = %v, want ErrTrustMaterial mentioning %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "-----BEGIN") {
				t.Errorf("the error shows trust material: %v", err)
			}
		})
	}
}
