package controller

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
)

// maxHostileMessage bounds what a condition message may grow to, whatever
// the input: status stays readable and within the API's limits.
const maxHostileMessage = 4 << 10

// The hostile-input suite: specs, Secrets and registry content made to
// break the controller each get a clear condition, and nothing is
// published or read that should not be.
var _ = Describe("Hostile input", func() {
	var ns, repo string
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
	})

	// expectRefused waits for Ready=False with reason, checks the message
	// is clear and bounded and that no ConfigMap was written.
	expectRefused := func(reason string, stall bool, message string) *v1alpha1.Artifact {
		GinkgoHelper()
		// The message is waited for too: a Secret just created may not
		// have reached the manager's cache, which reads as missing.
		Eventually(func() string { return readyMessage(getArtifact(ns)) }).Should(ContainSubstring(message))
		a := waitFailed(ns, reason, stall)
		msg := readyMessage(a)
		Expect(msg).To(ContainSubstring(message))
		Expect(len(msg)).To(BeNumerically("<=", maxHostileMessage), "the message is bounded: %.300s...", msg)
		expectEvent(ns, corev1.EventTypeWarning, reason)
		Expect(getConfigMap(ns, configMapName)).To(BeNil(), "nothing is published")
		return a
	}

	DescribeTable("refuses references of every shape",
		func(ref func() string, apiMessage, message string) {
			spec := baseSpec(repo, "v1")
			spec.Reference = ref()
			a := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: artifactName}, Spec: spec}
			err := k8sClient.Create(bg, a)
			if apiMessage != "" {
				Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want the API server to refuse %q, got %v", spec.Reference, err)
				Expect(err.Error()).To(ContainSubstring(apiMessage))
				return
			}
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { Expect(k8sClient.Delete(bg, a)).To(Succeed()) })
			before := proxy.Counts(repo)
			msg := readyMessage(expectRefused(v1alpha1.ReasonInvalidReference, true, "spec.reference"))
			Expect(msg).To(ContainSubstring(message))
			Expect(msg).NotTo(ContainSubstring("hunter2"), "the message must not echo credentials")
			Expect(countsSince(before, proxy.Counts(repo))).To(BeEmpty(), "no registry request for a reference that does not parse")
		},
		Entry("empty", func() string { return "" }, "spec.reference", ""),
		Entry("a scheme", func() string { return "https://" + proxy.Ref(repo, "v1") }, "must not start with a scheme", ""),
		Entry("a newline", func() string { return proxy.Ref(repo, "v1") + "\n" }, "must not contain whitespace", ""),
		Entry("over 1024 characters", func() string { return proxy.Ref(repo, strings.Repeat("t", 1100)) }, "1024", ""),
		Entry("an uppercase repository", func() string { return proxy.Host + "/" + strings.ToUpper(repo) + ":v1" }, "", "lowercase"),
		Entry("an empty tag", func() string { return proxy.Ref(repo, "") + ":" }, "", "tag"),
		Entry("a tag over 128 characters", func() string { return proxy.Ref(repo, strings.Repeat("t", 129)) }, "", "tag"),
		Entry("a short digest", func() string { return proxy.Ref(repo, "") + "@sha256:abc" }, "", "digest"),
		Entry("an unknown digest algorithm", func() string { return proxy.Ref(repo, "") + "@md5:" + strings.Repeat("a", 32) }, "", "digest"),
		Entry("an empty path component", func() string { return proxy.Host + "//" + repo + ":v1" }, "", "spec.reference"),
		Entry("a path traversal", func() string { return proxy.Host + "/" + repo + "/../x:v1" }, "", "spec.reference"),
		Entry("credentials in front of the host", func() string { return "alice:hunter2@" + proxy.Ref(repo, "v1") }, "", "spec.reference"),
		Entry("a control character", func() string { return proxy.Ref(repo, "v1") + "\x00" }, "", "spec.reference"),
		Entry("a port out of range", func() string { return "127.0.0.1:99999/" + repo + ":v1" }, "", "port"),
	)

	Context("in pull Secrets", func() {
		const planted = "Pl4nted-S3cret-value"
		secretWith := func(data string) *corev1.Secret {
			return &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"},
				Type:       corev1.SecretTypeDockerConfigJson,
				Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(data)},
			}
		}
		b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

		DescribeTable("reports a Secret it cannot use without echoing it, and uses it once fixed",
			func(data func(host string) string, message string) {
				desc, m := pushArtifact(privatePusher(), privateRegistry.Host, repo, "v1", testArtifactType, textLayer("a.txt", "a\n"))
				Expect(k8sClient.Create(bg, caSecret(ns, "registry-ca"))).To(Succeed())
				secret := secretWith(data(privateRegistry.Host))
				Expect(k8sClient.Create(bg, secret)).To(Succeed())
				createArtifact(ns, v1alpha1.ArtifactSpec{
					Reference:     privateRegistry.Ref(repo, "v1"),
					CertSecretRef: &corev1.LocalObjectReference{Name: "registry-ca"},
					PullSecrets:   []corev1.LocalObjectReference{{Name: "creds"}},
					Interval:      every(longInterval),
					ConfigMap:     &v1alpha1.ConfigMapOutput{Name: configMapName},
				})
				a := expectRefused(v1alpha1.ReasonCredentialsNotFound, false, message)
				Expect(readyMessage(a)).To(ContainSubstring(`Secret "creds"`))
				expectNoSecretIn(ns, planted, "u")

				By("fixing the Secret")
				secret.Data = dockerConfigJSONSecret(ns, "creds", privateRegistry.Host, privateUser, privatePassword).Data
				Expect(k8sClient.Update(bg, secret)).To(Succeed())
				expectPublished(ns, privateRegistry.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"a.txt": []byte("a\n")})
			},
			// The API server refuses a dockerconfigjson Secret that is not a
			// JSON object; what is inside the object is up to us.
			Entry("an entry that is not an object", func(h string) string {
				return `{"auths":{"` + h + `":"` + planted + `"}}`
			}, "parsing docker config"),
			Entry("auth that is not base64", func(h string) string {
				return `{"auths":{"` + h + `":{"auth":"%%` + planted + `%%"}}}`
			}, "base64"),
			Entry("auth without a colon", func(h string) string {
				return `{"auths":{"` + h + `":{"auth":"` + b64(planted) + `"}}}`
			}, "without ':'"),
			Entry("a huge auth value", func(h string) string {
				return `{"auths":{"` + h + `":{"auth":"` + b64(planted+strings.Repeat("x", 600<<10)) + `"}}}`
			}, "without ':'"),
			Entry("nested junk where strings belong", func(h string) string {
				return `{"auths":{"` + h + `":{"username":{"nested":["` + planted + `"]},"password":[1,2,3]}}}`
			}, "username"),
			Entry("auths that is not an object", func(string) string { return `{"auths":["` + planted + `"]}` }, "auths"),
		)

		It("reads no Secret of another namespace", func() {
			other := newNamespace()
			Expect(k8sClient.Create(bg, dockerConfigJSONSecret(other, "creds", privateRegistry.Host, privateUser, privatePassword))).To(Succeed())
			pushArtifact(privatePusher(), privateRegistry.Host, repo, "v1", testArtifactType, textLayer("a.txt", "a\n"))
			Expect(k8sClient.Create(bg, caSecret(ns, "registry-ca"))).To(Succeed())
			createArtifact(ns, v1alpha1.ArtifactSpec{
				Reference:     privateRegistry.Ref(repo, "v1"),
				CertSecretRef: &corev1.LocalObjectReference{Name: "registry-ca"},
				PullSecrets:   []corev1.LocalObjectReference{{Name: other + "/creds"}, {Name: "../" + other + "/creds"}},
				Interval:      every(longInterval),
				ConfigMap:     &v1alpha1.ConfigMapOutput{Name: configMapName},
			})
			expectRefused(v1alpha1.ReasonCredentialsNotFound, false, other+"/creds")
			Consistently(func() *v1alpha1.Artifact { return getArtifact(ns) }).WithTimeout(time.Second).
				Should(WithTransform(isReady, BeFalse()), "the other namespace's Secret must never be used")
		})
	})

	Context("in registry content", func() {
		// pushRaw pushes data as repo:v1 with media type mt, next to blobs.
		pushRaw := func(mt string, data []byte, blobs ...[]byte) digest.Digest {
			GinkgoHelper()
			r := repository(plainPusher(), plainRegistry.Host, repo)
			for _, b := range blobs {
				d := ocispec.Descriptor{MediaType: binType, Digest: digest.FromBytes(b), Size: int64(len(b))}
				Expect(r.PushBlob(bg, d, bytes.NewReader(b))).To(Succeed())
			}
			desc, err := r.PushManifest(bg, "v1", mt, data)
			Expect(err).NotTo(HaveOccurred(), "push the hostile manifest")
			return desc.Digest
		}
		manifestOf := func(layers ...ocispec.Descriptor) []byte {
			GinkgoHelper()
			m := ocispec.Manifest{
				Versioned:    specs.Versioned{SchemaVersion: 2},
				MediaType:    ocispec.MediaTypeImageManifest,
				ArtifactType: testArtifactType,
				Config:       ocispec.DescriptorEmptyJSON,
				Layers:       layers,
			}
			m.Config.Data = nil
			data, err := json.Marshal(m)
			Expect(err).NotTo(HaveOccurred())
			return data
		}
		titled := func(title string, b []byte) ocispec.Descriptor {
			return ocispec.Descriptor{MediaType: binType, Digest: digest.FromBytes(b), Size: int64(len(b)),
				Annotations: map[string]string{ocispec.AnnotationTitle: title}}
		}
		empty := []byte("{}")

		DescribeTable("refuses it with a clear condition and publishes nothing",
			func(push func() (reason string, stall bool, message string)) {
				reason, stall, message := push()
				createArtifact(ns, baseSpec(repo, "v1"))
				expectRefused(reason, stall, message)
			},
			Entry("two layers with one title (a ConfigMap key collision)", func() (string, bool, string) {
				a, b := []byte("one\n"), []byte("two\n")
				pushRaw(ocispec.MediaTypeImageManifest, manifestOf(titled("a.txt", a), titled("a.txt", b)), empty, a, b)
				return v1alpha1.ReasonSelectorMismatch, true, `"a.txt"`
			}),
			Entry("a layer whose size is larger than its blob", func() (string, bool, string) {
				b := []byte("short\n")
				l := titled("a.txt", b)
				l.Size += 100
				pushRaw(ocispec.MediaTypeImageManifest, manifestOf(l), empty, b)
				return v1alpha1.ReasonVerificationFailed, false, "size"
			}),
			Entry("a layer whose size is smaller than its blob", func() (string, bool, string) {
				b := []byte("longer than said\n")
				l := titled("a.txt", b)
				l.Size = 2
				pushRaw(ocispec.MediaTypeImageManifest, manifestOf(l), empty, b)
				return v1alpha1.ReasonVerificationFailed, false, "size"
			}),
			Entry("a layer claiming a terabyte", func() (string, bool, string) {
				b := []byte("tiny\n")
				l := titled("a.txt", b)
				l.Size = 1 << 40
				pushRaw(ocispec.MediaTypeImageManifest, manifestOf(l), empty, b)
				return v1alpha1.ReasonTooLarge, true, "maxSize"
			}),
			Entry("a layer with a negative size", func() (string, bool, string) {
				b := []byte("neg\n")
				l := titled("a.txt", b)
				l.Size = -1
				pushRaw(ocispec.MediaTypeImageManifest, manifestOf(l), empty, b)
				return v1alpha1.ReasonVerificationFailed, false, "negative size"
			}),
			Entry("a title that leaves the output folder", func() (string, bool, string) {
				b := []byte("x\n")
				pushRaw(ocispec.MediaTypeImageManifest, manifestOf(titled("../../etc/passwd", b)), empty, b)
				return v1alpha1.ReasonSelectorMismatch, true, "../../etc/passwd"
			}),
			Entry("an index of an index", func() (string, bool, string) {
				b := []byte("a\n")
				inner := manifestOf(titled("a.txt", b))
				r := repository(plainPusher(), plainRegistry.Host, repo)
				pushRaw(ocispec.MediaTypeImageManifest, inner, empty, b)
				innerIdx := indexOf(1, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(inner), Size: int64(len(inner))})
				d, err := r.PushManifest(bg, "inner", ocispec.MediaTypeImageIndex, innerIdx)
				Expect(err).NotTo(HaveOccurred())
				pushRaw(ocispec.MediaTypeImageIndex, indexOf(1, d))
				return v1alpha1.ReasonSelectorMismatch, true, "index"
			}),
			Entry("an index of 10000 manifests", func() (string, bool, string) {
				b := []byte("a\n")
				inner := manifestOf(titled("a.txt", b))
				pushRaw(ocispec.MediaTypeImageManifest, inner, empty, b)
				pushRaw(ocispec.MediaTypeImageIndex, indexOf(10000, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(inner), Size: int64(len(inner))}))
				return v1alpha1.ReasonSelectorMismatch, true, "10000 manifests (linux/amd64 (10000 times))"
			}),
		)

		// Media types name what a layer or config holds; ocisync copies
		// files and never reads them, so types it has never heard of are
		// fine there. Only the manifest's own type decides how to read it.
		DescribeTable("publishes content of media types it has never heard of",
			func(layerType, configType string) {
				b := []byte("weird but fine\n")
				l := titled("w.dat", b)
				l.MediaType = layerType
				config := ocispec.DescriptorEmptyJSON
				config.Data = nil
				m := ocispec.Manifest{
					Versioned: specs.Versioned{SchemaVersion: 2},
					MediaType: ocispec.MediaTypeImageManifest,
					Config:    config,
					Layers:    []ocispec.Descriptor{l},
				}
				if configType != "" {
					m.Config.MediaType = configType
				} else {
					m.ArtifactType = testArtifactType
				}
				data, err := json.Marshal(m)
				Expect(err).NotTo(HaveOccurred())
				d := pushRaw(ocispec.MediaTypeImageManifest, data, empty, b)
				createArtifact(ns, baseSpec(repo, "v1"))
				desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(data))}
				expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"w.dat": b})
			},
			Entry("a titled layer of an unknown media type (spec.mediaType empty selects any)", "application/vnd.example.weird.layer.v1+zz", ""),
			Entry("a config of an unknown media type (it names the artifact type)", binType, "application/vnd.example.weird.config.v1+json"),
		)

		DescribeTable("refuses a manifest of a kind it cannot read and fetches no blob",
			func(contentType string, body func() []byte, message string) {
				DeferCleanup(proxy.SetFault, repo, faultNone)
				// The registry refuses to store such manifests; the
				// proxy serves them for the tag, next to a real artifact
				// whose blobs the controller must not be led to fetch.
				pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
				proxy.SetManifest(repo, servedManifest{contentType: contentType, body: body()})
				createArtifact(ns, baseSpec(repo, "v1"))
				expectRefused(v1alpha1.ReasonSelectorMismatch, true, message)
				Expect(proxy.Faulted(repo)).To(BeNumerically(">", 0), "the manifest was served")
				Expect(proxy.Count(repo, "GET", "blobs")).To(BeZero(), "no blob is fetched for a manifest that cannot be read")
			},
			Entry("an unknown manifest media type", "application/vnd.example.weird+json", func() []byte {
				b := []byte("a\n")
				m := manifestOf(titled("a.txt", b))
				return bytes.Replace(m, []byte(ocispec.MediaTypeImageManifest), []byte("application/vnd.example.weird+json"), 1)
			}, `unsupported manifest media type "application/vnd.example.weird+json"`),
			Entry("an unknown media type served as generic JSON", "application/json", func() []byte {
				return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.example.weird+json","layers":[]}`)
			}, `unsupported manifest media type "application/vnd.example.weird+json"`),
			Entry("a Docker schema1 manifest", "application/vnd.docker.distribution.manifest.v1+prettyjws", schema1Manifest,
				`Docker schema1 manifest (served as "application/vnd.docker.distribution.manifest.v1+prettyjws"), which is deprecated and not supported`),
			Entry("a Docker schema1 manifest served as generic JSON", "application/json", schema1Manifest,
				`Docker schema1 manifest (served as "application/json"), which is deprecated and not supported`),
		)

		It("publishes an artifact of a thousand layers, each downloaded at most once", func() {
			const n = 1000
			var layers []ocispec.Descriptor
			b := []byte("x")
			for i := range n {
				layers = append(layers, titled(fmt.Sprintf("f%04d", i), b))
			}
			pushRaw(ocispec.MediaTypeImageManifest, manifestOf(layers...), empty, b)
			createArtifact(ns, baseSpec(repo, "v1"))
			Eventually(func() *corev1.ConfigMap { return getConfigMap(ns, configMapName) }).Should(
				WithTransform(func(cm *corev1.ConfigMap) int {
					if cm == nil {
						return 0
					}
					return len(cm.Data)
				}, Equal(n)))
			Expect(proxy.Count(repo, "GET", "blobs")).To(BeNumerically("<=", n), "each layer is downloaded at most once")
		})
	})
})

