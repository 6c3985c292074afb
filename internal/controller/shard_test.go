package controller

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/metrics"
	"github.com/ocisync/ocisync/internal/oci/auth"
)

// shardLabel splits the suite's Artifacts into shards: the suite's
// manager takes those without it ("!shardLabel"), the manager a spec
// starts those with shardLabel=a, and nobody those with another value.
const shardLabel = "ocisync.io/shard"

// Several managers with disjoint --watch-label-selector split a cluster:
// each reconciles, and caches, only its shard's Artifacts and outputs.
var _ = Describe("Sharding", func() {
	var ns, repo string
	var shard *shardManager
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
		shard = startShard(shardLabel + "=a")
	})

	It("reconciles only the Artifacts its selector matches, and caches nothing of the others", func() {
		desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		otherRepo := repo + "-other"
		pushPlain(otherRepo, "v1", textLayer("a.txt", "other\n"))
		withOutput := func(r, out string) v1alpha1.ArtifactSpec {
			s := baseSpec(r, "v1")
			s.Interval = every(time.Second) // plenty of chances to touch what it must not
			s.ConfigMap = &v1alpha1.ConfigMapOutput{Name: out}
			return s
		}
		// Another shard's Artifact in the same namespace: the cache must
		// tell them apart by labels, not by namespace.
		other := createLabelledArtifact(ns, "other", map[string]string{shardLabel: "b"}, withOutput(otherRepo, "out-other"))
		createLabelledArtifact(ns, "mine", map[string]string{shardLabel: "a", "team": "x"}, withOutput(repo, "out-mine"))
		// The suite manager's shard.
		createLabelledArtifact(ns, "unsharded", nil, withOutput(repo, "out-unsharded"))

		mine := waitNamedReady(ns, "mine")
		Expect(mine.Status.Digest).To(Equal(desc.Digest.String()))
		out := getConfigMap(ns, "out-mine")
		Expect(out).NotTo(BeNil())
		Expect(out.Labels).To(Equal(map[string]string{v1alpha1.LabelArtifactName: "mine", shardLabel: "a"}),
			"the output carries the label the selector names, and no other of the Artifact's")
		waitNamedReady(ns, "unsharded")
		Expect(getConfigMap(ns, "out-unsharded").Labels).To(Equal(map[string]string{v1alpha1.LabelArtifactName: "unsharded"}))

		By("leaving the other shard's Artifact untouched")
		Consistently(func(g Gomega) {
			a := getNamedArtifact(ns, "other")
			g.Expect(a.ResourceVersion).To(Equal(other.ResourceVersion), "Artifact other was written: %+v", a.Status)
			g.Expect(a.Status.Conditions).To(BeEmpty())
			g.Expect(a.Status.Digest).To(BeEmpty())
			g.Expect(getConfigMap(ns, "out-other")).To(BeNil())
		}).WithTimeout(3 * time.Second).Should(Succeed())
		Expect(eventsAbout(ns, "other")).To(BeEmpty())
		Expect(proxy.Counts(otherRepo)).To(BeEmpty(), "its registry was asked")
		for key := range shard.requests.since(nil, ns) {
			Expect(key.name).NotTo(BeElementOf("other", "out-other"), "the shard's manager sent %+v", key)
		}

		By("caching only its own shard's Artifacts and outputs")
		Eventually(func() error {
			return shard.cache.Get(bg, types.NamespacedName{Namespace: ns, Name: "out-mine"}, &corev1.ConfigMap{})
		}).Should(Succeed(), "the shard's cache holds its output")
		Eventually(func() error {
			return mgrCache.Get(bg, types.NamespacedName{Namespace: ns, Name: "out-unsharded"}, &corev1.ConfigMap{})
		}).Should(Succeed(), "the suite manager's cache holds its output")
		var artifacts v1alpha1.ArtifactList
		Expect(shard.cache.List(bg, &artifacts)).To(Succeed())
		Expect(artifacts.Items).To(HaveEach(HaveField("Labels", HaveKeyWithValue(shardLabel, "a"))), "the shard's cache holds another shard's Artifact")
		Expect(shard.cache.List(bg, &artifacts, client.InNamespace(ns))).To(Succeed())
		Expect(names(ptrs(artifacts.Items))).To(ConsistOf("mine"))
		var configMaps corev1.ConfigMapList
		Expect(shard.cache.List(bg, &configMaps)).To(Succeed())
		Expect(configMaps.Items).To(HaveEach(HaveField("Labels", HaveKeyWithValue(shardLabel, "a"))), "the shard's cache holds another shard's ConfigMap")
		Expect(shard.cache.List(bg, &configMaps, client.InNamespace(ns))).To(Succeed())
		Expect(names(ptrs(configMaps.Items))).To(ConsistOf("out-mine"))
		Expect(mgrCache.List(bg, &artifacts, client.InNamespace(ns))).To(Succeed())
		Expect(names(ptrs(artifacts.Items))).To(ConsistOf("unsharded"), "the suite manager's cache")
		Expect(mgrCache.List(bg, &configMaps, client.InNamespace(ns))).To(Succeed())
		Expect(names(ptrs(configMaps.Items))).To(ConsistOf("out-unsharded"), "the suite manager's cache")
	})

	It("takes over an Artifact relabelled into its shard, and relabels its output without downloading it again", func() {
		desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		spec := baseSpec(repo, "v1")
		spec.Interval = every(longInterval) // a reaction within watchTimeout is the relabelling's
		createArtifact(ns, spec)
		_, cm := expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, map[string][]byte{"a.txt": []byte("a\n")})
		Expect(cm.Labels).NotTo(HaveKey(shardLabel))
		key := types.NamespacedName{Namespace: ns, Name: configMapName}
		Eventually(func() error { return mgrCache.Get(bg, key, &corev1.ConfigMap{}) }).Should(Succeed())
		Expect(apierrors.IsNotFound(shard.cache.Get(bg, key, &corev1.ConfigMap{}))).To(BeTrue(), "the shard's cache holds the suite manager's output")
		before := proxy.Counts(repo)

		By("moving the Artifact into the shard")
		setArtifactLabel(ns, artifactName, shardLabel, "a")
		Eventually(func() map[string]string { return getConfigMap(ns, configMapName).Labels }).WithTimeout(watchTimeout).
			Should(HaveKeyWithValue(shardLabel, "a"), "the new shard relabels the output")
		now := getConfigMap(ns, configMapName)
		Expect(now.Data).To(Equal(cm.Data))
		Expect(now.Annotations).To(Equal(cm.Annotations))
		Expect(countsSince(before, proxy.Counts(repo))).To(Equal(map[requestKey]int{{repo, http.MethodHead, "manifests"}: 1}),
			"one HEAD to find the digest unchanged, no download")
		Eventually(func() error { return shard.cache.Get(bg, key, &corev1.ConfigMap{}) }).Should(Succeed(), "the shard's cache holds the output now")
		Eventually(func() bool { return apierrors.IsNotFound(mgrCache.Get(bg, key, &corev1.ConfigMap{})) }).Should(BeTrue(),
			"the suite manager's cache lets go of the output")
		Eventually(func() bool {
			return apierrors.IsNotFound(mgrCache.Get(bg, types.NamespacedName{Namespace: ns, Name: artifactName}, &v1alpha1.Artifact{}))
		}).Should(BeTrue(), "the suite manager's cache lets go of the Artifact")
		waitReady(ns, desc.Digest)
		expectPublishedOnce(ns, desc.Digest)

		By("watching the output from the new shard")
		edited := now.DeepCopy()
		edited.Data["a.txt"] = "edited\n"
		Expect(k8sClient.Update(bg, edited)).To(Succeed())
		Eventually(func() map[string]string { return getConfigMap(ns, configMapName).Data }).
			WithTimeout(watchTimeout).Should(Equal(cm.Data), "drift is restored by the shard's manager")

		By("moving it back out, to the shard of the Artifacts without the label")
		setArtifactLabel(ns, artifactName, shardLabel, "")
		Eventually(func() map[string]string { return getConfigMap(ns, configMapName).Labels }).WithTimeout(watchTimeout).
			ShouldNot(HaveKey(shardLabel), "the suite's manager takes the label off the output")
		Eventually(func() error { return mgrCache.Get(bg, key, &corev1.ConfigMap{}) }).Should(Succeed(), "the suite manager's cache holds the output again")
		Eventually(func() bool { return apierrors.IsNotFound(shard.cache.Get(bg, key, &corev1.ConfigMap{})) }).Should(BeTrue(),
			"the shard's cache lets go of the output")
	})

	It("takes over the sync Job of an Artifact relabelled into its shard rather than starting another", func() {
		desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		createClaim(ns, "data")
		spec := volumeSpec(repo, "v1", "data")
		spec.Interval = every(longInterval)
		createArtifact(ns, spec)
		job := waitJob(ns, desc.Digest)
		Expect(job.Labels).NotTo(HaveKey(shardLabel))

		By("moving the Artifact into the shard while its Job runs")
		setArtifactLabel(ns, artifactName, shardLabel, "a")
		Eventually(func(g Gomega) map[string]string {
			j := &batchv1.Job{}
			g.Expect(k8sClient.Get(bg, client.ObjectKeyFromObject(job), j)).To(Succeed())
			return j.Labels
		}).WithTimeout(watchTimeout).Should(HaveKeyWithValue(shardLabel, "a"), "the new shard relabels the Job")
		Eventually(func() error { return shard.cache.Get(bg, client.ObjectKeyFromObject(job), &batchv1.Job{}) }).Should(Succeed(),
			"the shard's cache holds the Job now")

		By("completing the Job: its progress reaches the new shard")
		completeJob(job)
		a := waitReadyWithin(ns, desc.Digest, watchTimeout)
		Expect(a.Status.Volume).To(HaveValue(HaveField("LiveDigest", desc.Digest.String())))
		Expect(jobNames(ns)).To(Equal([]string{job.Name}), "no second Job was made")
	})
})

