package controller

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// The Secret output mirrors the ConfigMap output's specs, and after each
// spec scans every log line the manager wrote meanwhile, every Event of
// the namespace and the Artifact whole (status, conditions, messages)
// for the content of the files it published: none may show it, in any
// encoding (leakForms).
var _ = Describe("Secret output", func() {
	const secretName = "out-secret"
	var ns, repo string
	// markers are the secret contents of the spec's files.
	var markers [][]byte
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
		markers = nil
		managerLog.start()
	})
	AfterEach(func() {
		if len(markers) == 0 {
			managerLog.stop()
			return
		}
		By("scanning the manager's log, the namespace's Events and the Artifact for the published content")
		// Give the last syncs' log lines and Events time to be written.
		time.Sleep(time.Second)
		texts := map[string]string{"the manager's log": managerLog.stop()}
		Expect(texts["the manager's log"]).To(ContainSubstring(ns), "the manager logged about this spec's Artifact")
		var events eventsv1.EventList
		Expect(k8sClient.List(bg, &events, client.InNamespace(ns))).To(Succeed())
		for _, e := range events.Items {
			texts["Event "+e.Name] = mustJSON(e)
		}
		a := &v1alpha1.Artifact{}
		if err := k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: artifactName}, a); err == nil {
			texts["the Artifact"] = mustJSON(a)
		}
		for where, text := range texts {
			for _, m := range markers {
				Expect(leaksIn(text, m)).To(BeEmpty(), "%s shows the content of a published file", where)
			}
		}
	})

	// secretFile is a file whose content is a fresh marker, framed like
	// the file it stands for.
	secretFile := func(title, before, after string) layer {
		m := newMarker()
		markers = append(markers, m)
		return layer{title: title, mediaType: binType, data: []byte(before + string(m) + after)}
	}
	secretSpec := func(typ string) v1alpha1.ArtifactSpec {
		spec := baseSpec(repo, "v1")
		spec.ConfigMap = nil
		spec.Secret = &v1alpha1.SecretOutput{Name: secretName, Type: typ}
		return spec
	}
	contentsOf := func(layers ...layer) map[string][]byte {
		out := map[string][]byte{}
		for _, l := range layers {
			out[l.title] = l.data
		}
		return out
	}
	// expectSecretPublished waits for the Artifact to be Ready with desc
	// and checks its status and the Secret.
	expectSecretPublished := func(desc ocispec.Descriptor, m ocispec.Manifest, typ corev1.SecretType, contents map[string][]byte) (*v1alpha1.Artifact, *corev1.Secret) {
		GinkgoHelper()
		a := waitReady(ns, desc.Digest)
		Expect(readyMessage(a)).To(Equal("published " + a.Status.ResolvedReference + " to Secret " + secretName))
		var files []any
		for _, l := range m.Layers {
			files = append(files, v1alpha1.ArtifactFile{
				Name: l.Annotations[ocispec.AnnotationTitle], MediaType: l.MediaType, Digest: l.Digest.String(), Size: l.Size,
			})
		}
		Expect(a.Status.Files).To(ConsistOf(files...), "status.files: names, media types, digests and sizes")
		s := getSecret(ns, secretName)
		Expect(s).NotTo(BeNil(), "Secret %s/%s", ns, secretName)
		Expect(s.Type).To(Equal(typ))
		Expect(s.Data).To(Equal(contents), "the Secret holds the files byte for byte")
		Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.LabelArtifactName, artifactName))
		Expect(s.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationDigest, desc.Digest.String()))
		Expect(s.Annotations).To(HaveKeyWithValue(annotationChecksum, secretChecksum(s)))
		Expect(s.OwnerReferences).To(ConsistOf(metav1.OwnerReference{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "Artifact", Name: artifactName, UID: a.UID,
			Controller: new(true), BlockOwnerDeletion: new(true),
		}))
		return a, s
	}

	It("publishes the files into an Opaque Secret, bytes as they are, and caches none of it", func() {
		files := []layer{
			secretFile("license.txt", "License-Key: ", "\n"),
			secretFile("blob.bin", "\xff\x00\xfe", "\x80"),
		}
		desc, m := pushPlain(repo, "v1", files...)
		createArtifact(ns, secretSpec(""))
		_, s := expectSecretPublished(desc, m, corev1.SecretTypeOpaque, contentsOf(files...))
		expectPublishedOnce(ns, desc.Digest)
		Expect(getArtifact(ns).Spec.Secret.Type).To(Equal(string(corev1.SecretTypeOpaque)), "the API server defaults the type")
		Expect(getConfigMap(ns, configMapName)).To(BeNil())
		// The scan of AfterEach can see the content where it is.
		Expect(leaksIn(mustJSON(s), markers[0])).NotTo(BeEmpty(), "the scan finds the content in the Secret itself")
		Expect(leaksIn(mustJSON(s), markers[1])).NotTo(BeEmpty(), "the scan finds binary content in the Secret itself")

		By("holding the output Secret as metadata only")
		expectOnlyMetadataCached(client.ObjectKeyFromObject(s))
		Expect(reconciler.secretWrites.holds(client.ObjectKeyFromObject(s), s.UID, s.ResourceVersion, desc.Digest.String())).To(BeTrue(),
			"the manager remembers its write: the Secret's uid, resourceVersion and digest")

		By("following the tag to new content")
		files2 := []layer{secretFile("license.txt", "License-Key: ", "\n")}
		desc2, m2 := pushPlain(repo, "v1", files2...)
		expectSecretPublished(desc2, m2, corev1.SecretTypeOpaque, contentsOf(files2...))
		Expect(getSecret(ns, secretName).UID).To(Equal(s.UID), "updated in place")
		expectPublishedOnce(ns, desc.Digest, desc2.Digest)
	})

	It("neither writes nor announces again a Secret that holds the digest when the status it reads is older", func() {
		files := []layer{secretFile("token.txt", "token: ", "\n")}
		desc, m := pushPlain(repo, "v1", files...)
		spec := secretSpec("")
		spec.Interval = every(longInterval)
		createArtifact(ns, spec)
		a, s := expectSecretPublished(desc, m, corev1.SecretTypeOpaque, contentsOf(files...))
		expectPublishedOnce(ns, desc.Digest)

		syncWithOlderStatus(ns, a)
		Expect(getSecret(ns, secretName).ResourceVersion).To(Equal(s.ResourceVersion), "the Secret was written again")
		expectPublishedOnce(ns, desc.Digest)
		Expect(reconciler.secretWrites.holds(client.ObjectKeyFromObject(s), s.UID, s.ResourceVersion, desc.Digest.String())).To(BeTrue(),
			"the Secret found as written is remembered as the manager's own")
	})

	It("publishes a kubernetes.io/tls Secret from tls.crt and tls.key, with other files beside them", func() {
		files := []layer{
			secretFile(corev1.TLSCertKey, "-----BEGIN CERTIFICATE-----\n", "\n-----END CERTIFICATE-----\n"),
			secretFile(corev1.TLSPrivateKeyKey, "-----BEGIN PRIVATE KEY-----\n", "\n-----END PRIVATE KEY-----\n"),
			secretFile("ca.crt", "-----BEGIN CERTIFICATE-----\n", "\n-----END CERTIFICATE-----\n"),
		}
		desc, m := pushPlain(repo, "v1", files...)
		createArtifact(ns, secretSpec(string(corev1.SecretTypeTLS)))
		expectSecretPublished(desc, m, corev1.SecretTypeTLS, contentsOf(files...))
	})

	It("refuses a type whose required files are missing before downloading or writing anything", func() {
		files := []layer{secretFile(corev1.TLSCertKey, "-----BEGIN CERTIFICATE-----\n", "\n-----END CERTIFICATE-----\n")}
		desc, m := pushPlain(repo, "v1", files...)
		createArtifact(ns, secretSpec(string(corev1.SecretTypeTLS)))
		a := waitFailed(ns, v1alpha1.ReasonSelectorMismatch, true)
		Expect(readyMessage(a)).To(And(ContainSubstring("kubernetes.io/tls"), ContainSubstring("tls.key")))
		expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonSelectorMismatch, "tls.key")
		Expect(getSecret(ns, secretName)).To(BeNil(), "nothing is written")
		Expect(proxy.Count(repo, http.MethodGet, "blobs")).To(BeZero(), "the file names are known from the manifest")

		By("choosing a type the files fit")
		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Secret.Type = "example.com/certificate" })
		expectSecretPublished(desc, m, "example.com/certificate", contentsOf(files...))
	})

	It("refuses a docker config that is not JSON without quoting it", func() {
		files := []layer{secretFile(corev1.DockerConfigJsonKey, `{"auths": `, ` not json`)}
		pushPlain(repo, "v1", files...)
		createArtifact(ns, secretSpec(string(corev1.SecretTypeDockerConfigJson)))
		a := waitFailed(ns, v1alpha1.ReasonSelectorMismatch, true)
		Expect(readyMessage(a)).To(ContainSubstring("JSON object"))
		Expect(getSecret(ns, secretName)).To(BeNil(), "nothing is written")
	})

	It("restores its Secret when someone edits, relabels or deletes it", func() {
		files := []layer{secretFile("license.txt", "", ""), secretFile("b.bin", "\xff", "")}
		desc, m := pushPlain(repo, "v1", files...)
		spec := secretSpec("")
		spec.Interval = every(longInterval) // only the Secret watch can restore it in time
		createArtifact(ns, spec)
		a, s := expectSecretPublished(desc, m, corev1.SecretTypeOpaque, contentsOf(files...))
		restored := func(g Gomega) {
			now := getSecret(ns, secretName)
			g.Expect(now).NotTo(BeNil(), "the Secret is back")
			g.Expect(now.Data).To(Equal(s.Data))
			g.Expect(now.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationDigest, desc.Digest.String()))
			g.Expect(now.Labels).To(HaveKeyWithValue(v1alpha1.LabelArtifactName, artifactName))
			g.Expect(now.OwnerReferences).To(Equal(s.OwnerReferences))
		}

		By("editing its data")
		edited := s.DeepCopy()
		edited.Data["license.txt"] = []byte("edited")
		edited.Data["extra"] = []byte("added by hand")
		Expect(k8sClient.Update(bg, edited)).To(Succeed())
		Eventually(restored).WithTimeout(watchTimeout).Should(Succeed())

		By("removing its label, which is put back without downloading anything")
		blobs := proxy.Count(repo, http.MethodGet, "blobs")
		unlabelled := getSecret(ns, secretName)
		delete(unlabelled.Labels, v1alpha1.LabelArtifactName)
		Expect(k8sClient.Update(bg, unlabelled)).To(Succeed())
		Eventually(func() map[string]string { return getSecret(ns, secretName).Labels }).WithTimeout(watchTimeout).
			Should(HaveKeyWithValue(v1alpha1.LabelArtifactName, artifactName))
		Expect(getSecret(ns, secretName).Data).To(Equal(s.Data))
		Expect(proxy.Count(repo, http.MethodGet, "blobs")).To(Equal(blobs), "an intact Secret is not downloaded again")

		By("deleting it")
		Expect(k8sClient.Delete(bg, getSecret(ns, secretName))).To(Succeed())
		Eventually(restored).WithTimeout(watchTimeout).Should(Succeed())
		Expect(getSecret(ns, secretName).OwnerReferences[0].UID).To(Equal(a.UID))
		expectPublishedOnce(ns, desc.Digest) // restoring is no new publication
	})

	// The manager caches no Secret: whatever its labels, an existing one
	// is read from the API server before anything is downloaded.
	DescribeTable("leaves a Secret it does not own alone, byte for byte, and reports OutputConflict",
		func(labels map[string]string, owners []metav1.OwnerReference) {
			existing := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName, Labels: labels, OwnerReferences: owners},
				Data:       map[string][]byte{"owner": []byte("someone else")},
			}
			Expect(k8sClient.Create(bg, existing)).To(Succeed())
			pushPlain(repo, "v1", secretFile("license.txt", "", ""))
			createArtifact(ns, secretSpec(""))
			a := waitFailed(ns, v1alpha1.ReasonOutputConflict, false)
			Expect(readyMessage(a)).To(ContainSubstring(secretName))
			expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonOutputConflict)
			Consistently(func() *corev1.Secret { return getSecret(ns, secretName) }).
				WithTimeout(2*time.Second).Should(Equal(existing), "the unowned Secret must not change")
			Expect(proxy.Count(repo, http.MethodGet, "blobs")).To(BeZero(), "nothing is downloaded for a Secret that cannot be written")
		},
		Entry("unlabelled", nil, nil),
		Entry("labelled like an output", map[string]string{v1alpha1.LabelArtifactName: artifactName}, nil),
		Entry("controlled by another Artifact", nil, []metav1.OwnerReference{{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "Artifact", Name: artifactName,
			UID: "00000000-0000-0000-0000-000000000001", Controller: new(true),
		}}),
	)

	It("refuses files over 1 MiB before writing and keeps the previous Secret", func() {
		files := []layer{secretFile("license.txt", "", "")}
		desc, m := pushPlain(repo, "v1", files...)
		createArtifact(ns, secretSpec(""))
		_, s := expectSecretPublished(desc, m, corev1.SecretTypeOpaque, contentsOf(files...))
		blobs := proxy.Count(repo, http.MethodGet, "blobs")

		By("moving the tag to files over 1 MiB")
		big := secretFile("big.bin", "", string(bytes.Repeat([]byte{'x'}, 1<<20)))
		pushPlain(repo, "v1", big)
		a := waitFailed(ns, v1alpha1.ReasonTooLarge, true)
		Expect(readyMessage(a)).To(ContainSubstring("Secret"))
		Expect(a.Status.Digest).To(Equal(desc.Digest.String()), "the status still describes what is published")
		Consistently(func() *corev1.Secret { return getSecret(ns, secretName) }).
			WithTimeout(2*time.Second).Should(Equal(s), "the Secret must not change")
		Expect(proxy.Count(repo, http.MethodGet, "blobs")).To(Equal(blobs), "the size is known from the manifest")
	})

	It("keeps the last good Secret byte for byte when a sync fails, and recovers", func() {
		DeferCleanup(proxy.SetFault, repo, faultNone)
		files := []layer{secretFile("license.txt", "", ""), secretFile("key.bin", "\xff", "")}
		desc, m := pushPlain(repo, "v1", files...)
		createArtifact(ns, secretSpec(""))
		_, s := expectSecretPublished(desc, m, corev1.SecretTypeOpaque, contentsOf(files...))

		By("moving the tag while a mirror tampers with blobs")
		proxy.SetFault(repo, faultCorruptBlobs)
		files2 := []layer{secretFile("license.txt", "", ""), secretFile("key.bin", "\xff", "")}
		desc2, m2 := pushPlain(repo, "v1", files2...)
		a := waitFailed(ns, v1alpha1.ReasonVerificationFailed, false)
		Expect(a.Status.Digest).To(Equal(desc.Digest.String()))
		expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonVerificationFailed)
		Consistently(func() *corev1.Secret { return getSecret(ns, secretName) }).
			WithTimeout(2*time.Second).Should(Equal(s), "the Secret must not change")

		By("taking the registry down")
		proxy.SetFault(repo, faultUnavailable)
		waitFailed(ns, v1alpha1.ReasonRegistryUnavailable, false)
		Expect(getSecret(ns, secretName)).To(Equal(s), "a failure leaves the output as it was")

		By("serving the blobs intact again")
		proxy.SetFault(repo, faultNone)
		expectSecretPublished(desc2, m2, corev1.SecretTypeOpaque, contentsOf(files2...))
	})

	It("asks for the Secret to be deleted when spec.secret.type changes, and then creates it anew", func() {
		files := []layer{
			secretFile(corev1.TLSCertKey, "", ""),
			secretFile(corev1.TLSPrivateKeyKey, "", ""),
		}
		desc, m := pushPlain(repo, "v1", files...)
		spec := secretSpec("")
		spec.Interval = every(longInterval)
		createArtifact(ns, spec)
		_, s := expectSecretPublished(desc, m, corev1.SecretTypeOpaque, contentsOf(files...))

		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Secret.Type = string(corev1.SecretTypeTLS) })
		a := waitFailed(ns, v1alpha1.ReasonOutputConflict, false)
		Expect(readyMessage(a)).To(And(ContainSubstring("cannot change"), ContainSubstring("delete the Secret")))
		Expect(getSecret(ns, secretName)).To(Equal(s), "the Secret is left as it is")

		By("deleting the Secret")
		Expect(k8sClient.Delete(bg, s)).To(Succeed())
		Eventually(func() *corev1.Secret { return getSecret(ns, secretName) }).WithTimeout(watchTimeout).
			Should(HaveField("Type", corev1.SecretTypeTLS))
		expectSecretPublished(desc, m, corev1.SecretTypeTLS, contentsOf(files...))
	})

	It("reads and writes nothing in steady state, and reads the Secret once after someone else's edit", func() {
		files := []layer{secretFile("license.txt", "", "")}
		desc, m := pushPlain(repo, "v1", files...)
		createArtifact(ns, secretSpec("")) // every second
		a, s := expectSecretPublished(desc, m, corev1.SecretTypeOpaque, contentsOf(files...))
		heads := expectNoRequestsInSteadyState(ns, repo)
		Expect(getArtifact(ns).ResourceVersion).To(Equal(a.ResourceVersion), "the Artifact was written")
		Expect(getSecret(ns, secretName).ResourceVersion).To(Equal(s.ResourceVersion), "the Secret was written")

		By("annotating the Secret, which leaves its content intact")
		before := managerRequests.snapshot()
		annotated := getSecret(ns, secretName)
		annotated.Annotations["example.com/note"] = "hello"
		Expect(k8sClient.Update(bg, annotated)).To(Succeed())
		get := apiRequest{verb: "get", resource: "secrets", namespace: ns, name: secretName}
		Eventually(func() map[apiRequest]int { return managerRequests.since(before, ns) }).
			Should(HaveKeyWithValue(get, 1), "the changed Secret is read once")
		headsBefore := heads()
		Eventually(heads).Should(BeNumerically(">=", headsBefore+3), "three more syncs")
		Expect(managerRequests.since(before, ns)).To(Equal(map[apiRequest]int{get: 1}), "one read, no write")
	})

	DescribeTable("the API server validates spec.secret",
		func(change func(*v1alpha1.ArtifactSpec), message string) {
			spec := v1alpha1.ArtifactSpec{
				Reference: "registry.example.com/team/app:v1",
				Secret:    &v1alpha1.SecretOutput{Name: secretName},
			}
			change(&spec)
			expectValidated(ns, spec, message)
		},
		Entry("accepts a Secret output", func(*v1alpha1.ArtifactSpec) {}, ""),
		Entry("accepts kubernetes.io/tls", func(s *v1alpha1.ArtifactSpec) { s.Secret.Type = "kubernetes.io/tls" }, ""),
		Entry("accepts a type of one's own", func(s *v1alpha1.ArtifactSpec) { s.Secret.Type = "example.com/license" }, ""),
		Entry("rejects configMap and secret together", func(s *v1alpha1.ArtifactSpec) {
			s.ConfigMap = &v1alpha1.ConfigMapOutput{Name: configMapName}
		}, "configMap, secret and volume are alternative outputs: set at most one"),
		Entry("rejects secret and volume together", func(s *v1alpha1.ArtifactSpec) {
			s.Volume = &v1alpha1.VolumeOutput{ClaimName: "data"}
		}, "configMap, secret and volume are alternative outputs: set at most one"),
		Entry("rejects a service account token", func(s *v1alpha1.ArtifactSpec) {
			s.Secret.Type = string(corev1.SecretTypeServiceAccountToken)
		}, "a service account token or bootstrap token cannot"),
		Entry("rejects a bootstrap token", func(s *v1alpha1.ArtifactSpec) {
			s.Secret.Type = string(corev1.SecretTypeBootstrapToken)
		}, "a service account token or bootstrap token cannot"),
		Entry("rejects a type that is no type", func(s *v1alpha1.ArtifactSpec) { s.Secret.Type = "not a type" }, "spec.secret.type"),
		Entry("rejects a name that is no object name", func(s *v1alpha1.ArtifactSpec) { s.Secret.Name = "Out_Secret" }, "spec.secret.name"),
	)
})

