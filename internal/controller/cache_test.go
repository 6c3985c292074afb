package controller

import (
	"errors"
	"net/http"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// What the manager keeps in memory follows the Artifacts, not the
// cluster: no Secret content, no ConfigMap it does not own, and in steady
// state no read of either from the API server.
var _ = Describe("The manager's cache", func() {
	var ns, repo string
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
	})

	// withCredentials makes spec read a pull Secret and a ServiceAccount
	// with an imagePullSecret. The plain registry asks for no
	// credentials, so they are read and never used.
	withCredentials := func(spec *v1alpha1.ArtifactSpec) {
		GinkgoHelper()
		Expect(k8sClient.Create(bg, dockerConfigJSONSecret(ns, "creds", proxy.Host, privateUser, privatePassword))).To(Succeed())
		Expect(k8sClient.Create(bg, dockerConfigJSONSecret(ns, "sa-creds", proxy.Host, privateUser, privatePassword))).To(Succeed())
		Expect(k8sClient.Create(bg, &corev1.ServiceAccount{
			ObjectMeta:       metav1.ObjectMeta{Namespace: ns, Name: "puller"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "sa-creds"}},
		})).To(Succeed())
		spec.PullSecrets = []corev1.LocalObjectReference{{Name: "creds"}}
		spec.ServiceAccountName = "puller"
	}

	It("holds Secrets and ServiceAccounts as metadata only, and no ConfigMap it does not own", func() {
		// Another tenant's objects, made before the Artifact: once the
		// cache shows the Artifact's output it would show them too, if
		// it watched them.
		other := newNamespace()
		const marker = "tenant-b-t0ken-Value"
		tenantSecret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "tenant-token",
				Labels: map[string]string{"team": "b"},
				// What kubectl apply leaves: the whole Secret again.
				Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: `{"kind":"Secret","stringData":{"token":"` + marker + `"}}`},
			},
			StringData: map[string]string{"token": marker},
		}
		Expect(k8sClient.Create(bg, tenantSecret)).To(Succeed())
		tenantConfig := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "tenant-config"}, Data: map[string]string{"k": "v"}}
		Expect(k8sClient.Create(bg, tenantConfig)).To(Succeed())
		stray := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stray"}, Data: map[string]string{"k": "v"}}
		Expect(k8sClient.Create(bg, stray)).To(Succeed())

		desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		spec := baseSpec(repo, "v1")
		spec.Interval = every(longInterval)
		withCredentials(&spec)
		createArtifact(ns, spec)
		waitReady(ns, desc.Digest)
		cached := &corev1.ConfigMap{}
		Eventually(func() error {
			return mgrCache.Get(bg, types.NamespacedName{Namespace: ns, Name: configMapName}, cached)
		}).Should(Succeed(), "the cache holds the Artifact's output")

		By("holding the output's checksum, not its content")
		Expect(cached.Data).To(BeEmpty())
		Expect(cached.BinaryData).To(BeEmpty())
		Expect(cached.Annotations).To(HaveKeyWithValue(annotationObservedChecksum, cached.Annotations[annotationChecksum]))
		live := &corev1.ConfigMap{}
		Expect(k8sClient.Get(bg, client.ObjectKeyFromObject(cached), live)).To(Succeed())
		Expect(live.Data).To(HaveKeyWithValue("a.txt", "a\n"), "the output itself keeps its content")
		Expect(live.Annotations).NotTo(HaveKey(annotationObservedChecksum), "the cache's annotation is never written")

		By("holding no ConfigMap that is not an output")
		for _, cm := range []*corev1.ConfigMap{tenantConfig, stray} {
			err := mgrCache.Get(bg, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{})
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ConfigMap %s/%s is in the cache (err %v)", cm.Namespace, cm.Name, err)
		}

		By("holding no Secret or ServiceAccount as a typed object")
		expectOnlyMetadataCached(types.NamespacedName{Namespace: ns, Name: "creds"})
		expectOnlyMetadataCached(types.NamespacedName{Namespace: other, Name: "tenant-token"})
		for _, list := range []client.ObjectList{&corev1.SecretList{}, &corev1.ServiceAccountList{}, &corev1.PersistentVolumeClaimList{}} {
			Expect(errors.As(mgrCache.List(bg, list), new(*cache.ErrResourceNotCached))).To(BeTrue(),
				"listing %T from the cache must fail: no informer of full objects", list)
		}
		Expect(errors.As(mgrCache.Get(bg, types.NamespacedName{Namespace: ns, Name: "puller"}, &corev1.ServiceAccount{}), new(*cache.ErrResourceNotCached))).To(BeTrue(),
			"reading a typed ServiceAccount from the cache must fail")

		By("keeping full copies only of the Secrets and ServiceAccounts the Artifact uses")
		secrets, accounts := reconciler.refs()
		Expect(names(secrets.kept(ns))).To(ConsistOf("creds", "sa-creds"))
		Expect(names(accounts.kept(ns))).To(ConsistOf("puller"))
		Expect(secrets.kept(other)).To(BeEmpty())
		for _, s := range secrets.kept(ns) {
			Expect(s.Annotations).To(BeEmpty(), "a kept Secret holds its type and data only")
		}
	})

	It("reads no ConfigMap, Secret or ServiceAccount from the API server while nothing changes, and a rotated Secret again", func() {
		desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		spec := baseSpec(repo, "v1") // every second
		withCredentials(&spec)
		createArtifact(ns, spec)
		waitReady(ns, desc.Digest)
		// The first syncs may read what the cache did not show yet.
		Eventually(func() error {
			return mgrCache.Get(bg, types.NamespacedName{Namespace: ns, Name: configMapName}, &corev1.ConfigMap{})
		}).Should(Succeed())
		expectNoRequestsInSteadyState(ns, repo)

		By("rotating the pull Secret")
		before := managerRequests.snapshot()
		Eventually(func() error {
			s := &corev1.Secret{}
			if err := k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: "creds"}, s); err != nil {
				return err
			}
			s.Data = dockerConfigJSONSecret(ns, "creds", proxy.Host, privateUser, "r0tated-Pa55").Data
			return k8sClient.Update(bg, s)
		}).Should(Succeed())
		Eventually(func() map[apiRequest]int { return managerRequests.since(before, ns) }).
			Should(HaveKeyWithValue(apiRequest{verb: "get", resource: "secrets", namespace: ns, name: "creds"}, BeNumerically(">=", 1)),
				"the rotated Secret is read again")
		Expect(managerRequests.since(before, ns)).NotTo(HaveKey(apiRequest{verb: "get", resource: "secrets", namespace: ns, name: "sa-creds"}),
			"a Secret that did not change is not read again")
	})

	Context("with an output written before ocisync labelled its ConfigMaps", func() {
		It("adopts an unlabelled ConfigMap it owns and labels it on the next sync", func() {
			desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			spec := baseSpec(repo, "v1")
			spec.Suspend = true // until the older output is in place
			spec.Interval = every(longInterval)
			a := createArtifact(ns, spec)
			older := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: configMapName},
				Data:       map[string]string{"a.txt": "older\n"},
			}
			Expect(controllerutil.SetControllerReference(a, older, scheme)).To(Succeed())
			Expect(k8sClient.Create(bg, older)).To(Succeed())

			updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Suspend = false })
			_, cm := expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"a.txt": []byte("a\n")})
			Expect(cm.UID).To(Equal(older.UID), "the ConfigMap was updated in place")

			By("watching it from then on")
			edited := cm.DeepCopy()
			edited.Data["a.txt"] = "edited\n"
			Expect(k8sClient.Update(bg, edited)).To(Succeed())
			Eventually(func() map[string]string { return getConfigMap(ns, configMapName).Data }).
				WithTimeout(watchTimeout).Should(Equal(cm.Data), "drift is restored")
		})

		It("labels an intact output that has no label without downloading it again", func() {
			desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			spec := baseSpec(repo, "v1")
			spec.Interval = every(longInterval)
			createArtifact(ns, spec)
			_, cm := expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"a.txt": []byte("a\n")})
			before := proxy.Counts(repo)

			unlabelled := cm.DeepCopy()
			delete(unlabelled.Labels, v1alpha1.LabelArtifactName)
			Expect(k8sClient.Update(bg, unlabelled)).To(Succeed())
			Eventually(func() map[string]string { return getConfigMap(ns, configMapName).Labels }).WithTimeout(watchTimeout).
				Should(HaveKeyWithValue(v1alpha1.LabelArtifactName, artifactName), "the label is back")
			now := getConfigMap(ns, configMapName)
			Expect(now.Data).To(Equal(cm.Data))
			Expect(now.Annotations).To(Equal(cm.Annotations))
			Expect(countsSince(before, proxy.Counts(repo))).To(Equal(map[requestKey]int{{repo, http.MethodHead, "manifests"}: 1}),
				"one HEAD to find the digest unchanged, no download")
			expectPublishedOnce(ns, desc.Digest)
		})
	})
})

