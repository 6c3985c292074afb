package controller

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gomegatypes "github.com/onsi/gomega/types"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/reference"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

var _ = Describe("Artifact controller", func() {
	var ns, repo string
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
	})

	Context("publishing", func() {
		It("publishes an artifact pushed by the oras CLI on first sync", func() {
			dir := GinkgoT().TempDir()
			contents := map[string][]byte{
				"app.yaml":   []byte("replicas: 3\n"),
				"rules.json": []byte(`{"allow": true}` + "\n"),
			}
			for name, b := range contents {
				Expect(os.WriteFile(filepath.Join(dir, name), b, 0o600)).To(Succeed())
			}
			args := []string{"push", plainRegistry.Ref(repo, "v1"), "--artifact-type", testArtifactType,
				"app.yaml:text/yaml", "rules.json:application/json"}
			oras.In(dir).MustRun(GinkgoT(), append(args, plainRegistry.OrasFlags("")...)...)
			desc, data, err := repository(plainPusher(), plainRegistry.Host, repo).FetchManifest(bg, "v1")
			Expect(err).NotTo(HaveOccurred())
			var m ocispec.Manifest
			Expect(json.Unmarshal(data, &m)).To(Succeed())
			Expect(m.Layers).To(HaveLen(2), "oras pushed %s", data)

			createArtifact(ns, baseSpec(repo, "v1"))
			expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, contents)
			expectPublishedOnce(ns, desc.Digest)
			Expect(proxy.Count(repo, "GET", "blobs")).To(Equal(len(m.Layers)), "each layer is downloaded once, the config never")
		})

		It("puts valid UTF-8 files in data and other bytes in binaryData", func() {
			contents := map[string][]byte{
				"greeting.txt": []byte("héllo wörld ✓\n"),
				"blob.bin":     {0x00, 0xff, 0xfe, 0x80, 'x'},
				"empty.txt":    {},
			}
			desc, m := pushPlain(repo, "v1",
				layer{"greeting.txt", textType, contents["greeting.txt"]},
				layer{"blob.bin", binType, contents["blob.bin"]},
				layer{"empty.txt", textType, contents["empty.txt"]},
			)
			createArtifact(ns, baseSpec(repo, "v1"))
			_, cm := expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, contents)
			Expect(cm.Data).To(HaveKeyWithValue("empty.txt", ""), "an empty file is published as an empty key")
			Expect(cm.BinaryData).To(HaveKey("blob.bin"))
		})

		It("publishes the layers spec.mediaType selects, and by default every titled layer", func() {
			desc, m := pushPlain(repo, "v1",
				textLayer("a.txt", "a\n"),
				layer{"b.json", jsonType, []byte(`{"b":1}`)},
				layer{"", textType, []byte("no title, so not a file\n")},
			)
			spec := baseSpec(repo, "v1")
			spec.MediaType = jsonType
			createArtifact(ns, spec)
			expectPublished(ns, proxy.Host, repo, "v1", desc, m, layersOf(m, "b.json"),
				map[string][]byte{"b.json": []byte(`{"b":1}`)})

			By("selecting every titled layer")
			updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.MediaType = "" })
			expectPublished(ns, proxy.Host, repo, "v1", desc, m, layersOf(m, "a.txt", "b.json"),
				map[string][]byte{"a.txt": []byte("a\n"), "b.json": []byte(`{"b":1}`)})
		})

		It("follows a tag moved to new content and records a Published event for it", func() {
			d1, m1 := pushPlain(repo, "stable", textLayer("a.txt", "one\n"), textLayer("old.txt", "old\n"))
			createArtifact(ns, baseSpec(repo, "stable"))
			a1, _ := expectPublished(ns, proxy.Host, repo, "stable", d1, m1, m1.Layers,
				map[string][]byte{"a.txt": []byte("one\n"), "old.txt": []byte("old\n")})
			expectPublishedOnce(ns, d1.Digest)

			By("moving the tag")
			d2, m2 := pushPlain(repo, "stable", textLayer("a.txt", "two\n"), textLayer("new.txt", "new\n"))
			a2, _ := expectPublished(ns, proxy.Host, repo, "stable", d2, m2, m2.Layers,
				map[string][]byte{"a.txt": []byte("two\n"), "new.txt": []byte("new\n")})
			Expect(a2.Status.LastSyncTime.Time).NotTo(BeTemporally("<", a1.Status.LastSyncTime.Time))
			expectPublishedOnce(ns, d1.Digest, d2.Digest)
		})

		It("neither downloads nor writes anything while the digest stays the same", func() {
			desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			createArtifact(ns, baseSpec(repo, "v1")) // every second
			a, cm := expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"a.txt": []byte("a\n")})
			before := proxy.Counts(repo)

			Consistently(func(g Gomega) {
				now := &v1alpha1.Artifact{}
				g.Expect(k8sClient.Get(bg, client.ObjectKeyFromObject(a), now)).To(Succeed())
				g.Expect(now.ResourceVersion).To(Equal(a.ResourceVersion), "the Artifact was written: %+v", now.Status)
				nowCM := &corev1.ConfigMap{}
				g.Expect(k8sClient.Get(bg, client.ObjectKeyFromObject(cm), nowCM)).To(Succeed())
				g.Expect(nowCM.ResourceVersion).To(Equal(cm.ResourceVersion), "the ConfigMap was written")
			}).WithTimeout(4500 * time.Millisecond).WithPolling(250 * time.Millisecond).Should(Succeed())

			delta := countsSince(before, proxy.Counts(repo))
			Expect(delta).To(HaveKeyWithValue(requestKey{repo, "HEAD", "manifests"}, BeNumerically(">=", 3)),
				"one HEAD of the tag per interval; requests: %v", delta)
			Expect(delta).To(HaveLen(1), "nothing but HEAD of the tag: no manifest or blob GET; requests: %v", delta)
			expectPublishedOnce(ns, desc.Digest)
		})

		It("neither writes nor announces again an output that holds the digest when the status it reads is older", func() {
			desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			spec := baseSpec(repo, "v1")
			spec.Interval = every(longInterval)
			createArtifact(ns, spec)
			a, cm := expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"a.txt": []byte("a\n")})
			expectPublishedOnce(ns, desc.Digest)

			syncWithOlderStatus(ns, a)
			Expect(getConfigMap(ns, configMapName).ResourceVersion).To(Equal(cm.ResourceVersion), "the ConfigMap was written again")
			expectPublishedOnce(ns, desc.Digest)
		})

		It("only resolves the digest without an output, downloading no blob", func() {
			desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			spec := baseSpec(repo, "v1")
			spec.ConfigMap = nil
			createArtifact(ns, spec)
			a := waitReady(ns, desc.Digest)
			Expect(a.Status.ResolvedReference).To(Equal(proxy.Ref(repo, "v1") + "@" + desc.Digest.String()))
			Expect(a.Status.ShortDigest).To(Equal(desc.Digest.Encoded()[:12]))
			Expect(a.Status.Tag).To(Equal("v1"))
			Expect(a.Status.ArtifactType).To(Equal(testArtifactType))
			expectPublishedOnce(ns, desc.Digest)

			Expect(proxy.Count(repo, "HEAD", "manifests")+proxy.Count(repo, "GET", "manifests")).To(BeNumerically(">", 0),
				"the proxy saw the Artifact's requests")
			Expect(proxy.Count(repo, "GET", "blobs")).To(BeZero(), "no blob is downloaded without an output")
			var cms corev1.ConfigMapList
			Expect(k8sClient.List(bg, &cms, client.InNamespace(ns))).To(Succeed())
			Expect(cms.Items).To(BeEmpty(), "no ConfigMap is written without spec.configMap")
		})

		It("publishes a reference pinned by digest, whatever its tag does", func() {
			d1, m1 := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
			spec := baseSpec(repo, "")
			spec.Reference = proxy.Host + "/" + repo + "@" + d1.Digest.String()
			createArtifact(ns, spec)
			expectPublished(ns, proxy.Host, repo, "", d1, m1, m1.Layers, map[string][]byte{"a.txt": []byte("one\n")})

			By("pinning tag and digest")
			pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
			updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Reference = proxy.Ref(repo, "v1") + "@" + d1.Digest.String() })
			expectPublished(ns, proxy.Host, repo, "v1", d1, m1, m1.Layers, map[string][]byte{"a.txt": []byte("one\n")})
		})

		It("picks the manifest of spec.platform from an image index, and stalls listing the platforms without one", func() {
			amd, _ := pushPlain(repo, "", textLayer("arch.txt", "amd64\n"))
			arm, _ := pushPlain(repo, "", textLayer("arch.txt", "arm64\n"))
			amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
			arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
			idx, err := json.Marshal(ocispec.Index{
				Versioned: specs.Versioned{SchemaVersion: 2},
				MediaType: ocispec.MediaTypeImageIndex,
				Manifests: []ocispec.Descriptor{amd, arm},
			})
			Expect(err).NotTo(HaveOccurred())
			idxDesc, err := repository(plainPusher(), plainRegistry.Host, repo).PushManifest(bg, "v1", ocispec.MediaTypeImageIndex, idx)
			Expect(err).NotTo(HaveOccurred())

			createArtifact(ns, baseSpec(repo, "v1"))
			a := waitFailed(ns, v1alpha1.ReasonSelectorMismatch, true)
			Expect(readyMessage(a)).To(And(ContainSubstring("linux/amd64"), ContainSubstring("linux/arm64")))
			Expect(getConfigMap(ns, configMapName)).To(BeNil())

			updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Platform = "linux/arm64" })
			a = waitReady(ns, idxDesc.Digest)
			Expect(a.Status.Files).To(HaveLen(1))
			Expect(a.Status.Files[0].Digest).To(Equal(digest.FromString("arm64\n").String()))
			expectConfigMapHolds(getConfigMap(ns, configMapName), map[string][]byte{"arch.txt": []byte("arm64\n")})
		})

		It("follows the newest tag within a semver range", func() {
			descs := map[string]ocispec.Descriptor{}
			manifests := map[string]ocispec.Manifest{}
			for _, v := range []string{"1.0.0", "1.2.0", "2.0.0", "latest", "1.2.0-rc.1"} {
				descs[v], manifests[v] = pushPlain(repo, v, textLayer("version", v))
			}
			spec := baseSpec(repo, "")
			spec.SemVer = "^1.0"
			createArtifact(ns, spec)
			expectPublished(ns, proxy.Host, repo, "1.2.0", descs["1.2.0"], manifests["1.2.0"], manifests["1.2.0"].Layers,
				map[string][]byte{"version": []byte("1.2.0")})

			By("pushing a newer version within the range")
			d, m := pushPlain(repo, "1.3.0", textLayer("version", "1.3.0"))
			expectPublished(ns, proxy.Host, repo, "1.3.0", d, m, m.Layers, map[string][]byte{"version": []byte("1.3.0")})
		})

		It("makes the Artifact the ConfigMap's controlling owner and does not block the Artifact's deletion", func() {
			desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			a := createArtifact(ns, baseSpec(repo, "v1"))
			_, cm := expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"a.txt": []byte("a\n")})
			// envtest runs no garbage collector: this reference, with
			// controller and blockOwnerDeletion, is what makes a cluster
			// delete the ConfigMap with the Artifact.
			Expect(cm.OwnerReferences).To(ConsistOf(metav1.OwnerReference{
				APIVersion:         v1alpha1.GroupVersion.String(),
				Kind:               "Artifact",
				Name:               artifactName,
				UID:                a.UID,
				Controller:         new(true),
				BlockOwnerDeletion: new(true),
			}))

			Expect(k8sClient.Delete(bg, a)).To(Succeed())
			Eventually(func() bool {
				return apierrors.IsNotFound(k8sClient.Get(bg, client.ObjectKeyFromObject(a), &v1alpha1.Artifact{}))
			}).Should(BeTrue(), "no finalizer holds the Artifact back")
		})
	})

	Context("with a private registry over TLS", func() {
		var desc ocispec.Descriptor
		var m ocispec.Manifest
		contents := map[string][]byte{"secret.txt": []byte("private\n")}
		BeforeEach(func() {
			desc, m = pushArtifact(privatePusher(), privateRegistry.Host, repo, "v1", testArtifactType,
				textLayer("secret.txt", "private\n"))
			Expect(k8sClient.Create(bg, caSecret(ns, "registry-ca"))).To(Succeed())
		})
		// privateSpec trusts the test CA and syncs rarely, so that quick
		// reactions can only come from watches.
		privateSpec := func() v1alpha1.ArtifactSpec {
			return v1alpha1.ArtifactSpec{
				Reference:     privateRegistry.Ref(repo, "v1"),
				CertSecretRef: &corev1.LocalObjectReference{Name: "registry-ca"},
				Interval:      every(longInterval),
				ConfigMap:     &v1alpha1.ConfigMapOutput{Name: configMapName},
			}
		}

		It("pulls with a dockerconfigjson pull Secret and reacts to its rotation at once", func() {
			secret := dockerConfigJSONSecret(ns, "creds", privateRegistry.Host, privateUser, privatePassword)
			Expect(k8sClient.Create(bg, secret)).To(Succeed())
			spec := privateSpec()
			spec.PullSecrets = []corev1.LocalObjectReference{{Name: "creds"}}
			createArtifact(ns, spec)
			_, cm := expectPublished(ns, privateRegistry.Host, repo, "v1", desc, m, m.Layers, contents)

			By("rotating the Secret to a wrong password")
			const wrong = "r0tated-Wrong-pw"
			secret.Data = dockerConfigJSONSecret(ns, "creds", privateRegistry.Host, privateUser, wrong).Data
			Expect(k8sClient.Update(bg, secret)).To(Succeed())
			waitFailedWithin(ns, v1alpha1.ReasonAuthenticationFailed, false, watchTimeout)
			expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonAuthenticationFailed)
			expectNoSecretIn(ns, wrong, privateUser)
			expectNoSecretIn(ns, privatePassword, privateUser)
			Expect(getConfigMap(ns, configMapName)).To(Equal(cm), "a failure leaves the output as it was")

			By("rotating it back")
			secret.Data = dockerConfigJSONSecret(ns, "creds", privateRegistry.Host, privateUser, privatePassword).Data
			Expect(k8sClient.Update(bg, secret)).To(Succeed())
			waitReadyWithin(ns, desc.Digest, watchTimeout)
			// The rotation reached the manager through a watch of
			// metadata, not of whole Secrets.
			expectOnlyMetadataCached(client.ObjectKeyFromObject(secret))
		})

		It("uses the imagePullSecrets of spec.serviceAccountName, in the legacy dockercfg form too", func() {
			Expect(k8sClient.Create(bg, dockercfgSecret(ns, "legacy", privateRegistry.Host, privateUser, privatePassword))).To(Succeed())
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "puller"}}
			Expect(k8sClient.Create(bg, sa)).To(Succeed())
			spec := privateSpec()
			spec.ServiceAccountName = "puller"
			createArtifact(ns, spec)
			waitFailed(ns, v1alpha1.ReasonAuthenticationFailed, false)

			By("adding the Secret to the ServiceAccount's imagePullSecrets")
			sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "legacy"}}
			Expect(k8sClient.Update(bg, sa)).To(Succeed())
			expectPublished(ns, privateRegistry.Host, repo, "v1", desc, m, m.Layers, contents)
			expectOnlyMetadataCached(types.NamespacedName{Namespace: ns, Name: "legacy"})

			By("rotating that Secret")
			const wrong = "r0tated-Wrong-pw"
			legacy := &corev1.Secret{}
			Expect(k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: "legacy"}, legacy)).To(Succeed())
			legacy.Data = dockercfgSecret(ns, "legacy", privateRegistry.Host, privateUser, wrong).Data
			Expect(k8sClient.Update(bg, legacy)).To(Succeed())
			waitFailedWithin(ns, v1alpha1.ReasonAuthenticationFailed, false, watchTimeout)
		})

		DescribeTable("reports refused credentials as AuthenticationFailed without revealing them",
			func(password string) {
				spec := privateSpec()
				if password != "" {
					Expect(k8sClient.Create(bg, dockerConfigJSONSecret(ns, "creds", privateRegistry.Host, privateUser, password))).To(Succeed())
					spec.PullSecrets = []corev1.LocalObjectReference{{Name: "creds"}}
				}
				createArtifact(ns, spec)
				waitFailed(ns, v1alpha1.ReasonAuthenticationFailed, false)
				expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonAuthenticationFailed)
				if password != "" {
					expectNoSecretIn(ns, password, privateUser)
				}
				Expect(getConfigMap(ns, configMapName)).To(BeNil())
			},
			Entry("a wrong password", "n0t-the-Passw0rd"),
			Entry("no credentials at all", ""),
		)

		It("reports a missing pull Secret as CredentialsNotFound until it is created", func() {
			spec := privateSpec()
			spec.PullSecrets = []corev1.LocalObjectReference{{Name: "creds"}}
			createArtifact(ns, spec)
			a := waitFailed(ns, v1alpha1.ReasonCredentialsNotFound, false)
			Expect(readyMessage(a)).To(ContainSubstring(`"creds"`))
			expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonCredentialsNotFound, `"creds"`)

			By("creating the Secret")
			Expect(k8sClient.Create(bg, dockerConfigJSONSecret(ns, "creds", privateRegistry.Host, privateUser, privatePassword))).To(Succeed())
			expectPublished(ns, privateRegistry.Host, repo, "v1", desc, m, m.Layers, contents)
		})
	})

	Context("when syncing fails", func() {
		DescribeTable("stalls on a spec that cannot work, until the spec changes",
			func(reason, message string, breakSpec, fixSpec func(*v1alpha1.ArtifactSpec), files []string) {
				contents := map[string][]byte{"a.txt": []byte("a\n"), "b.json": []byte(`{"b":1}`)}
				desc, m := pushPlain(repo, "v1",
					layer{"a.txt", textType, contents["a.txt"]},
					layer{"b.json", jsonType, contents["b.json"]},
				)
				spec := baseSpec(repo, "v1")
				breakSpec(&spec)
				createArtifact(ns, spec)
				a := waitFailed(ns, reason, true)
				Expect(readyMessage(a)).To(ContainSubstring(message))
				expectEvent(ns, corev1.EventTypeWarning, reason)
				Expect(getConfigMap(ns, configMapName)).To(BeNil(), "nothing is published")

				By("waiting for a spec change instead of polling the registry")
				before := proxy.Counts(repo)
				Consistently(func() map[requestKey]int {
					return countsSince(before, proxy.Counts(repo))
				}).WithTimeout(2500 * time.Millisecond).Should(BeEmpty())

				By("changing the spec")
				updateSpec(ns, fixSpec)
				want := map[string][]byte{}
				for _, f := range files {
					want[f] = contents[f]
				}
				expectPublished(ns, proxy.Host, repo, "v1", desc, m, layersOf(m, files...), want)
			},
			Entry("a mediaType no layer has", v1alpha1.ReasonSelectorMismatch, "application/x-nothing",
				func(s *v1alpha1.ArtifactSpec) { s.MediaType = "application/x-nothing" },
				func(s *v1alpha1.ArtifactSpec) { s.MediaType = jsonType },
				[]string{"b.json"}),
			Entry("another artifactType", v1alpha1.ReasonSelectorMismatch, "application/vnd.ocisync.other",
				func(s *v1alpha1.ArtifactSpec) { s.ArtifactType = "application/vnd.ocisync.other" },
				func(s *v1alpha1.ArtifactSpec) { s.ArtifactType = testArtifactType },
				[]string{"a.txt", "b.json"}),
			Entry("a maxSize below the artifact's size", v1alpha1.ReasonTooLarge, "maxSize",
				func(s *v1alpha1.ArtifactSpec) { s.MaxSize = new(resource.MustParse("4")) },
				func(s *v1alpha1.ArtifactSpec) { s.MaxSize = new(resource.MustParse("1Ki")) },
				[]string{"a.txt", "b.json"}),
			Entry("a reference that does not parse", v1alpha1.ReasonInvalidReference, "spec.reference",
				func(s *v1alpha1.ArtifactSpec) { s.Reference = strings.Replace(s.Reference, "/test/", "/Test/", 1) },
				func(s *v1alpha1.ArtifactSpec) { s.Reference = strings.Replace(s.Reference, "/Test/", "/test/", 1) },
				[]string{"a.txt", "b.json"}),
			Entry("a semver range that does not parse", v1alpha1.ReasonInvalidSpec, "spec.semver",
				func(s *v1alpha1.ArtifactSpec) { s.SemVer = "not a range" },
				func(s *v1alpha1.ArtifactSpec) { s.SemVer = "" },
				[]string{"a.txt", "b.json"}),
		)

		It("refuses files a ConfigMap cannot hold before downloading them, pointing to spec.volume", func() {
			big := make([]byte, 1<<20+1)
			_, err := rand.Read(big)
			Expect(err).NotTo(HaveOccurred())
			pushPlain(repo, "v1", layer{"big.bin", binType, big})
			createArtifact(ns, baseSpec(repo, "v1"))
			a := waitFailed(ns, v1alpha1.ReasonTooLarge, true)
			Expect(readyMessage(a)).To(ContainSubstring("spec.volume"))
			expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonTooLarge, "spec.volume")
			Expect(getConfigMap(ns, configMapName)).To(BeNil())
			Expect(proxy.Count(repo, "GET", "blobs")).To(BeZero(), "the size is known from the manifest")
		})

		It("reports a missing tag as NotFound and retries until it is pushed", func() {
			createArtifact(ns, baseSpec(repo, "v1"))
			a := waitFailed(ns, v1alpha1.ReasonNotFound, false)
			Expect(readyMessage(a)).To(ContainSubstring("v1"))
			expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonNotFound)

			By("pushing the tag")
			desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"a.txt": []byte("a\n")})
		})

		It("refuses tampered blobs and keeps the previous ConfigMap byte for byte", func() {
			DeferCleanup(proxy.SetFault, repo, faultNone)
			d1, m1 := pushPlain(repo, "v1", textLayer("a.txt", "one\n"), layer{"b.bin", binType, []byte{0xff, 1}})
			createArtifact(ns, baseSpec(repo, "v1"))
			_, cm := expectPublished(ns, proxy.Host, repo, "v1", d1, m1, m1.Layers,
				map[string][]byte{"a.txt": []byte("one\n"), "b.bin": {0xff, 1}})

			By("moving the tag while a mirror tampers with blobs")
			proxy.SetFault(repo, faultCorruptBlobs)
			blobGets := proxy.Count(repo, "GET", "blobs")
			d2, m2 := pushPlain(repo, "v1", textLayer("a.txt", "two\n"), layer{"b.bin", binType, []byte{0xff, 2}})
			a := waitFailed(ns, v1alpha1.ReasonVerificationFailed, false)
			Expect(a.Status.Digest).To(Equal(d1.Digest.String()), "the status still describes what is published")
			expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonVerificationFailed)
			Expect(proxy.Count(repo, "GET", "blobs")).To(BeNumerically(">", blobGets), "the tampered blobs were served")
			Consistently(func() *corev1.ConfigMap { return getConfigMap(ns, configMapName) }).
				WithTimeout(2*time.Second).Should(Equal(cm), "the ConfigMap must not change")

			By("serving the blobs intact again")
			proxy.SetFault(repo, faultNone)
			expectPublished(ns, proxy.Host, repo, "v1", d2, m2, m2.Layers,
				map[string][]byte{"a.txt": []byte("two\n"), "b.bin": {0xff, 2}})
		})

		DescribeTable("reports an unreachable registry as RegistryUnavailable, keeps the output and recovers",
			func(f fault) {
				DeferCleanup(proxy.SetFault, repo, faultNone)
				desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
				createArtifact(ns, baseSpec(repo, "v1"))
				_, cm := expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"a.txt": []byte("a\n")})

				By("taking the registry down: " + f.String())
				proxy.SetFault(repo, f)
				a := waitFailed(ns, v1alpha1.ReasonRegistryUnavailable, false)
				Expect(a.Status.Digest).To(Equal(desc.Digest.String()))
				expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonRegistryUnavailable)
				Expect(getConfigMap(ns, configMapName)).To(Equal(cm), "a failure leaves the output as it was")

				By("bringing it back")
				proxy.SetFault(repo, faultNone)
				waitReady(ns, desc.Digest)
				Expect(getConfigMap(ns, configMapName)).To(Equal(cm), "the same digest is not written again")
			},
			Entry("503 Service Unavailable", faultUnavailable),
			Entry("connections closed without an answer", faultDrop),
		)

		// The manager caches only labelled ConfigMaps: an unlabelled one
		// is found by a read from the API server.
		DescribeTable("leaves a ConfigMap it does not own alone and reports OutputConflict",
			func(labels map[string]string, owners []metav1.OwnerReference) {
				existing := &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: configMapName, Labels: labels, OwnerReferences: owners},
					Data:       map[string]string{"owner": "someone else"},
				}
				Expect(k8sClient.Create(bg, existing)).To(Succeed())
				pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
				createArtifact(ns, baseSpec(repo, "v1"))
				a := waitFailed(ns, v1alpha1.ReasonOutputConflict, false)
				Expect(readyMessage(a)).To(ContainSubstring(configMapName))
				expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonOutputConflict)
				Consistently(func() *corev1.ConfigMap { return getConfigMap(ns, configMapName) }).
					WithTimeout(2*time.Second).Should(Equal(existing), "the unowned ConfigMap must not change")
			},
			Entry("unlabelled, so not in the manager's cache", nil, nil),
			Entry("labelled like an output", map[string]string{v1alpha1.LabelArtifactName: artifactName}, nil),
			Entry("unlabelled and controlled by another Artifact", nil, []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: "Artifact", Name: artifactName,
				UID: "00000000-0000-0000-0000-000000000001", Controller: new(true),
			}}),
		)
	})

	It("restores its ConfigMap when someone edits or deletes it", func() {
		desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"), layer{"b.bin", binType, []byte{0xff}})
		spec := baseSpec(repo, "v1")
		spec.Interval = every(longInterval) // only the ConfigMap watch can restore it in time
		createArtifact(ns, spec)
		contents := map[string][]byte{"a.txt": []byte("a\n"), "b.bin": {0xff}}
		a, cm := expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, contents)
		restored := func(g Gomega) {
			now := getConfigMap(ns, configMapName)
			g.Expect(now).NotTo(BeNil(), "the ConfigMap is back")
			g.Expect(now.Data).To(Equal(cm.Data))
			g.Expect(now.BinaryData).To(Equal(cm.BinaryData))
			g.Expect(now.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationDigest, desc.Digest.String()))
			g.Expect(now.Labels).To(HaveKeyWithValue(v1alpha1.LabelArtifactName, artifactName))
			g.Expect(now.OwnerReferences).To(Equal(cm.OwnerReferences))
		}

		By("editing its data")
		edited := cm.DeepCopy()
		edited.Data["a.txt"] = "edited\n"
		edited.Data["extra"] = "added by hand"
		edited.BinaryData["b.bin"] = []byte{0xfe}
		Expect(k8sClient.Update(bg, edited)).To(Succeed())
		Eventually(restored).WithTimeout(watchTimeout).Should(Succeed())

		By("deleting it")
		Expect(k8sClient.Delete(bg, getConfigMap(ns, configMapName))).To(Succeed())
		Eventually(restored).WithTimeout(watchTimeout).Should(Succeed())
		expectControlledBy(getConfigMap(ns, configMapName), a)
		expectPublishedOnce(ns, desc.Digest) // restoring is no new publication
	})

	It("does nothing while suspended", func() {
		d1, m1 := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		createArtifact(ns, baseSpec(repo, "v1"))
		_, cm := expectPublished(ns, proxy.Host, repo, "v1", d1, m1, m1.Layers, map[string][]byte{"a.txt": []byte("one\n")})

		By("suspending it and moving the tag")
		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Suspend = true })
		Eventually(func(g Gomega) {
			a := getArtifact(ns)
			g.Expect(a.Status.ObservedGeneration).To(Equal(a.Generation))
			// kubectl wait --for=condition=Ready compares the condition's
			// own observedGeneration.
			g.Expect(meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady)).To(And(
				HaveField("Status", metav1.ConditionTrue), HaveField("ObservedGeneration", a.Generation)))
		}).Should(Succeed(), "the controller sees the suspension")
		a := getArtifact(ns)
		before := proxy.Counts(repo)
		d2, m2 := pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
		Consistently(func(g Gomega) {
			now := getArtifact(ns)
			g.Expect(now.ResourceVersion).To(Equal(a.ResourceVersion), "the Artifact was written: %+v", now.Status)
			g.Expect(getConfigMap(ns, configMapName)).To(Equal(cm))
		}).WithTimeout(3 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		Expect(countsSince(before, proxy.Counts(repo))).To(BeEmpty(), "no registry request while suspended")
		Expect(a.Status.Digest).To(Equal(d1.Digest.String()))

		By("resuming it")
		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Suspend = false })
		expectPublished(ns, proxy.Host, repo, "v1", d2, m2, m2.Layers, map[string][]byte{"a.txt": []byte("two\n")})
	})

	DescribeTable("the API server validates the spec",
		func(change func(*v1alpha1.ArtifactSpec), message string) {
			spec := v1alpha1.ArtifactSpec{
				Reference: "registry.example.com/team/app:v1",
				ConfigMap: &v1alpha1.ConfigMapOutput{Name: configMapName},
			}
			change(&spec)
			expectValidated(ns, spec, message)
		},
		Entry("accepts a valid spec", func(*v1alpha1.ArtifactSpec) {}, ""),
		Entry("accepts a digest without semver", func(s *v1alpha1.ArtifactSpec) {
			s.Reference = "registry.example.com/team/app@" + digest.FromString("x").String()
		}, ""),
		Entry("rejects configMap and volume together", func(s *v1alpha1.ArtifactSpec) {
			s.Volume = &v1alpha1.VolumeOutput{ClaimName: "data"}
		}, "configMap, secret and volume are alternative outputs: set at most one"),
		Entry("rejects a scheme in the reference", func(s *v1alpha1.ArtifactSpec) {
			s.Reference = "https://registry.example.com/team/app:v1"
		}, "reference must not start with a scheme such as https://"),
		Entry("rejects whitespace in the reference", func(s *v1alpha1.ArtifactSpec) {
			s.Reference = "registry.example.com/team/app :v1"
		}, "reference must not contain whitespace"),
		Entry("rejects semver with a digest", func(s *v1alpha1.ArtifactSpec) {
			s.Reference = "registry.example.com/team/app@" + digest.FromString("x").String()
			s.SemVer = "^1.0"
		}, "semver picks a tag"),
	)
})