// getSecret returns the named Secret, or nil when it does not exist.
func getSecret(ns, name string) *corev1.Secret {
	GinkgoHelper()
	s := &corev1.Secret{}
	err := k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	Expect(err).NotTo(HaveOccurred())
	return s
}

func mustJSON(v any) string {
	GinkgoHelper()
	b, err := json.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// newMarker returns fresh content no text holds by chance.
func newMarker() []byte {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return []byte("s3cret-marker-" + hex.EncodeToString(b))
}

// leakForms returns the forms in which secret can show in text: as it
// is, in hex, as a Go byte slice printed with %v, and in base64 (standard
// and URL alphabets) at each of the three alignments it can have inside
// a longer encoded value, without the characters that depend on its
// neighbours.
func leakForms(secret []byte) []string {
	forms := []string{string(secret), hex.EncodeToString(secret), strings.Trim(fmt.Sprintf("%d", secret), "[]")}
	for pad := range 3 {
		padded := append(make([]byte, pad), secret...)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			s := enc.EncodeToString(padded)
			// The first 4 characters may hold padding bits, the last 4 the
			// next value's.
			forms = append(forms, s[4:len(s)-4])
		}
	}
	return forms
}

// leakWindow is the length of the parts of a secret that the scan looks
// for as they are, so that a message quoting only some of it is caught.
const leakWindow = 16