// expectOnlyMetadataCached checks that the manager's cache holds the
// Secret key names as trimmed metadata, and cannot read it as a Secret.
func expectOnlyMetadataCached(key types.NamespacedName) {
	GinkgoHelper()
	err := mgrCache.Get(bg, key, &corev1.Secret{})
	Expect(errors.As(err, new(*cache.ErrResourceNotCached))).To(BeTrue(),
		"reading Secret %s as a typed object from the cache must fail, not start an informer of every Secret; got %v", key, err)
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	Eventually(func() error { return mgrCache.Get(bg, key, m) }).Should(Succeed(), "the metadata of Secret %s is cached", key)
	Expect(m.ResourceVersion).NotTo(BeEmpty())
	Expect(m.Annotations).To(BeEmpty(), "annotations can hold a Secret's content")
	Expect(m.Labels).To(BeEmpty())
	Expect(m.ManagedFields).To(BeEmpty())
}

func names[T client.Object](objs []T) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.GetName())
	}
	return out
}

// apiRequest is one kind of request to the API server: verb is get, list,
// watch, create, update, patch or delete; name is empty for collections.
type apiRequest struct {
	verb, resource, namespace, name string
}

// apiRequests counts the requests the manager sends the API server.
type apiRequests struct {
	mu     sync.Mutex
	counts map[apiRequest]int
}