const (
	// waitTimeout bounds every Eventually: a sync against a local
	// registry takes well under a second, retries of 5xx a few seconds.
	waitTimeout = 30 * time.Second
	// watchTimeout is short enough that only a watch, not the Artifact's
	// long interval, can explain a reaction within it.
	watchTimeout = 15 * time.Second
	// longInterval keeps periodic syncs out of specs about watches.
	longInterval = 10 * time.Minute

	testArtifactType = "application/vnd.ocisync.test.artifact.v1"
	testConfigType   = "application/vnd.ocisync.test.config.v1+json"
	textType         = "text/plain"
	jsonType         = "application/json"
	binType          = "application/octet-stream"

	artifactName  = "art"
	configMapName = "out"
)

var bg = context.Background()

// layer is one layer to push; an empty title leaves the title annotation
// out.
type layer struct {
	title, mediaType string
	data             []byte
}

// newNamespace creates a namespace for one spec. envtest runs no namespace
// controller, so namespaces are left behind; their Artifacts are deleted
// by createArtifact's cleanup.
func newNamespace() string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "art-"}}
	Expect(k8sClient.Create(bg, ns)).To(Succeed())
	return ns.Name
}

// repoFor names the repository of a spec after its namespace, so that the
// proxy's counts and faults concern that spec only.
func repoFor(ns string) string { return "test/" + ns }