// leaksIn returns the forms of secret, and the parts of it as they are,
// that text holds.
func leaksIn(text string, secret []byte) []string {
	var found []string
	for _, f := range leakForms(secret) {
		if strings.Contains(text, f) {
			found = append(found, f)
		}
	}
	for i := 0; i+leakWindow <= len(secret); i++ {
		if part := string(secret[i : i+leakWindow]); strings.Contains(text, part) {
			found = append(found, part)
		}
	}
	return found
}

// TestLeakScanFinds shows that the scan the Secret output's specs run
// finds content where it is, in each form a log line, an Event or a
// status could carry it.
func TestLeakScanFinds(t *testing.T) {
	secret := newMarker()
	file := append(append([]byte("-----BEGIN PRIVATE KEY-----\n"), secret...), '\n')
	shown := map[string]string{
		"as text":          "error: " + string(file),
		"in part":          fmt.Sprintf("error at %q", secret[5:5+leakWindow]),
		"quoted":           fmt.Sprintf("%q", file),
		"as bytes":         fmt.Sprintf("%d", file),
		"in hex":           hex.EncodeToString(file),
		"a Secret as JSON": "",
	}
	for pad := range 3 {
		b := append(make([]byte, pad), file...)
		shown[fmt.Sprintf("in base64 after %d bytes", pad)] = base64.StdEncoding.EncodeToString(b)
		shown[fmt.Sprintf("in URL base64 after %d bytes", pad)] = base64.RawURLEncoding.EncodeToString(b)
	}
	j, err := json.Marshal(corev1.Secret{Data: map[string][]byte{"tls.key": file}})
	if err != nil {
		t.Fatal(err)
	}
	shown["a Secret as JSON"] = string(j)
	for how, text := range shown {
		if len(leaksIn(text, secret)) == 0 {
			t.Errorf("the scan misses the content %s: %s", how, text)
		}
	}
	if found := leaksIn("published registry.example.com/app:v1@"+digest.FromBytes(file).String(), secret); len(found) > 0 {
		t.Errorf("the scan finds %q where the content is not", found)
	}
}

