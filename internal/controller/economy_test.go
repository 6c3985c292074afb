package controller

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// The registry requests an Artifact costs, counted by the proxy: what
// issue 6 promises is at most two requests on a first sync besides the
// blob downloads, and one HEAD per interval afterwards, with no API write.
// An Artifact never resolved before takes one: the GET of the manifest
// by tag gives its digest too.
var _ = Describe("Request economy", func() {
	const artifacts = 4
	var ns string
	var repos []string
	BeforeEach(func() {
		ns = newNamespace()
		repos = repos[:0]
		for i := range artifacts {
			repos = append(repos, fmt.Sprintf("%s-%d", repoFor(ns), i))
		}
	})

	It("costs a first sync one registry request plus its layers, and then one HEAD per interval and no API write", func() {
		var layers int
		for i, repo := range repos {
			_, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"), textLayer("b.txt", fmt.Sprintf("b%d\n", i)))
			layers = len(m.Layers)
		}
		// Nothing but this spec's Artifacts may ask the registry for /v2/
		// meanwhile; Ginkgo runs the suite's specs one at a time.
		pingsBefore := proxy.Counts("")

		By("syncing each Artifact for the first time")
		for i, repo := range repos {
			spec := baseSpec(repo, "v1")
			spec.Interval = every(time.Hour) // one sync only, until the interval is shortened below
			spec.ConfigMap = &v1alpha1.ConfigMapOutput{Name: fmt.Sprintf("out-%d", i)}
			createNamedArtifact(ns, fmt.Sprintf("art-%d", i), spec)
		}
		for i := range repos {
			waitNamedReady(ns, fmt.Sprintf("art-%d", i))
		}
		for _, repo := range repos {
			counts := proxy.Counts(repo)
			Expect(counts).To(HaveKeyWithValue(requestKey{repo, "GET", "manifests"}, 1), "one GET of the tag fetches the manifest and its digest; requests: %v", counts)
			Expect(counts).To(HaveKeyWithValue(requestKey{repo, "GET", "blobs"}, BeNumerically("<=", layers)), "each layer is downloaded at most once; requests: %v", counts)
			Expect(counts).To(HaveLen(2), "nothing else: no HEAD, no config blob, no tag list; requests: %v", counts)
		}
		Expect(countsSince(pingsBefore, proxy.Counts(""))).To(BeEmpty(), "no /v2/ ping, or any request outside the repositories")

		By("polling every second once the interval is shortened")
		for i := range repos {
			name := fmt.Sprintf("art-%d", i)
			Eventually(func() error {
				a := getNamedArtifact(ns, name)
				a.Spec.Interval = every(time.Second)
				return k8sClient.Update(bg, a)
			}).Should(Succeed())
		}
		versions := map[string]string{}
		for i := range repos {
			a := waitNamedReady(ns, fmt.Sprintf("art-%d", i))
			versions["Artifact "+a.Name] = a.ResourceVersion
			cm := &corev1.ConfigMap{}
			Expect(k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("out-%d", i)}, cm)).To(Succeed())
			versions["ConfigMap "+cm.Name] = cm.ResourceVersion
		}
		before := map[string]map[requestKey]int{}
		for _, repo := range repos {
			before[repo] = proxy.Counts(repo)
		}
		unchanged := func() float64 {
			return metricValue("ocisync_artifact_syncs_total", "result", "unchanged", "reason", v1alpha1.ReasonSucceeded)
		}
		syncsBefore := unchanged()

		// Each sync that finds the digest unchanged costs one HEAD: the
		// HEADs since the snapshot equal the syncs since, give or take
		// the syncs that were between their HEAD and their end at the
		// snapshot. Two requests a sync would leave twice as many.
		Eventually(func(g Gomega) {
			heads := 0
			for _, repo := range repos {
				delta := countsSince(before[repo], proxy.Counts(repo))
				g.Expect(delta).To(HaveKeyWithValue(requestKey{repo, "HEAD", "manifests"}, BeNumerically(">=", 2)), "each Artifact polled; requests: %v", delta)
				heads += delta[requestKey{repo, "HEAD", "manifests"}]
			}
			syncs := int(unchanged() - syncsBefore)
			g.Expect(syncs).To(BeNumerically(">=", 3*artifacts), "unchanged syncs so far")
			g.Expect(heads-syncs).To(And(BeNumerically(">=", 0), BeNumerically("<=", artifacts)),
				"%d HEADs for %d unchanged syncs: one each", heads, syncs)
		}).Should(Succeed())
		for _, repo := range repos {
			delta := countsSince(before[repo], proxy.Counts(repo))
			Expect(delta).To(HaveLen(1), "nothing but HEAD of the tag; requests: %v", delta)
		}
		for i := range repos {
			a := getNamedArtifact(ns, fmt.Sprintf("art-%d", i))
			Expect(a.ResourceVersion).To(Equal(versions["Artifact "+a.Name]), "the Artifact was written: %+v", a.Status)
			cm := &corev1.ConfigMap{}
			Expect(k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("out-%d", i)}, cm)).To(Succeed())
			Expect(cm.ResourceVersion).To(Equal(versions["ConfigMap "+cm.Name]), "the ConfigMap was written")
		}
	})

	It("writes a quickly synced new Artifact's status once", func() {
		pushPlain(repos[0], "v1", textLayer("a.txt", "a\n"))
		var list v1alpha1.ArtifactList
		Expect(k8sClient.List(bg, &list, client.InNamespace(ns))).To(Succeed())
		w, err := k8sWatch.Watch(bg, &v1alpha1.ArtifactList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(w.Stop)

		spec := baseSpec(repos[0], "v1")
		spec.Interval = every(time.Hour)
		createNamedArtifact(ns, "art-0", spec)
		waitNamedReady(ns, "art-0")
		modified := 0
		drain := func() int {
			for {
				select {
				case e := <-w.ResultChan():
					if e.Type == watch.Modified {
						modified++
					}
				default:
					return modified
				}
			}
		}
		Eventually(drain).Should(BeNumerically(">=", 1), "the status write shows in the watch")
		Consistently(drain).WithTimeout(2*time.Second).Should(Equal(1), "one status write: no separate Progressing write for a sync under %s", progressDelay)
	})

	It("runs the default number of reconciles at once", func() {
		Expect(metricValue("controller_runtime_max_concurrent_reconciles", "controller", "artifact")).To(BeEquivalentTo(DefaultConcurrentReconciles))
	})
})

// createNamedArtifact creates an Artifact called name, deleted again when
// the spec ends.
func createNamedArtifact(ns, name string, spec v1alpha1.ArtifactSpec) {
	GinkgoHelper()
	a := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	Expect(k8sClient.Create(bg, a)).To(Succeed())
	DeferCleanup(func() {
		Expect(client.IgnoreNotFound(k8sClient.Delete(bg, a))).To(Succeed())
	})
}

func getNamedArtifact(ns, name string) *v1alpha1.Artifact {
	GinkgoHelper()
	a := &v1alpha1.Artifact{}
	Expect(k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: name}, a)).To(Succeed())
	return a
}

// waitNamedReady waits until the Artifact is Ready for its generation.
func waitNamedReady(ns, name string) *v1alpha1.Artifact {
	GinkgoHelper()
	var a *v1alpha1.Artifact
	Eventually(func(g Gomega) {
		a = &v1alpha1.Artifact{}
		g.Expect(k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: name}, a)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "Ready; status: %+v", a.Status)
		g.Expect(a.Status.ObservedGeneration).To(Equal(a.Generation), "observedGeneration")
	}).Should(Succeed())
	return a
}