func every(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }

// baseSpec syncs repo:tag through the proxy into configMapName every
// second.
func baseSpec(repo, tag string) v1alpha1.ArtifactSpec {
	return v1alpha1.ArtifactSpec{
		Reference: proxy.Ref(repo, tag),
		PlainHTTP: true,
		Interval:  every(time.Second),
		ConfigMap: &v1alpha1.ConfigMapOutput{Name: configMapName},
	}
}

// createArtifact creates an Artifact, deleted again when the spec ends so
// that it stops polling.
func createArtifact(ns string, spec v1alpha1.ArtifactSpec) *v1alpha1.Artifact {
	GinkgoHelper()
	a := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: artifactName}, Spec: spec}
	Expect(k8sClient.Create(bg, a)).To(Succeed())
	DeferCleanup(func() {
		Expect(client.IgnoreNotFound(k8sClient.Delete(bg, a))).To(Succeed())
	})
	return a
}

// updateSpec changes the Artifact's spec, retrying on conflicts with the
// controller's status writes.
func updateSpec(ns string, change func(*v1alpha1.ArtifactSpec)) {
	GinkgoHelper()
	Eventually(func() error {
		a := getArtifact(ns)
		change(&a.Spec)
		return k8sClient.Update(bg, a)
	}).Should(Succeed())
}