// managerLog keeps what the suite's manager logs while a spec captures
// it, for specs that scan it.
var managerLog = &logCapture{}

// logCapture is an io.Writer that keeps what is written to it between
// start and stop.
type logCapture struct {
	mu        sync.Mutex
	capturing bool
	buf       bytes.Buffer
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.capturing {
		c.buf.Write(p)
	}
	return len(p), nil
}

// start drops what was kept and keeps what is written from now on.
func (c *logCapture) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Reset()
	c.capturing = true
}

// stop returns what was written since start, and keeps nothing more.
func (c *logCapture) stop() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.capturing = false
	out := c.buf.String()
	c.buf.Reset()
	return out
}

func TestCheckSecretType(t *testing.T) {
	tests := []struct {
		typ     corev1.SecretType
		names   []string
		reason  string // "" when the files fit
		missing []string
	}{
		{corev1.SecretTypeOpaque, []string{"a.txt"}, "", nil},
		{"example.com/license", []string{"a.txt"}, "", nil},
		{corev1.SecretTypeTLS, []string{"tls.crt", "tls.key", "ca.crt"}, "", nil},
		{corev1.SecretTypeTLS, []string{"tls.crt"}, v1alpha1.ReasonSelectorMismatch, []string{"tls.key"}},
		{corev1.SecretTypeTLS, []string{"cert.pem"}, v1alpha1.ReasonSelectorMismatch, []string{"tls.crt", "tls.key"}},
		{corev1.SecretTypeDockerConfigJson, []string{".dockerconfigjson"}, "", nil},
		{corev1.SecretTypeDockerConfigJson, []string{"config.json"}, v1alpha1.ReasonSelectorMismatch, []string{".dockerconfigjson"}},
		{corev1.SecretTypeDockercfg, []string{"x"}, v1alpha1.ReasonSelectorMismatch, []string{".dockercfg"}},
		{corev1.SecretTypeBasicAuth, []string{"password"}, "", nil},
		{corev1.SecretTypeBasicAuth, []string{"token"}, v1alpha1.ReasonSelectorMismatch, []string{"username or password"}},
		{corev1.SecretTypeSSHAuth, []string{"ssh-privatekey"}, "", nil},
		{corev1.SecretTypeSSHAuth, []string{"id_ed25519"}, v1alpha1.ReasonSelectorMismatch, []string{"ssh-privatekey"}},
		{corev1.SecretTypeServiceAccountToken, []string{"token"}, v1alpha1.ReasonInvalidSpec, nil},
		{corev1.SecretTypeBootstrapToken, []string{"token-id"}, v1alpha1.ReasonInvalidSpec, nil},
		{"kubernetes.io/anything-new", []string{"a"}, v1alpha1.ReasonInvalidSpec, nil},
	}
	for _, tt := range tests {
		err := checkSecretType(tt.typ, tt.names)
		if tt.reason == "" {
			if err != nil {
				t.Errorf("checkSecretType(%s, %v) = %v", tt.typ, tt.names, err)
			}
			continue
		}
		se := classify(err)
		if err == nil || se.reason != tt.reason || !se.stall {
			t.Errorf("checkSecretType(%s, %v) = %v, want stalled %s", tt.typ, tt.names, err, tt.reason)
			continue
		}
		for _, k := range tt.missing {
			if !strings.Contains(err.Error(), k) {
				t.Errorf("checkSecretType(%s, %v) = %q, want it to name the missing %s", tt.typ, tt.names, err, k)
			}
		}
	}
}

