package controller

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/auth"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// The fault suite: a registry that misbehaves while Artifacts are synced
// must never change what is published, must say what is wrong, and must
// be recovered from without restarting the manager.
var _ = Describe("Registry faults", func() {
	var ns, repo string
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
	})

	// version returns the files of version n and a func that pushes them
	// as repo:v1: a text file and a binary one large enough for a blob
	// fault to cut it in the middle.
	version := func(n byte) (map[string][]byte, func() (ocispec.Descriptor, ocispec.Manifest)) {
		contents := map[string][]byte{
			"a.txt": []byte("version " + string('0'+n) + "\n"),
			"b.bin": bytes.Repeat([]byte{0xff, n}, 4<<10),
		}
		return contents, func() (ocispec.Descriptor, ocispec.Manifest) {
			return pushPlain(repo, "v1", textLayer("a.txt", string(contents["a.txt"])), layer{"b.bin", binType, contents["b.bin"]})
		}
	}

	DescribeTable("keeps the published ConfigMap byte for byte, reports the fault and recovers once it clears",
		func(f fault, reason, message string, change func(*v1alpha1.ArtifactSpec)) {
			DeferCleanup(proxy.SetFault, repo, faultNone)
			c1, push1 := version(1)
			d1, m1 := push1()
			spec := baseSpec(repo, "v1")
			if change != nil {
				change(&spec)
			}
			createArtifact(ns, spec)
			_, cm := expectPublished(ns, proxy.Host, repo, "v1", d1, m1, m1.Layers, c1)

			By("moving the tag while the registry fails: " + f.String())
			proxy.SetFault(repo, f)
			c2, push2 := version(2)
			d2, m2 := push2()
			a := waitFailed(ns, reason, false)
			Expect(readyMessage(a)).To(ContainSubstring(message))
			Expect(a.Status.Digest).To(Equal(d1.Digest.String()), "the status still describes what is published")
			Expect(proxy.Faulted(repo)).To(BeNumerically(">", 0), "the fault was applied")
			expectEvent(ns, corev1.EventTypeWarning, reason)
			Consistently(func() *corev1.ConfigMap { return getConfigMap(ns, configMapName) }).
				WithTimeout(500*time.Millisecond).Should(Equal(cm), "the ConfigMap (resourceVersion and content) must not change")

			By("clearing the fault")
			proxy.SetFault(repo, faultNone)
			expectPublished(ns, proxy.Host, repo, "v1", d2, m2, m2.Layers, c2)
		},
		Entry("500 Internal Server Error", faultServerError, v1alpha1.ReasonRegistryUnavailable, "500 Internal Server Error", nil),
		Entry("429 Too Many Requests with Retry-After", faultTooManyRequests, v1alpha1.ReasonRegistryUnavailable, "429 Too Many Requests", nil),
		// A download cut short is refused by the size check, and reported
		// as the registry's failure: the connection broke, not the content.
		Entry("a connection reset in the middle of a blob", faultResetBlob, v1alpha1.ReasonRegistryUnavailable, "truncated download", nil),
		Entry("a blob body cut short of its Content-Length", faultTruncateBlob, v1alpha1.ReasonRegistryUnavailable, "truncated download", nil),
		Entry("a blob body that stalls past spec.timeout", faultStallBlob, v1alpha1.ReasonRegistryUnavailable, "spec.timeout (2s)",
			func(s *v1alpha1.ArtifactSpec) { s.Timeout = &metav1.Duration{Duration: 2 * time.Second} }),
		Entry("flipped bytes in a blob", faultCorruptBlobs, v1alpha1.ReasonVerificationFailed, "digest mismatch", nil),
	)

	DescribeTable("rides out a burst of server errors",
		func(f fault, n int, reported bool) {
			DeferCleanup(proxy.SetFault, repo, faultNone)
			c1, push1 := version(1)
			d1, m1 := push1()
			createArtifact(ns, baseSpec(repo, "v1"))
			_, cm := expectPublished(ns, proxy.Host, repo, "v1", d1, m1, m1.Layers, c1)

			By("moving the tag behind a burst of " + f.String())
			proxy.SetBurst(repo, f, n)
			c2, push2 := version(2)
			d2, m2 := push2()
			if reported {
				expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonRegistryUnavailable)
				Expect(getConfigMap(ns, configMapName).Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationDigest, d1.Digest.String()),
					"nothing is published while the burst lasts")
			}
			expectPublished(ns, proxy.Host, repo, "v1", d2, m2, m2.Layers, c2)
			Expect(proxy.Faulted(repo)).To(Equal(n), "the whole burst was served")
			Expect(getConfigMap(ns, configMapName).ResourceVersion).NotTo(Equal(cm.ResourceVersion))
			if !reported {
				Expect(artifactEvents(ns)).NotTo(ContainElement(HaveField("Type", corev1.EventTypeWarning)),
					"retries within one sync absorb a short burst")
			}
		},
		Entry("two 503s, within one sync's retries", faultUnavailable, controllerRetries, false),
		Entry("five 500s, longer than one sync's retries", faultServerError, 2*controllerRetries+1, true),
	)

	It("reports a registry that is down as RegistryUnavailable and recovers once it restarts", func() {
		// A registry of its own: stopping the suite's would disturb the
		// other specs.
		registry := registrytest.Start(GinkgoT(), registrytest.Options{})
		pusher := plainPusher()
		push := func(text string) (ocispec.Descriptor, ocispec.Manifest) {
			return pushArtifact(pusher, registry.Host, repo, "v1", testArtifactType, textLayer("a.txt", text))
		}
		spec := baseSpec(repo, "v1")
		spec.Reference = registry.Ref(repo, "v1")
		d1, m1 := push("one\n")
		createArtifact(ns, spec)
		_, cm := expectPublished(ns, registry.Host, repo, "v1", d1, m1, m1.Layers, map[string][]byte{"a.txt": []byte("one\n")})

		By("stopping the registry process")
		registry.Stop(GinkgoT())
		a := waitFailed(ns, v1alpha1.ReasonRegistryUnavailable, false)
		Expect(readyMessage(a)).To(ContainSubstring("connection refused"))
		Expect(a.Status.Digest).To(Equal(d1.Digest.String()), "the status still describes what is published")
		Consistently(func() *corev1.ConfigMap { return getConfigMap(ns, configMapName) }).
			WithTimeout(500*time.Millisecond).Should(Equal(cm), "the ConfigMap (resourceVersion and content) must not change")

		By("restarting it on the same address and storage, and moving the tag")
		registry.Restart(GinkgoT())
		d2, m2 := push("two\n")
		expectPublished(ns, registry.Host, repo, "v1", d2, m2, m2.Layers, map[string][]byte{"a.txt": []byte("two\n")})
	})

	DescribeTable("refuses a manifest over the client's limit without reading past the limit, and keeps the ConfigMap",
		func(size int, streamed bool) {
			DeferCleanup(proxy.SetFault, repo, faultNone)
			c1, push1 := version(1)
			d1, m1 := push1()
			createArtifact(ns, baseSpec(repo, "v1"))
			_, cm := expectPublished(ns, proxy.Host, repo, "v1", d1, m1, m1.Layers, c1)

			By("serving a manifest of " + strconv.Itoa(size) + " bytes for the tag")
			proxy.SetManifest(repo, servedManifest{contentType: ocispec.MediaTypeImageManifest, body: paddedManifest(size), streamed: streamed})
			a := waitFailed(ns, v1alpha1.ReasonTooLarge, true)
			Expect(readyMessage(a)).To(ContainSubstring("over the %d-byte limit", oci.DefaultMaxManifestBytes), "the message says what the limit is")
			Expect(a.Status.Digest).To(Equal(d1.Digest.String()), "the status still describes what is published")
			expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonTooLarge)
			Expect(proxy.Faulted(repo)).To(BeNumerically(">", 0), "the manifest was served")
			Consistently(func() *corev1.ConfigMap { return getConfigMap(ns, configMapName) }).
				WithTimeout(500*time.Millisecond).Should(Equal(cm), "the ConfigMap (resourceVersion and content) must not change")

			// The client may read one byte past the limit to notice it,
			// and drains a little before closing; what the proxy got out
			// beyond that sat in the connection's kernel buffers (some
			// 5 MiB on loopback), far short of the whole body.
			const slack = 24 << 20
			if streamed {
				Eventually(proxy.ManifestSent).WithArguments(repo).Should(HaveField("Bodies", BeNumerically(">", 0)), "the body was asked for")
			}
			Expect(proxy.ManifestSent(repo).Bytes).To(BeNumerically("<", oci.DefaultMaxManifestBytes+slack),
				"the client must stop reading at the limit, not read the whole %d bytes", size)
		},
		Entry("5 MiB with its Content-Length", 5<<20, false),
		// Only reading tells the size: the client must stop at the limit.
		Entry("64 MiB streamed without a Content-Length, HEAD refused", 64<<20, true),
	)

	Context("behind a token server", func() {
		var tokens *registryProxy
		var pusher *oci.Client
		var registry *registrytest.Registry
		BeforeEach(func() {
			registry = registrytest.Start(GinkgoT(), registrytest.Options{
				Auth:  registrytest.AuthToken,
				Users: []registrytest.User{{Name: privateUser, Password: privatePassword}},
			})
			tokens = startRegistryProxy(registry.URL)
			tokens.ProxyTokens(registry.Tokens.Realm)
			pusher = newPushClient(oci.Options{PlainHTTP: true,
				Credentials: auth.StaticCredential(registry.Host, auth.Credential{Username: privateUser, Password: privatePassword})})
			Expect(k8sClient.Create(bg, dockerConfigJSONSecret(ns, "creds", tokens.Host, privateUser, privatePassword))).To(Succeed())
		})
		push := func(text string) (ocispec.Descriptor, ocispec.Manifest) {
			return pushArtifact(pusher, registry.Host, repo, "v1", testArtifactType, textLayer("a.txt", text))
		}
		create := func() {
			createArtifact(ns, v1alpha1.ArtifactSpec{
				Reference:   tokens.Ref(repo, "v1"),
				PlainHTTP:   true,
				PullSecrets: []corev1.LocalObjectReference{{Name: "creds"}},
				Interval:    every(time.Second),
				ConfigMap:   &v1alpha1.ConfigMapOutput{Name: configMapName},
			})
		}

		It("fetches a new token when the registry refuses the cached one as expired", func() {
			d1, m1 := push("one\n")
			create()
			expectPublished(ns, tokens.Host, repo, "v1", d1, m1, m1.Layers, map[string][]byte{"a.txt": []byte("one\n")})
			issued := registry.Tokens.Count()

			By("expiring the token the controller holds")
			tokens.SetBurst(repo, faultRejectToken, 1)
			d2, m2 := push("two\n")
			expectPublished(ns, tokens.Host, repo, "v1", d2, m2, m2.Layers, map[string][]byte{"a.txt": []byte("two\n")})
			Expect(tokens.Faulted(repo)).To(Equal(1), "the cached token was refused")
			Expect(registry.Tokens.Count()).To(BeNumerically(">", issued), "a new token was fetched")
			Expect(artifactEvents(ns)).NotTo(ContainElement(HaveField("Type", corev1.EventTypeWarning)),
				"an expired token is renewed within the sync, not reported")
		})

		It("reports a token server that is down, keeps the ConfigMap and recovers", func() {
			DeferCleanup(tokens.SetFault, repo, faultNone)
			DeferCleanup(tokens.SetFault, tokenRepo, faultNone)
			d1, m1 := push("one\n")
			create()
			_, cm := expectPublished(ns, tokens.Host, repo, "v1", d1, m1, m1.Layers, map[string][]byte{"a.txt": []byte("one\n")})

			By("taking the token server down while the cached token expires")
			tokens.SetFault(tokenRepo, faultUnavailable)
			tokens.SetFault(repo, faultRejectToken)
			d2, m2 := push("two\n")
			a := waitFailed(ns, v1alpha1.ReasonRegistryUnavailable, false)
			Expect(readyMessage(a)).To(ContainSubstring("token"))
			Expect(tokens.Faulted(tokenRepo)).To(BeNumerically(">", 0), "the token server was asked")
			Consistently(func() *corev1.ConfigMap { return getConfigMap(ns, configMapName) }).
				WithTimeout(time.Second).Should(Equal(cm), "the ConfigMap must not change")

			By("bringing it back")
			tokens.SetFault(tokenRepo, faultNone)
			tokens.SetFault(repo, faultNone)
			expectPublished(ns, tokens.Host, repo, "v1", d2, m2, m2.Layers, map[string][]byte{"a.txt": []byte("two\n")})
		})
	})

	It("never sends the registry's credentials to the host a blob download is redirected to", func() {
		DeferCleanup(proxy.SetFault, repo, faultNone)
		// storage stands for object storage: another origin that serves
		// blobs without registry credentials (as a presigned URL does). It
		// fetches them from the registry with its own.
		var mu sync.Mutex
		var seen, withAuth int
		target, err := url.Parse(privateRegistry.URL)
		Expect(err).NotTo(HaveOccurred())
		fetch := httputil.NewSingleHostReverseProxy(target)
		fetch.Transport = privateRegistry.Client().Transport
		storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen++
			if r.Header.Get("Authorization") != "" {
				withAuth++
			}
			mu.Unlock()
			r.Header.Del("Authorization")
			r.Host = target.Host
			r.SetBasicAuth(privateUser, privatePassword)
			fetch.ServeHTTP(w, r)
		}))
		DeferCleanup(storage.Close)
		private := startRegistryProxy(privateRegistry.URL, privateRegistry.CAFile)
		private.SetRedirectTarget(storage.URL)

		Expect(k8sClient.Create(bg, dockerConfigJSONSecret(ns, "creds", private.Host, privateUser, privatePassword))).To(Succeed())
		push := func(text string) (ocispec.Descriptor, ocispec.Manifest) {
			return pushArtifact(privatePusher(), privateRegistry.Host, repo, "v1", testArtifactType, textLayer("a.txt", text))
		}
		d1, m1 := push("one\n")
		createArtifact(ns, v1alpha1.ArtifactSpec{
			Reference:   private.Ref(repo, "v1"),
			PlainHTTP:   true,
			PullSecrets: []corev1.LocalObjectReference{{Name: "creds"}},
			Interval:    every(time.Second),
			ConfigMap:   &v1alpha1.ConfigMapOutput{Name: configMapName},
		})
		expectPublished(ns, private.Host, repo, "v1", d1, m1, m1.Layers, map[string][]byte{"a.txt": []byte("one\n")})

		By("redirecting blob downloads to another origin")
		private.SetFault(repo, faultRedirectBlob)
		d2, m2 := push("two\n")
		expectPublished(ns, private.Host, repo, "v1", d2, m2, m2.Layers, map[string][]byte{"a.txt": []byte("two\n")})
		Expect(private.Faulted(repo)).To(BeNumerically(">", 0), "the download was redirected")
		mu.Lock()
		defer mu.Unlock()
		Expect(seen).To(BeNumerically(">", 0), "the redirect was followed")
		Expect(withAuth).To(BeZero(), "an Authorization header reached the redirect target")
	})
})

// paddedManifest is a valid image manifest of exactly size bytes, made big
// by an annotation. The padding is spliced in rather than marshalled, so
// the body is allocated once.
func paddedManifest(size int) []byte {
	GinkgoHelper()
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: testArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{},
		Annotations:  map[string]string{"org.example.padding": ""},
	}
	m.Config.Data = nil
	data, err := json.Marshal(m)
	Expect(err).NotTo(HaveOccurred())
	Expect(size).To(BeNumerically(">=", len(data)))
	at := bytes.Index(data, []byte(`"org.example.padding":""`)) + len(`"org.example.padding":"`)
	out := make([]byte, 0, size)
	out = append(out, data[:at]...)
	out = append(out, bytes.Repeat([]byte("x"), size-len(data))...)
	out = append(out, data[at:]...)
	Expect(json.Valid(out)).To(BeTrue())
	return out
}