var managerRequests = &apiRequests{counts: map[apiRequest]int{}}

func (a *apiRequests) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		r := parseAPIRequest(req)
		a.mu.Lock()
		a.counts[r]++
		a.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

func (a *apiRequests) snapshot() map[apiRequest]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[apiRequest]int, len(a.counts))
	for k, n := range a.counts {
		out[k] = n
	}
	return out
}

// since returns the requests about namespace made since an earlier
// snapshot.
func (a *apiRequests) since(before map[apiRequest]int, namespace string) map[apiRequest]int {
	out := map[apiRequest]int{}
	for k, n := range a.snapshot() {
		if k.namespace == namespace && n > before[k] {
			out[k] = n - before[k]
		}
	}
	return out
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// parseAPIRequest reads /api/v1/namespaces/NS/RESOURCE/NAME and
// /apis/GROUP/VERSION/... paths; a cluster-wide list or watch has no
// namespace.
func parseAPIRequest(req *http.Request) apiRequest {
	seg := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(seg) >= 2 && seg[0] == "api":
		seg = seg[2:]
	case len(seg) >= 3 && seg[0] == "apis":
		seg = seg[3:]
	default:
		return apiRequest{verb: req.Method, resource: req.URL.Path}
	}
	var r apiRequest
	if len(seg) >= 3 && seg[0] == "namespaces" {
		r.namespace, seg = seg[1], seg[2:]
	}
	if len(seg) > 0 {
		r.resource = seg[0]
	}
	if len(seg) > 1 {
		r.name = seg[1]
	}
	if len(seg) > 2 {
		r.resource += "/" + seg[2]
	}
	switch req.Method {
	case http.MethodGet:
		switch {
		case req.URL.Query().Get("watch") == "true":
			r.verb = "watch"
		case r.name != "":
			r.verb = "get"
		default:
			r.verb = "list"
		}
	case http.MethodPost:
		r.verb = "create"
	case http.MethodPut:
		r.verb = "update"
	case http.MethodPatch:
		r.verb = "patch"
	case http.MethodDelete:
		r.verb = "delete"
	default:
		r.verb = req.Method
	}
	return r
}

// expectNoRequestsInSteadyState lets the Artifacts of repo settle (two
// syncs each polls its tag with a HEAD), then expects three more syncs to
// make no API request about namespace ns. It returns the count of repo's
// manifest HEADs, to count later syncs by.
func expectNoRequestsInSteadyState(ns, repo string) (heads func() int) {
	GinkgoHelper()
	heads = func() int { return proxy.Count(repo, http.MethodHead, "manifests") }
	settled := heads()
	Eventually(heads).Should(BeNumerically(">=", settled+2), "two more syncs")
	before, headsBefore := managerRequests.snapshot(), heads()
	Eventually(heads).Should(BeNumerically(">=", headsBefore+3), "three more syncs")
	Expect(managerRequests.since(before, ns)).To(BeEmpty(), "requests of the manager about namespace %s in steady state", ns)
	return heads
}