func TestCheckSecretContentQuotesNothing(t *testing.T) {
	secret := newMarker()
	tests := []struct {
		typ  corev1.SecretType
		f    file
		fail bool
	}{
		{corev1.SecretTypeDockerConfigJson, file{".dockerconfigjson", []byte(`{"auths":{}}`)}, false},
		{corev1.SecretTypeDockerConfigJson, file{".dockerconfigjson", append([]byte(`{"auths": `), secret...)}, true},
		{corev1.SecretTypeDockerConfigJson, file{".dockerconfigjson", []byte(`["not", "an object"]`)}, true},
		{corev1.SecretTypeDockercfg, file{".dockercfg", secret}, true},
		{corev1.SecretTypeSSHAuth, file{"ssh-privatekey", nil}, true},
		{corev1.SecretTypeSSHAuth, file{"ssh-privatekey", secret}, false},
		{corev1.SecretTypeOpaque, file{".dockerconfigjson", secret}, false},
	}
	for _, tt := range tests {
		err := checkSecretContent(tt.typ, []file{tt.f})
		if (err != nil) != tt.fail {
			t.Errorf("checkSecretContent(%s, %s) = %v, want failure %v", tt.typ, tt.f.name, err, tt.fail)
		}
		if err != nil && len(leaksIn(err.Error(), secret)) > 0 {
			t.Errorf("checkSecretContent(%s, %s) quotes the content: %v", tt.typ, tt.f.name, err)
		}
	}
}

