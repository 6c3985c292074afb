package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/verify"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// signingKey is a cosign-style key pair made in the test.
type signingKey struct {
	pair   *sign.EphemeralKeypair
	pubPEM []byte
}

func newSigningKey() signingKey {
	GinkgoHelper()
	pair, err := sign.NewEphemeralKeypair(nil)
	Expect(err).NotTo(HaveOccurred())
	pem, err := pair.GetPublicKeyPem()
	Expect(err).NotTo(HaveOccurred())
	return signingKey{pair: pair, pubPEM: []byte(pem)}
}

// signPlain signs subject in repo of the plain registry the way cosign 3
// does: a Sigstore bundle in a referrer manifest. The registry has no
// referrers API, so the referrer is listed, as cosign and oras list it,
// in the index under the referrers tag schema's tag.
func signPlain(repo string, subject ocispec.Descriptor, k signingKey) {
	GinkgoHelper()
	statement := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"%s","digest":{"sha256":%q}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`, repo, subject.Digest.Encoded())
	pb, err := sign.Bundle(&sign.DSSEData{Data: []byte(statement), PayloadType: "application/vnd.in-toto+json"}, k.pair, sign.BundleOptions{})
	Expect(err).NotTo(HaveOccurred())
	raw, err := protojson.Marshal(pb)
	Expect(err).NotTo(HaveOccurred())
	attachPlain(repo, subject, verify.BundleArtifactType, verify.BundleArtifactType, raw)
}

// attachPlain pushes content as the one layer (of layerType) of a
// referrer manifest of artifactType whose subject is subject, in repo of
// the plain registry, and lists it, as cosign, notation and oras do on a
// registry without the referrers API, in the index under the referrers
// tag schema's tag.
func attachPlain(repo string, subject ocispec.Descriptor, artifactType, layerType string, content []byte) {
	GinkgoHelper()
	r := repository(plainPusher(), plainRegistry.Host, repo)
	layer := ocispec.Descriptor{MediaType: layerType, Digest: digest.FromBytes(content), Size: int64(len(content))}
	Expect(r.PushBlob(bg, layer, bytes.NewReader(content))).To(Succeed())
	empty := ocispec.DescriptorEmptyJSON
	empty.Data = nil
	Expect(r.PushBlob(bg, empty, bytes.NewReader([]byte("{}")))).To(Succeed())
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType, Config: empty, Layers: []ocispec.Descriptor{layer}, Subject: &subject,
	}
	data, err := json.Marshal(m)
	Expect(err).NotTo(HaveOccurred())
	sig, err := r.PushManifest(bg, digest.FromBytes(data).String(), m.MediaType, data)
	Expect(err).NotTo(HaveOccurred())
	sig.ArtifactType = artifactType

	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	tag := oci.ReferrersTag(subject.Digest)
	if _, old, err := r.FetchManifest(bg, tag); err == nil {
		Expect(json.Unmarshal(old, &idx)).To(Succeed())
	} else {
		Expect(errors.Is(err, oci.ErrNotFound) || errors.Is(err, oci.ErrManifestUnknown)).To(BeTrue(), "reading the referrers index: %v", err)
	}
	idx.Manifests = append(idx.Manifests, sig)
	data, err = json.Marshal(idx)
	Expect(err).NotTo(HaveOccurred())
	_, err = r.PushManifest(bg, tag, idx.MediaType, data)
	Expect(err).NotTo(HaveOccurred())
}

func keySecret(ns, name string, keys map[string][]byte) *corev1.Secret {
	GinkgoHelper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: keys}
	Expect(k8sClient.Create(bg, s)).To(Succeed())
	return s
}

func sourceVerified(a *v1alpha1.Artifact) *metav1.Condition {
	return meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionSourceVerified)
}

var _ = Describe("Signature verification", func() {
	It("publishes only signed digests, keeps the last good output, re-verifies when the keys change, and costs nothing in steady state", func() {
		ns := newNamespace()
		repo := repoFor(ns)
		key, other := newSigningKey(), newSigningKey()
		secret := keySecret(ns, "cosign-keys", map[string][]byte{"cosign.pub": key.pubPEM})

		By("syncing a signed v1")
		v1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		signPlain(repo, v1, key)
		spec := baseSpec(repo, "v1")
		spec.Verify = &v1alpha1.VerifySpec{Provider: v1alpha1.VerifyProviderCosign, SecretRef: corev1.LocalObjectReference{Name: secret.Name}}
		createNamedArtifact(ns, "signed", spec)
		a := waitNamedReady(ns, "signed")
		Expect(a.Status.Digest).To(Equal(v1.Digest.String()))
		Expect(a.Status.Verified).NotTo(BeNil())
		Expect(a.Status.Verified.Digest).To(Equal(v1.Digest.String()))
		Expect(a.Status.Verified.Identity).To(ContainSubstring("key cosign.pub"))
		Expect(sourceVerified(a)).To(HaveField("Status", metav1.ConditionTrue))
		Expect(sourceVerified(a).Message).To(ContainSubstring("key cosign.pub"))
		Expect(getConfigMap(ns, configMapName).Data).To(HaveKeyWithValue("a.txt", "one\n"))

		By("asking the registry one HEAD per interval in steady state, no signature again")
		before := proxy.Counts(repo)
		time.Sleep(3500 * time.Millisecond)
		steady := countsSince(before, proxy.Counts(repo))
		Expect(steady).NotTo(BeEmpty())
		for k := range steady {
			Expect(k.method+" "+k.kind).To(Equal("HEAD manifests"), "steady state with verification on: %v", steady)
		}

		By("refusing v2 pushed unsigned, keeping v1 byte for byte")
		v2, _ := pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
		Eventually(func() string {
			c := meta.FindStatusCondition(getNamedArtifact(ns, "signed").Status.Conditions, v1alpha1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionFalse {
				return ""
			}
			return c.Reason + ": " + c.Message
		}).Should(And(HavePrefix(v1alpha1.ReasonVerificationFailed), ContainSubstring("no cosign signature"), ContainSubstring(v2.Digest.String())))
		a = getNamedArtifact(ns, "signed")
		Expect(sourceVerified(a)).To(HaveField("Status", metav1.ConditionFalse))
		Expect(meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionStalled)).To(BeFalse(), "a missing signature is retried, not Stalled")
		Expect(a.Status.Digest).To(Equal(v1.Digest.String()))
		Expect(getConfigMap(ns, configMapName).Data).To(HaveKeyWithValue("a.txt", "one\n"))

		By("publishing v2 once it is signed")
		signPlain(repo, v2, key)
		Eventually(func() string { return getNamedArtifact(ns, "signed").Status.Digest }).WithTimeout(30 * time.Second).Should(Equal(v2.Digest.String()))
		Expect(getConfigMap(ns, configMapName).Data).To(HaveKeyWithValue("a.txt", "two\n"))

		By("re-verifying when the Secret holds another key, without deleting the output")
		secret.Data = map[string][]byte{"cosign.pub": other.pubPEM}
		Expect(k8sClient.Update(bg, secret)).To(Succeed())
		Eventually(func() *metav1.Condition { return sourceVerified(getNamedArtifact(ns, "signed")) }).Should(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", v1alpha1.ReasonVerificationFailed),
		))
		Expect(getConfigMap(ns, configMapName).Data).To(HaveKeyWithValue("a.txt", "two\n"))
		Expect(getNamedArtifact(ns, "signed").Status.Digest).To(Equal(v2.Digest.String()))

		By("verifying again once the other key signed it too")
		signPlain(repo, v2, other)
		Eventually(func() *metav1.Condition { return sourceVerified(getNamedArtifact(ns, "signed")) }).WithTimeout(30 * time.Second).Should(HaveField("Status", metav1.ConditionTrue))
	})

	It("publishes what the real cosign CLI signed, in both of its forms, with the key it signed with and no other", func() {
		ns := newNamespace()
		repo := repoFor(ns)
		cosign := registrytest.Cosign(GinkgoT())
		keys := GinkgoT().TempDir()
		cosign.In(keys).MustRun(GinkgoT(), "generate-key-pair")
		cosign.In(keys).MustRun(GinkgoT(), "signing-config", "create", "--out", "sc.json")
		cosign.In(keys).MustRun(GinkgoT(), "trusted-root", "create", "--out", "tr.json")
		pub, err := os.ReadFile(filepath.Join(keys, "cosign.pub"))
		Expect(err).NotTo(HaveOccurred())
		keySecret(ns, "cosign-keys", map[string][]byte{"cosign.pub": pub})
		stranger := newSigningKey()
		keySecret(ns, "stranger", map[string][]byte{"stranger.pub": stranger.pubPEM})

		bundle, _ := pushPlain(repo, "bundle", textLayer("a.txt", "bundle form\n"))
		cosign.In(keys).MustRun(GinkgoT(), "sign", "--key", "cosign.key", "--signing-config", "sc.json", "--trusted-root", "tr.json", "--yes",
			plainRegistry.Host+"/"+repo+"@"+bundle.Digest.String())
		legacy, _ := pushPlain(repo, "legacy", textLayer("a.txt", "legacy form\n"))
		cosign.In(keys).MustRun(GinkgoT(), "sign", "--key", "cosign.key", "--new-bundle-format=false", "--use-signing-config=false", "--tlog-upload=false", "--yes",
			plainRegistry.Host+"/"+repo+"@"+legacy.Digest.String())

		for _, tc := range []struct{ name, tag, secret string }{
			{"bundle", "bundle", "cosign-keys"},
			{"legacy", "legacy", "cosign-keys"},
			{"bundle-stranger", "bundle", "stranger"},
		} {
			spec := baseSpec(repo, tc.tag)
			spec.ConfigMap = &v1alpha1.ConfigMapOutput{Name: tc.name}
			spec.Verify = &v1alpha1.VerifySpec{Provider: v1alpha1.VerifyProviderCosign, SecretRef: corev1.LocalObjectReference{Name: tc.secret}}
			createNamedArtifact(ns, tc.name, spec)
		}
		for name, want := range map[string]string{"bundle": "bundle form\n", "legacy": "legacy form\n"} {
			a := waitNamedReady(ns, name)
			Expect(sourceVerified(a)).To(HaveField("Message", ContainSubstring("signed by key cosign.pub")), name)
			Expect(getConfigMap(ns, name).Data).To(HaveKeyWithValue("a.txt", want))
		}
		Eventually(func() *metav1.Condition { return sourceVerified(getNamedArtifact(ns, "bundle-stranger")) }).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Message", ContainSubstring("stranger.pub"))))
		Expect(getConfigMap(ns, "bundle-stranger")).To(BeNil())
	})

	It("verifies a digest once for the Artifacts that follow it with the same keys", func() {
		ns := newNamespace()
		repo := repoFor(ns)
		key := newSigningKey()
		keySecret(ns, "cosign-keys", map[string][]byte{"cosign.pub": key.pubPEM})
		v1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		signPlain(repo, v1, key)
		spec := func(name string) v1alpha1.ArtifactSpec {
			s := baseSpec(repo, "v1")
			s.Interval = every(time.Hour)
			s.ConfigMap = &v1alpha1.ConfigMapOutput{Name: name}
			s.Verify = &v1alpha1.VerifySpec{Provider: v1alpha1.VerifyProviderCosign, SecretRef: corev1.LocalObjectReference{Name: "cosign-keys"}}
			return s
		}
		createNamedArtifact(ns, "first", spec("first"))
		waitNamedReady(ns, "first")
		before := proxy.Counts(repo)
		for _, name := range []string{"second", "third"} {
			createNamedArtifact(ns, name, spec(name))
		}
		for _, name := range []string{"second", "third"} {
			a := waitNamedReady(ns, name)
			Expect(sourceVerified(a)).To(HaveField("Status", metav1.ConditionTrue))
			Expect(a.Status.Verified.Digest).To(Equal(v1.Digest.String()))
		}
		// One GET of the manifest each (the first sync), nothing of the
		// signature: the first Artifact's verification stands.
		Expect(countsSince(before, proxy.Counts(repo))).To(Equal(map[requestKey]int{{repo, "GET", "manifests"}: 2}))
	})

	It("stalls on trust material that cannot work, naming the Secret but none of its content", func() {
		ns := newNamespace()
		repo := repoFor(ns)
		keySecret(ns, "no-keys", map[string][]byte{"README": []byte("s3cret-looking text")})
		pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		spec := baseSpec(repo, "v1")
		spec.Verify = &v1alpha1.VerifySpec{Provider: v1alpha1.VerifyProviderCosign, SecretRef: corev1.LocalObjectReference{Name: "no-keys"}}
		createNamedArtifact(ns, "bad", spec)
		Eventually(func() *metav1.Condition {
			return meta.FindStatusCondition(getNamedArtifact(ns, "bad").Status.Conditions, v1alpha1.ConditionStalled)
		}).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Message", ContainSubstring(`Secret "no-keys"`)), HaveField("Message", Not(ContainSubstring("s3cret")))))
		Expect(getConfigMap(ns, configMapName)).To(BeNil(), "nothing published")
	})
})