// shardManager is a manager a spec runs next to the suite's, for one
// shard.
type shardManager struct {
	cache    cache.Cache
	requests *apiRequests
}

// startShard starts a manager with its own reconciler for the Artifacts
// selector matches, stopped when the spec ends.
func startShard(selector string) *shardManager {
	GinkgoHelper()
	sel, err := labels.Parse(selector)
	Expect(err).NotTo(HaveOccurred())
	scope := Scope{Selector: sel}
	requests := &apiRequests{counts: map[apiRequest]int{}}
	cfg := rest.CopyConfig(apiConfig)
	cfg.Wrap(requests.wrap)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  CacheOptions(scope),
		Client:                 ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The suite's manager runs a controller of the same name.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		// Its lines tell themselves apart from the suite manager's.
		Logger: ctrl.Log.WithName("shard").WithValues("selector", selector),
	})
	Expect(err).NotTo(HaveOccurred())
	recorder, err := NewEventRecorder(mgr)
	Expect(err).NotTo(HaveOccurred())
	r := &ArtifactReconciler{
		Client:     mgr.GetClient(),
		Scheme:     mgr.GetScheme(),
		Recorder:   recorder,
		TokenCache: auth.NewTokenCache(),
		APIReader:  mgr.GetAPIReader(),
		SyncImage:  syncImage,
		SyncJobTTL: syncJobTTL,
		Scope:      scope,
	}
	Expect(r.SetupWithManager(mgr)).To(Succeed())

	ctx := runManager(mgr, "the shard's manager", func() {
		// SetupWithManager pointed ocisync_artifacts at this manager.
		metrics.ReportArtifacts(mgrCache, mgrElected)
	})
	Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
	return &shardManager{cache: mgr.GetCache(), requests: requests}
}