func getArtifact(ns string) *v1alpha1.Artifact {
	GinkgoHelper()
	a := &v1alpha1.Artifact{}
	Expect(k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: artifactName}, a)).To(Succeed())
	return a
}

// getConfigMap returns the named ConfigMap, or nil when it does not exist.
func getConfigMap(ns, name string) *corev1.ConfigMap {
	GinkgoHelper()
	cm := &corev1.ConfigMap{}
	err := k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: name}, cm)
	if apierrors.IsNotFound(err) {
		return nil
	}
	Expect(err).NotTo(HaveOccurred())
	return cm
}

// waitReady waits until the Artifact is Ready for its current generation
// with the manifest dgst published, and returns it.
func waitReady(ns string, dgst digest.Digest) *v1alpha1.Artifact {
	GinkgoHelper()
	return waitReadyWithin(ns, dgst, waitTimeout)
}

func waitReadyWithin(ns string, dgst digest.Digest, timeout time.Duration) *v1alpha1.Artifact {
	GinkgoHelper()
	var a *v1alpha1.Artifact
	Eventually(func(g Gomega) {
		a = &v1alpha1.Artifact{}
		g.Expect(k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: artifactName}, a)).To(Succeed())
		ready := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil(), "Ready condition; status: %+v", a.Status)
		g.Expect(*ready).To(And(
			HaveField("Status", metav1.ConditionTrue),
			HaveField("Reason", v1alpha1.ReasonSucceeded),
		), "Ready condition")
		g.Expect(a.Status.ObservedGeneration).To(Equal(a.Generation), "observedGeneration")
		g.Expect(a.Status.Digest).To(Equal(dgst.String()), "status.digest")
	}).WithTimeout(timeout).Should(Succeed())
	// Reconciling and Stalled are present only while true.
	Expect(a.Status.Conditions).To(ConsistOf(HaveField("Type", v1alpha1.ConditionReady)),
		"a Ready Artifact has no other condition")
	return a
}

