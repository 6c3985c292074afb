package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"time"

	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/signer"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/verify"
)

// notationSigning is a test CA and a code signing certificate it issued,
// as Notation requires them.
type notationSigning struct {
	caPEM []byte
	key   *ecdsa.PrivateKey
	chain []*x509.Certificate
}

func newNotationSigning() notationSigning {
	GinkgoHelper()
	issue := func(tmpl, parent *x509.Certificate, pub any, parentKey *ecdsa.PrivateKey) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
		Expect(err).NotTo(HaveOccurred())
		cert, err := x509.ParseCertificate(der)
		Expect(err).NotTo(HaveOccurred())
		return cert
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Acme CA", Organization: []string{"Acme"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	ca := issue(caTmpl, caTmpl, caKey.Public(), caKey)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	leaf := issue(&x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "release signer", Organization: []string{"Acme"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}, ca, key.Public(), caKey)
	return notationSigning{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), key: key, chain: []*x509.Certificate{leaf, ca}}
}

// signNotationPlain signs subject in repo of the plain registry as
// notation sign does (a referrer manifest of artifact type
// application/vnd.cncf.notary.signature whose one layer is a JWS
// envelope) and lists it in the referrers tag schema's index, since the
// registry has no referrers API.
func signNotationPlain(repo string, subject ocispec.Descriptor, s notationSigning) {
	GinkgoHelper()
	g, err := signer.NewGenericSigner(s.key, s.chain)
	Expect(err).NotTo(HaveOccurred())
	env, _, err := g.Sign(bg, subject, notation.SignerSignOptions{SignatureMediaType: jws.MediaTypeEnvelope})
	Expect(err).NotTo(HaveOccurred())
	attachPlain(repo, subject, verify.NotationArtifactType, jws.MediaTypeEnvelope, env)
}

var _ = Describe("Notation signature verification", func() {
	It("publishes a signed v1, refuses an unsigned v2 keeping v1, and stalls on a trust policy that cannot work", func() {
		ns := newNamespace()
		repo := repoFor(ns)
		s := newNotationSigning()
		// The Artifact reads through the proxy: its registry/repository
		// is what the trust policy's scope names.
		policy := `{"version":"1.0","trustPolicies":[{"name":"acme","registryScopes":["` + proxy.Host + "/" + repo + `"],` +
			`"signatureVerification":{"level":"strict"},"trustStores":["ca:acme"],"trustedIdentities":["*"]}]}`
		secret := keySecret(ns, "notation-trust", map[string][]byte{"trustpolicy.json": []byte(policy), "acme.crt": s.caPEM})

		By("syncing a signed v1")
		v1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		signNotationPlain(repo, v1, s)
		spec := baseSpec(repo, "v1")
		spec.Verify = &v1alpha1.VerifySpec{Provider: v1alpha1.VerifyProviderNotation, SecretRef: corev1.LocalObjectReference{Name: secret.Name}}
		createNamedArtifact(ns, "signed", spec)
		a := waitNamedReady(ns, "signed")
		Expect(a.Status.Digest).To(Equal(v1.Digest.String()))
		Expect(a.Status.Verified).NotTo(BeNil())
		Expect(a.Status.Verified.Provider).To(Equal(v1alpha1.VerifyProviderNotation))
		Expect(a.Status.Verified.Digest).To(Equal(v1.Digest.String()))
		Expect(a.Status.Verified.Identity).To(ContainSubstring("CN=release signer,O=Acme issued by CN=Acme CA,O=Acme"))
		Expect(sourceVerified(a)).To(HaveField("Status", metav1.ConditionTrue))
		Expect(getConfigMap(ns, configMapName).Data).To(HaveKeyWithValue("a.txt", "one\n"))

		By("refusing v2 pushed unsigned, keeping v1")
		v2, _ := pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
		Eventually(func() string {
			c := meta.FindStatusCondition(getNamedArtifact(ns, "signed").Status.Conditions, v1alpha1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionFalse {
				return ""
			}
			return c.Reason + ": " + c.Message
		}).Should(And(HavePrefix(v1alpha1.ReasonVerificationFailed), ContainSubstring("no Notation signature of "+v2.Digest.String()), ContainSubstring("referrers tag schema")))
		a = getNamedArtifact(ns, "signed")
		Expect(sourceVerified(a)).To(HaveField("Status", metav1.ConditionFalse))
		Expect(meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionStalled)).To(BeFalse(), "a missing signature is retried, not Stalled")
		Expect(a.Status.Digest).To(Equal(v1.Digest.String()))
		Expect(getConfigMap(ns, configMapName).Data).To(HaveKeyWithValue("a.txt", "one\n"))

		By("stalling when the trust store the policy names is gone, naming the Secret")
		secret.Data = map[string][]byte{"trustpolicy.json": []byte(policy), "other.crt": s.caPEM}
		Expect(k8sClient.Update(bg, secret)).To(Succeed())
		Eventually(func() *metav1.Condition {
			return meta.FindStatusCondition(getNamedArtifact(ns, "signed").Status.Conditions, v1alpha1.ConditionStalled)
		}).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Message", ContainSubstring(`Secret "notation-trust"`)), HaveField("Message", ContainSubstring("no acme.crt or acme.pem"))))
		Expect(getConfigMap(ns, configMapName).Data).To(HaveKeyWithValue("a.txt", "one\n"))
	})
})
