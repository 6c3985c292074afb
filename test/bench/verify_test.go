//go:build linux

package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/reference"
	"github.com/ocisync/ocisync/internal/verify"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// The proxy's names for the requests of signature verification, besides
// the referrers API's own endpoint (a 404 from the registry, which has
// none).
const (
	kindReferrersIndex = "manifest (referrers index)"
	kindSignature      = "manifest (signature)"
	kindBundle         = "blob (bundle)"
)

// verifyCounts is the part of c that signature verification asked (the
// referrers endpoint and the kinds above, failed or not), and the rest.
func verifyCounts(c counts) (verification, rest counts) {
	verification, rest = counts{}, counts{}
	for k, v := range c {
		_, kind, _ := strings.Cut(k, " ")
		if strings.HasPrefix(kind, "referrers") || strings.HasPrefix(kind, kindReferrersIndex) || strings.HasPrefix(kind, kindSignature) || strings.HasPrefix(kind, kindBundle) {
			verification[k] = v
		} else {
			rest[k] = v
		}
	}
	return verification, rest
}

// verifySecretName is the Secret of the public key, in the one namespace
// of the run.
const verifySecretName = "bench-cosign"

// signRepos signs the manifest of bench/repo-<i>:v1 of each of repos
// repositories once, straight to the registry, as cosign 3 does and as
// signPlain of internal/controller's tests does: a Sigstore bundle of a
// DSSE in-toto statement about the digest, signed with a key made here,
// in a referrer manifest, listed in the index under the referrers tag
// schema's tag (the registry has no referrers API). The proxy labels the
// index, the signature manifests and the bundles. It returns the PEM
// public key.
func signRepos(t *testing.T, reg *registrytest.Registry, proxy *countingProxy, repos int) []byte {
	t.Helper()
	ctx := t.Context()
	key, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatalf("making a signing key: %v", err)
	}
	pub, err := key.GetPublicKeyPem()
	if err != nil {
		t.Fatalf("encoding the public key: %v", err)
	}
	c, err := oci.NewClient(oci.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(reg.URL, "http://")
	empty := ocispec.DescriptorEmptyJSON
	empty.Data = nil
	for i := range repos {
		name := fmt.Sprintf("bench/repo-%d", i)
		ref, err := reference.Parse(host + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		r := c.Repository(ref)
		subject, err := r.Resolve(ctx, "v1")
		if err != nil {
			t.Fatalf("resolving %s:v1: %v", name, err)
		}
		statement := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"%s","digest":{"sha256":%q}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`, name, subject.Digest.Encoded())
		pb, err := sign.Bundle(&sign.DSSEData{Data: []byte(statement), PayloadType: "application/vnd.in-toto+json"}, key, sign.BundleOptions{})
		if err != nil {
			t.Fatalf("signing %s@%s: %v", name, subject.Digest, err)
		}
		raw, err := protojson.Marshal(pb)
		if err != nil {
			t.Fatal(err)
		}
		layer := ocispec.Descriptor{MediaType: verify.BundleArtifactType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
		if err := r.PushBlob(ctx, layer, bytes.NewReader(raw)); err != nil {
			t.Fatalf("pushing the bundle of %s: %v", name, err)
		}
		if err := r.PushBlob(ctx, empty, bytes.NewReader([]byte("{}"))); err != nil {
			t.Fatalf("pushing the empty config to %s: %v", name, err)
		}
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			ArtifactType: verify.BundleArtifactType, Config: empty, Layers: []ocispec.Descriptor{layer}, Subject: &subject,
		}
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := r.PushManifest(ctx, digest.FromBytes(data).String(), m.MediaType, data)
		if err != nil {
			t.Fatalf("pushing the signature manifest of %s: %v", name, err)
		}
		sig.ArtifactType = verify.BundleArtifactType
		idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{sig}}
		data, err = json.Marshal(idx)
		if err != nil {
			t.Fatal(err)
		}
		tag := oci.ReferrersTag(subject.Digest)
		if _, err := r.PushManifest(ctx, tag, idx.MediaType, data); err != nil {
			t.Fatalf("pushing the referrers index %s of %s: %v", tag, name, err)
		}
		proxy.label("manifest", tag, kindReferrersIndex)
		proxy.label("manifest", sig.Digest.String(), kindSignature)
		proxy.label("blob", layer.Digest.String(), kindBundle)
	}
	return []byte(pub)
}

// createVerifySecret creates the Secret of the public key in ns, as
// cosign generate-key-pair names it, and returns its name.
func createVerifySecret(t *testing.T, k8s client.Client, ns string, pub []byte) string {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: verifySecretName}, Data: map[string][]byte{"cosign.pub": pub}}
	if err := k8s.Create(t.Context(), s); err != nil {
		t.Fatalf("creating the Secret %s/%s: %v", ns, s.Name, err)
	}
	return s.Name
}

// countVerified is the Artifacts of ns whose status.verified names the
// digest they published, SourceVerified True: verification did run.
func countVerified(t *testing.T, k8s client.Client, ns string) int {
	t.Helper()
	var list ocisyncv1alpha1.ArtifactList
	if err := k8s.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing the Artifacts of %s: %v", ns, err)
	}
	n := 0
	for _, a := range list.Items {
		v := a.Status.Verified
		if v != nil && a.Status.Digest != "" && v.Digest == a.Status.Digest && apimeta.IsStatusConditionTrue(a.Status.Conditions, ocisyncv1alpha1.ConditionSourceVerified) {
			n++
		}
	}
	return n
}

// checkVerify fails t when the verification run measured nothing
// plausible: an Artifact Ready without its digest verified, or no
// signature fetched through the proxy (the manager verifies nothing, or
// the harness's labels miss its requests). Whether the steady state and
// the memory meet their targets is what the report says.
func checkVerify(t *testing.T, r scaleResult) {
	t.Helper()
	checkScale(t, r)
	if r.verified != r.n {
		t.Errorf("%d of %d Artifacts have status.verified naming their published digest with SourceVerified True, want all", r.verified, r.n)
	}
	for _, kind := range []string{"GET " + kindSignature, "GET " + kindBundle} {
		if r.first.count(kind) == 0 {
			t.Errorf("the proxy counted no %s on the first sync of %d Artifacts with spec.verify, want at least one: %v", kind, r.n, r.first)
		}
	}
}

func TestVerifyCounts(t *testing.T) {
	v, rest := verifyCounts(counts{"GET referrers (404)": 3, "GET " + kindReferrersIndex: 3, "GET " + kindSignature: 3, "GET " + kindBundle: 3, "HEAD manifest": 4, "GET blob": 2})
	if got, want := v.String(), "GET blob (bundle) 3, GET manifest (referrers index) 3, GET manifest (signature) 3, GET referrers (404) 3"; got != want {
		t.Errorf("verification: %q, want %q", got, want)
	}
	if got, want := rest.String(), "GET blob 2, HEAD manifest 4"; got != want {
		t.Errorf("rest: %q, want %q", got, want)
	}
	if got, want := labelKey("manifest", "/v2/bench/repo-1/manifests/sha256-abc"), "manifest sha256-abc"; got != want {
		t.Errorf("labelKey = %q, want %q", got, want)
	}
}

func TestVerifyReport(t *testing.T) {
	base := scaleResult{n: 10, repos: 5, concurrent: 10, interval: 3 * time.Second, readySeconds: 1, peakRSS: 40 * mib, liveHeap: 8 * mib,
		first: counts{"GET manifest": 10, "GET blob": 5}, firstSyncs: 10, firstWrites: 30, firstByRes: map[string]int{"configmaps": 10},
		steady: counts{"HEAD manifest": 10}, steadySyncs: 10, steadyByRes: map[string]int{}, syncResults: counts{"published": 10}}
	v := base
	v.verify, v.verified = true, 10
	v.first = counts{"GET manifest": 10, "GET blob": 5, "GET referrers (404)": 10, "GET " + kindReferrersIndex: 10, "GET " + kindSignature: 10, "GET " + kindBundle: 10}
	for _, tc := range []struct {
		name  string
		scale []scaleResult
		want  []string
	}{
		{"alone", nil, []string{"| Artifacts Ready | 1.00 s | not run |", "compare with the 10 Artifacts (`--concurrent=10`) of Scale"}},
		{"beside the scale run", []scaleResult{base}, []string{"| Artifacts Ready | 1.00 s | 1.00 s |", "in the same `make bench`"}},
	} {
		md := (&report{cfg: config{repos: 5, interval: 3 * time.Second}, scale: tc.scale, verify: &v}).markdown()
		for _, want := range append(tc.want,
			"| First sync: verification's requests | 40 (4.00 per Artifact): GET blob (bundle) 10, GET manifest (referrers index) 10, GET manifest (signature) 10, GET referrers (404) 10 | none |",
			"| First sync: requests besides verification's, blob downloads and re-polls | 1.00 per Artifact |",
			"| Steady state: registry requests per sync | 1.00: HEAD manifest 10 |",
			"| 0 | met |",
		) {
			if !strings.Contains(md, want) {
				t.Errorf("%s: the report lacks %q:\n%s", tc.name, want, md)
			}
		}
		if strings.Contains(md, "%!") {
			t.Errorf("%s: the report has a formatting error:\n%s", tc.name, md)
		}
	}
}