// waitFailed waits until the Artifact reports Ready=False with reason for
// its current generation, checks Stalled (present and True exactly when
// stall) and returns the Artifact.
func waitFailed(ns, reason string, stall bool) *v1alpha1.Artifact {
	GinkgoHelper()
	return waitFailedWithin(ns, reason, stall, waitTimeout)
}

func waitFailedWithin(ns, reason string, stall bool, timeout time.Duration) *v1alpha1.Artifact {
	GinkgoHelper()
	var a *v1alpha1.Artifact
	Eventually(func(g Gomega) {
		a = &v1alpha1.Artifact{}
		g.Expect(k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: artifactName}, a)).To(Succeed())
		ready := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil(), "Ready condition; status: %+v", a.Status)
		g.Expect(*ready).To(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", reason),
			HaveField("Message", Not(BeEmpty())),
		), "Ready condition")
		g.Expect(a.Status.ObservedGeneration).To(Equal(a.Generation), "observedGeneration")
	}).WithTimeout(timeout).Should(Succeed())
	stalled := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionStalled)
	if stall {
		Expect(stalled).NotTo(BeNil(), "a %s failure stalls the Artifact; conditions: %+v", reason, a.Status.Conditions)
		Expect(*stalled).To(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", reason)))
	} else {
		Expect(stalled).To(BeNil(), "a %s failure is retried, not stalled", reason)
	}
	return a
}