func TestSecretAPIErrorLeavesTheMessageOut(t *testing.T) {
	secret := newMarker()
	invalid := apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Secret").GroupKind(), "out", field.ErrorList{
		field.Invalid(field.NewPath("data").Key(".dockerconfigjson"), string(secret), "invalid character 's' quoting "+string(secret)),
	})
	denied := apierrors.NewForbidden(corev1.Resource("secrets"), "out", fmt.Errorf("admission webhook denied the request: %s", secret))
	for _, err := range []error{invalid, denied} {
		got := secretAPIError("updating", "out", err)
		if len(leaksIn(got.Error(), secret)) > 0 {
			t.Errorf("secretAPIError quotes the API server's message: %v", got)
		}
		if !strings.Contains(got.Error(), `Secret "out"`) {
			t.Errorf("secretAPIError = %v, want it to name the Secret", got)
		}
	}
	if got := secretAPIError("updating", "out", invalid); !strings.Contains(got.Error(), "Invalid (422) about data[.dockerconfigjson]") {
		t.Errorf("secretAPIError = %v, want the reason, code and field", got)
	}
	if classify(secretAPIError("creating", "out", denied)).reason != v1alpha1.ReasonOutputFailed {
		t.Error("a refused write is not OutputFailed")
	}
}

func TestSecretFor(t *testing.T) {
	obj := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns"},
		Spec: v1alpha1.ArtifactSpec{Secret: &v1alpha1.SecretOutput{Name: "out", Type: "kubernetes.io/tls"}}}
	s := secretFor(obj, "sha256:abc", []file{
		{name: "tls.crt", content: []byte("cert")},
		{name: "tls.key", content: []byte{0xff, 0x00}},
	})
	if s.Name != "out" || s.Namespace != "ns" || s.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret %s/%s of type %s, want ns/out of type kubernetes.io/tls", s.Namespace, s.Name, s.Type)
	}
	if string(s.Data["tls.key"]) != "\xff\x00" || string(s.Data["tls.crt"]) != "cert" || len(s.StringData) > 0 {
		t.Errorf("data = %q, stringData = %q", s.Data, s.StringData)
	}
	if s.Labels[v1alpha1.LabelArtifactName] != "a" || s.Annotations[v1alpha1.AnnotationDigest] != "sha256:abc" {
		t.Errorf("labels %v annotations %v", s.Labels, s.Annotations)
	}
	if s.Annotations[annotationChecksum] != secretChecksum(s) {
		t.Error("checksum annotation does not match the content")
	}
	obj.Spec.Secret.Type = ""
	if got := secretFor(obj, "sha256:abc", nil).Type; got != corev1.SecretTypeOpaque {
		t.Errorf("type %q without spec.secret.type, want Opaque", got)
	}
}