// schema1Manifest is a signed Docker schema1 manifest, as old registries
// still serve for images pushed long ago.
func schema1Manifest() []byte {
	return []byte(`{
   "schemaVersion": 1,
   "name": "library/old",
   "tag": "v1",
   "architecture": "amd64",
   "fsLayers": [
      {"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}
   ],
   "history": [
      {"v1Compatibility": "{\"id\":\"e1d9a5f3\",\"created\":\"2016-01-01T00:00:00Z\"}"}
   ],
   "signatures": [
      {
         "header": {"jwk": {"crv": "P-256", "kid": "AAAA:BBBB", "kty": "EC", "x": "x", "y": "y"}, "alg": "ES256"},
         "signature": "c2lnbmF0dXJl",
         "protected": "eyJmb3JtYXRMZW5ndGgiOjEyMywiZm9ybWF0VGFpbCI6IkNuMCIsInRpbWUiOiIyMDE2LTAxLTAxVDAwOjAwOjAwWiJ9"
      }
   ]
}`)
}

// indexOf is an image index listing m n times with one platform.
func indexOf(n int, m ocispec.Descriptor) []byte {
	GinkgoHelper()
	m.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for range n {
		idx.Manifests = append(idx.Manifests, m)
	}
	data, err := json.Marshal(idx)
	Expect(err).NotTo(HaveOccurred())
	return data
}

func TestCheckConfigMapFitRefusesDuplicateTitles(t *testing.T) {
	err := checkConfigMapFit([]string{"a.txt", "b.txt", "a.txt"}, 3)
	if se := classify(err); err == nil || se.reason != v1alpha1.ReasonSelectorMismatch || !se.stall || !strings.Contains(err.Error(), `"a.txt"`) {
		t.Fatalf("checkConfigMapFit with a repeated title = %v, want a stalled SelectorMismatch naming it", err)
	}
}

func TestClassifyInvalidManifest(t *testing.T) {
	se := classify(fmt.Errorf("x: %w: negative size", oci.ErrInvalidManifest))
	if se.reason != v1alpha1.ReasonVerificationFailed || se.stall {
		t.Fatalf("an invalid manifest is %s stall=%v, want VerificationFailed, retried (the tag may move)", se.reason, se.stall)
	}
}