// readyMessage returns the message of the Ready condition.
func readyMessage(a *v1alpha1.Artifact) string {
	if c := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Message
	}
	return ""
}

// artifactEvents lists the events.k8s.io/v1 Events about the Artifact.
func artifactEvents(ns string) []eventsv1.Event {
	GinkgoHelper()
	return eventsAbout(ns, artifactName)
}

// eventsAbout lists the events.k8s.io/v1 Events about Artifact ns/name.
func eventsAbout(ns, name string) []eventsv1.Event {
	GinkgoHelper()
	var list eventsv1.EventList
	Expect(k8sClient.List(bg, &list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "Artifact" && e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// expectEvent waits for an Event about the Artifact of type typ with reason
// whose note contains every one of notes.
func expectEvent(ns, typ, reason string, notes ...string) {
	GinkgoHelper()
	Eventually(func() []eventsv1.Event { return artifactEvents(ns) }).Should(ContainElement(And(
		HaveField("Type", typ),
		HaveField("Reason", reason),
		HaveField("Note", And(gatherSubstrings(notes)...)),
	)), "a %s event %s mentioning %q", typ, reason, notes)
}

func gatherSubstrings(subs []string) []gomegatypes.GomegaMatcher {
	ms := []gomegatypes.GomegaMatcher{Not(BeEmpty())}
	for _, s := range subs {
		ms = append(ms, ContainSubstring(s))
	}
	return ms
}

// expectPublishedOnce checks that exactly one Normal Published event was
// recorded for each of digests, and no other. The events library folds a
// repeated event into a series on the first one, so a repeat shows as a
// series count rather than a second Event.
func expectPublishedOnce(ns string, digests ...digest.Digest) {
	GinkgoHelper()
	published := func() []eventsv1.Event {
		var out []eventsv1.Event
		for _, e := range artifactEvents(ns) {
			if e.Reason == "Published" {
				out = append(out, e)
			}
		}
		return out
	}
	var want []any
	for _, d := range digests {
		want = append(want, And(
			HaveField("Type", corev1.EventTypeNormal),
			HaveField("Note", ContainSubstring(d.String())),
		))
	}
	Eventually(published).Should(ConsistOf(want...), "one Published event per digest")
	// A repeat is recorded asynchronously: give it time to show.
	Consistently(published).WithTimeout(time.Second).Should(HaveEach(HaveField("Series", BeNil())),
		"a digest was announced as Published more than once")
}

// syncWithOlderStatus starts an unforced sync of a, a published
// Artifact, with another status.digest than the one published: what a
// sync sees when its Artifact comes from a cache that has not caught up
// with the status of the sync that wrote the output. It waits until the
// sync recorded the published digest again.
func syncWithOlderStatus(ns string, a *v1alpha1.Artifact) {
	GinkgoHelper()
	By("syncing with a status that does not show the publication yet")
	published := a.Status.Digest
	a = a.DeepCopy()
	a.Status.Digest = digest.FromString("published before").String()
	Expect(k8sClient.Status().Update(bg, a)).To(Succeed())
	// Any annotation starts a sync; the reconcile-request one would force
	// it, and a forced sync writes whatever it finds.
	poke := client.MergeFrom(a.DeepCopy())
	a.Annotations = maps.Clone(a.Annotations)
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	a.Annotations["test.ocisync.io/poke"] = "1"
	Expect(k8sClient.Patch(bg, a, poke)).To(Succeed())
	Eventually(func() string { return getArtifact(ns).Status.Digest }).Should(Equal(published))
}

// newPushClient returns an OCI client for pushing test content.
func newPushClient(opts oci.Options) *oci.Client {
	GinkgoHelper()
	c, err := oci.NewClient(opts)
	Expect(err).NotTo(HaveOccurred())
	return c
}

func plainPusher() *oci.Client {
	return newPushClient(oci.Options{PlainHTTP: true})
}

func privatePusher() *oci.Client {
	return newPushClient(oci.Options{
		Transport:   transport.Options{CAFile: privateRegistry.CAFile},
		Credentials: auth.StaticCredential(privateRegistry.Host, auth.Credential{Username: privateUser, Password: privatePassword}),
	})
}

func repository(c *oci.Client, host, repo string) *oci.Repository {
	GinkgoHelper()
	ref, err := reference.Parse(host + "/" + repo)
	Expect(err).NotTo(HaveOccurred())
	return c.Repository(ref)
}

// pushArtifact pushes layers as one image-spec manifest tagged tag and
// returns the manifest's descriptor and the manifest. A non-empty
// artifactType makes a v1.1 artifact (empty config); otherwise the config
// has testConfigType.
func pushArtifact(c *oci.Client, host, repo, tag, artifactType string, layers ...layer) (ocispec.Descriptor, ocispec.Manifest) {
	GinkgoHelper()
	r := repository(c, host, repo)
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Layers:       []ocispec.Descriptor{},
	}
	config := []byte("{}")
	if artifactType != "" {
		m.Config = ocispec.DescriptorEmptyJSON
		m.Config.Data = nil
	} else {
		m.Config = ocispec.Descriptor{MediaType: testConfigType, Digest: digest.FromBytes(config), Size: int64(len(config))}
	}
	Expect(r.PushBlob(bg, m.Config, bytes.NewReader(config))).To(Succeed(), "push the config blob")
	for _, l := range layers {
		d := ocispec.Descriptor{MediaType: l.mediaType, Digest: digest.FromBytes(l.data), Size: int64(len(l.data))}
		if l.title != "" {
			d.Annotations = map[string]string{ocispec.AnnotationTitle: l.title}
		}
		Expect(r.PushBlob(bg, d, bytes.NewReader(l.data))).To(Succeed(), "push layer %q", l.title)
		m.Layers = append(m.Layers, d)
	}
	data, err := json.Marshal(m)
	Expect(err).NotTo(HaveOccurred())
	desc, err := r.PushManifest(bg, tag, m.MediaType, data)
	Expect(err).NotTo(HaveOccurred(), "push the manifest as %s", tag)
	return desc, m
}

// pushPlain pushes to the plain registry, which specs reach through proxy.
func pushPlain(repo, tag string, layers ...layer) (ocispec.Descriptor, ocispec.Manifest) {
	GinkgoHelper()
	return pushArtifact(plainPusher(), plainRegistry.Host, repo, tag, testArtifactType, layers...)
}

// textLayer is a titled text/plain layer.
func textLayer(title, text string) layer {
	return layer{title: title, mediaType: textType, data: []byte(text)}
}

// expectPublished checks the Artifact's status and its ConfigMap against
// the manifest m (descriptor desc) pushed as host/repo:tag (tag is "" for a
// reference by digest alone), where want are the layers that must have
// been published.
func expectPublished(ns, host, repo, tag string, desc ocispec.Descriptor, m ocispec.Manifest, want []ocispec.Descriptor, contents map[string][]byte) (*v1alpha1.Artifact, *corev1.ConfigMap) {
	GinkgoHelper()
	a := waitReady(ns, desc.Digest)
	st := a.Status
	Expect(st.ShortDigest).To(Equal(desc.Digest.Encoded()[:12]), "status.shortDigest")
	wantRef := host + "/" + repo + ":" + tag + "@" + desc.Digest.String()
	if tag == "" {
		wantRef = host + "/" + repo + "@" + desc.Digest.String()
	}
	Expect(st.ResolvedReference).To(Equal(wantRef), "status.resolvedReference")
	Expect(st.Tag).To(Equal(tag), "status.tag")
	wantType := m.ArtifactType
	if wantType == "" {
		wantType = m.Config.MediaType
	}
	Expect(st.ArtifactType).To(Equal(wantType), "status.artifactType")
	Expect(st.LastSyncTime).NotTo(BeNil(), "status.lastSyncTime")
	var files []any
	var size int64
	for _, l := range want {
		files = append(files, v1alpha1.ArtifactFile{
			Name: l.Annotations[ocispec.AnnotationTitle], MediaType: l.MediaType, Digest: l.Digest.String(), Size: l.Size,
		})
		size += l.Size
	}
	Expect(st.Files).To(ConsistOf(files...), "status.files")
	Expect(st.Size).To(Equal(size), "status.size")

	cm := getConfigMap(ns, configMapName)
	Expect(cm).NotTo(BeNil(), "ConfigMap %s/%s", ns, configMapName)
	expectConfigMapHolds(cm, contents)
	Expect(cm.Labels).To(HaveKeyWithValue(v1alpha1.LabelArtifactName, artifactName))
	Expect(cm.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationDigest, desc.Digest.String()))
	expectControlledBy(cm, a)
	return a, cm
}

// expectConfigMapHolds checks that the ConfigMap holds exactly contents:
// valid UTF-8 in data, anything else in binaryData.
func expectConfigMapHolds(cm *corev1.ConfigMap, contents map[string][]byte) {
	GinkgoHelper()
	wantData, wantBinary := map[string]string{}, map[string][]byte{}
	for name, b := range contents {
		if utf8.Valid(b) {
			wantData[name] = string(b)
		} else {
			wantBinary[name] = b
		}
	}
	if len(wantData) == 0 {
		Expect(cm.Data).To(BeEmpty(), "ConfigMap data")
	} else {
		Expect(cm.Data).To(Equal(wantData), "ConfigMap data")
	}
	if len(wantBinary) == 0 {
		Expect(cm.BinaryData).To(BeEmpty(), "ConfigMap binaryData")
	} else {
		Expect(cm.BinaryData).To(Equal(wantBinary), "ConfigMap binaryData")
	}
}

// expectControlledBy checks the ConfigMap's controller reference to a.
func expectControlledBy(cm *corev1.ConfigMap, a *v1alpha1.Artifact) {
	GinkgoHelper()
	Expect(cm.OwnerReferences).To(HaveLen(1), "owner references of the ConfigMap")
	ref := cm.OwnerReferences[0]
	Expect(ref.APIVersion).To(Equal(v1alpha1.GroupVersion.String()))
	Expect(ref.Kind).To(Equal("Artifact"))
	Expect(ref.Name).To(Equal(a.Name))
	Expect(ref.UID).To(Equal(a.UID))
	Expect(ref.Controller).To(HaveValue(BeTrue()), "controller")
	Expect(ref.BlockOwnerDeletion).To(HaveValue(BeTrue()), "blockOwnerDeletion")
}

// layersOf returns the layers of m whose title is in titles.
func layersOf(m ocispec.Manifest, titles ...string) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, l := range m.Layers {
		if slices.Contains(titles, l.Annotations[ocispec.AnnotationTitle]) {
			out = append(out, l)
		}
	}
	return out
}