// createLabelledArtifact creates an Artifact with labels, deleted again
// when the spec ends.
func createLabelledArtifact(ns, name string, labels map[string]string, spec v1alpha1.ArtifactSpec) *v1alpha1.Artifact {
	GinkgoHelper()
	a := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: spec}
	Expect(k8sClient.Create(bg, a)).To(Succeed())
	DeferCleanup(func() {
		Expect(client.IgnoreNotFound(k8sClient.Delete(bg, a))).To(Succeed())
	})
	return a
}

// setArtifactLabel sets the label key of an Artifact to value, or removes
// it for "", by a patch of its labels alone, as kubectl label does: an
// update of the whole object could change its spec's defaults' spelling,
// and with it its generation.
func setArtifactLabel(ns, name, key, value string) {
	GinkgoHelper()
	a := getNamedArtifact(ns, name)
	labelled := a.DeepCopy()
	if value == "" {
		delete(labelled.Labels, key)
	} else {
		if labelled.Labels == nil {
			labelled.Labels = map[string]string{}
		}
		labelled.Labels[key] = value
	}
	Expect(k8sClient.Patch(bg, labelled, client.MergeFrom(a))).To(Succeed())
	Expect(labelled.Generation).To(Equal(a.Generation), "relabelling changed the spec")
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, 0, len(items))
	for i := range items {
		out = append(out, &items[i])
	}
	return out
}