func TestSecretWrites(t *testing.T) {
	var w secretWrites
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "out", UID: "u1", ResourceVersion: "10"}}
	key := client.ObjectKeyFromObject(s)
	meta := func(uid types.UID, rv string) client.Object {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "out", UID: uid, ResourceVersion: rv}}
	}
	if w.holds(key, "u1", "10", "sha256:a") || w.wrote(meta("u1", "10")) {
		t.Fatal("an empty record holds a write")
	}
	w.remember(s, "sha256:a")
	if !w.holds(key, "u1", "10", "sha256:a") || !w.wrote(meta("u1", "10")) {
		t.Error("the write is not remembered")
	}
	for _, c := range []struct {
		uid       types.UID
		rv, dgst  string
		different string
	}{
		{"u1", "11", "sha256:a", "resourceVersion"},
		{"u2", "10", "sha256:a", "uid (a Secret deleted and made again)"},
		{"u1", "10", "sha256:b", "digest"},
	} {
		if w.holds(key, c.uid, c.rv, c.dgst) {
			t.Errorf("holds with another %s", c.different)
		}
	}
	if w.wrote(meta("u1", "11")) {
		t.Error("an edit after the write counts as the manager's own")
	}
	end := w.begin(key)
	if !w.wrote(meta("u1", "12")) {
		t.Error("an event while a write is under way does not count as the manager's own")
	}
	end()
	if w.wrote(meta("u1", "12")) {
		t.Error("a write still counts as under way once it ended")
	}
	w.sweep(func(types.NamespacedName) bool { return true })
	if !w.holds(key, "u1", "10", "sha256:a") {
		t.Error("the sweep dropped an entry it was told to keep")
	}
	w.sweep(func(types.NamespacedName) bool { return false })
	if w.holds(key, "u1", "10", "sha256:a") {
		t.Error("the sweep kept an entry no Artifact names")
	}
}