// dockerConfigJSONSecret holds user:password for host, as `kubectl create
// secret docker-registry` makes it.
func dockerConfigJSONSecret(ns, name, host, user, password string) *corev1.Secret {
	data, err := json.Marshal(map[string]any{"auths": map[string]any{host: dockerAuth(user, password)}})
	Expect(err).NotTo(HaveOccurred())
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
}

// dockercfgSecret is the legacy form: the auths map at the top level.
func dockercfgSecret(ns, name, host, user, password string) *corev1.Secret {
	data, err := json.Marshal(map[string]any{host: dockerAuth(user, password)})
	Expect(err).NotTo(HaveOccurred())
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeDockercfg,
		Data:       map[string][]byte{corev1.DockerConfigKey: data},
	}
}

func dockerAuth(user, password string) map[string]string {
	return map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
}

// caSecret holds the private registry's CA as ca.crt.
func caSecret(ns, name string) *corev1.Secret {
	GinkgoHelper()
	pem, err := os.ReadFile(privateRegistry.CAFile)
	Expect(err).NotTo(HaveOccurred())
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{"ca.crt": pem},
	}
}

// artifactMessages are the messages of a's conditions and the notes of
// the Events about it.
func artifactMessages(a *v1alpha1.Artifact) []string {
	var texts []string
	for _, c := range a.Status.Conditions {
		texts = append(texts, c.Message)
	}
	for _, e := range eventsAbout(a.Namespace, a.Name) {
		texts = append(texts, e.Note)
	}
	return texts
}

// expectNoSecretIn fails when any text of the Artifact's status or events
// carries the password, alone or in a basic auth encoding.
func expectNoSecretIn(ns, password, user string) {
	GinkgoHelper()
	texts := artifactMessages(getArtifact(ns))
	encoded := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	for _, t := range texts {
		Expect(t).NotTo(Or(ContainSubstring(password), ContainSubstring(encoded)), "a message reveals the password")
	}
	Expect(strings.Join(texts, "\n")).NotTo(BeEmpty(), "there were messages to check")
}

// expectValidated creates an Artifact of spec in ns: the API server
// accepts it when message is empty (and it is deleted again), or refuses
// it as Invalid with message.
func expectValidated(ns string, spec v1alpha1.ArtifactSpec, message string) {
	GinkgoHelper()
	a := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "cel-"}, Spec: spec}
	err := k8sClient.Create(bg, a)
	if message == "" {
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(bg, a)).To(Succeed())
		return
	}
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid error, got %v", err)
	Expect(err.Error()).To(ContainSubstring(message))
}
