package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

var _ = Describe("Operating the controller", func() {
	var ns, repo string
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
	})

	Context("the reconcile.ocisync.io/requestedAt annotation", func() {
		It("downloads and publishes an unchanged digest again, once per new value", func() {
			desc, m := pushPlain(repo, "v1", textLayer("a.txt", "a\n"), textLayer("b.txt", "bb\n"))
			contents := map[string][]byte{"a.txt": []byte("a\n"), "b.txt": []byte("bb\n")}
			createArtifact(ns, baseSpec(repo, "v1")) // every second
			expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, contents)
			Expect(getArtifact(ns).Status.LastHandledReconcileAt).To(BeEmpty())
			before := proxy.Counts(repo)
			published := metricValue("ocisync_artifact_syncs_total", "result", "published", "reason", v1alpha1.ReasonSucceeded)
			pulled := metricValue("ocisync_pulled_bytes_total", "output", "configmap")

			requestSync(ns, "first")
			Eventually(func() string { return getArtifact(ns).Status.LastHandledReconcileAt }).Should(Equal("first"))
			delta := countsSince(before, proxy.Counts(repo))
			Expect(delta).To(HaveKeyWithValue(requestKey{repo, "GET", "manifests"}, 1), "the manifest is fetched again; requests: %v", delta)
			Expect(delta).To(HaveKeyWithValue(requestKey{repo, "GET", "blobs"}, len(m.Layers)), "every layer is downloaded again; requests: %v", delta)
			Expect(metricValue("ocisync_artifact_syncs_total", "result", "published", "reason", v1alpha1.ReasonSucceeded)-published).To(BeNumerically(">=", 1),
				"the forced sync counts as published")
			Expect(metricValue("ocisync_pulled_bytes_total", "output", "configmap")-pulled).To(BeNumerically(">=", 5),
				"the bytes downloaded again are counted")
			expectPublished(ns, proxy.Host, repo, "v1", desc, m, m.Layers, contents)
			// The same digest is no news.
			expectPublishedOnce(ns, desc.Digest)

			By("syncing every second without downloading while the value stays")
			handled := proxy.Counts(repo)
			Consistently(func() map[requestKey]int {
				return countsSince(handled, proxy.Counts(repo))
			}).WithTimeout(2500*time.Millisecond).WithPolling(250*time.Millisecond).ShouldNot(
				HaveKey(requestKey{repo, "GET", "blobs"}), "a handled request must not force the periodic syncs")
			Expect(countsSince(handled, proxy.Counts(repo))).To(HaveKeyWithValue(requestKey{repo, "HEAD", "manifests"}, BeNumerically(">=", 1)),
				"the periodic syncs went on")

			By("forcing again with a new value")
			handled = proxy.Counts(repo)
			requestSync(ns, "second")
			Eventually(func() string { return getArtifact(ns).Status.LastHandledReconcileAt }).Should(Equal("second"))
			Expect(countsSince(handled, proxy.Counts(repo))).To(HaveKeyWithValue(requestKey{repo, "GET", "blobs"}, len(m.Layers)))
		})

		It("keeps a volume's digest while its sync Job is kept, and runs a new Job once it is gone", func() {
			desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			createClaim(ns, "data")
			spec := volumeSpec(repo, "v1", "data")
			spec.Interval = every(longInterval)
			createArtifact(ns, spec)
			job := waitJob(ns, desc.Digest)
			completeJob(job)
			waitReady(ns, desc.Digest)

			By("forcing while the Job that published the digest is kept")
			requestSync(ns, "1")
			Eventually(func() string { return getArtifact(ns).Status.LastHandledReconcileAt }).Should(Equal("1"))
			Expect(jobNames(ns)).To(Equal([]string{job.Name}), "no new Job while the finished one vouches for the claim")
			waitReady(ns, desc.Digest)

			By("forcing once the Job is gone")
			Expect(k8sClient.Delete(bg, job, client.PropagationPolicy(metav1.DeletePropagationBackground))).To(Succeed())
			Eventually(func() []batchv1.Job { return syncJobs(ns) }).Should(BeEmpty())
			requestSync(ns, "2")
			again := waitJob(ns, desc.Digest)
			Expect(again.Name).To(Equal(job.Name), "the same Job, since it does the same")
			Eventually(func() string { return getArtifact(ns).Status.LastHandledReconcileAt }).Should(Equal("2"))
			completeJob(again)
			a := waitReady(ns, desc.Digest)
			Expect(a.Status.Volume.LiveDigest).To(Equal(desc.Digest.String()))
		})
	})

	Context("metrics", func() {
		It("counts registry requests beneath the retries, and failed syncs by reason", func() {
			pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			// An Artifact never resolved asks with a GET of the manifest.
			unavailable := metricValue("ocisync_registry_requests_total", "method", "GET", "code", "503")
			failed := metricValue("ocisync_artifact_syncs_total", "result", "failed", "reason", v1alpha1.ReasonRegistryUnavailable)
			proxy.SetFault(repo, faultUnavailable)
			DeferCleanup(proxy.SetFault, repo, faultNone)
			spec := baseSpec(repo, "v1")
			spec.Interval = every(longInterval)
			createArtifact(ns, spec)
			waitFailed(ns, v1alpha1.ReasonRegistryUnavailable, false)
			Expect(metricValue("ocisync_artifact_syncs_total", "result", "failed", "reason", v1alpha1.ReasonRegistryUnavailable) - failed).To(BeNumerically(">=", 1))
			Expect(metricValue("ocisync_registry_requests_total", "method", "GET", "code", "503")-unavailable).To(BeNumerically(">=", controllerRetries+1),
				"each attempt of the resolve is counted, the retries included")
		})

		It("counts Artifacts by their Ready condition at scrape time", func() {
			desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
			spec := baseSpec(repo, "v1")
			spec.Interval = every(longInterval)
			createArtifact(ns, spec)
			waitReady(ns, desc.Digest)
			other := newNamespace()
			missing := baseSpec(repo, "no-such-tag")
			missing.Interval = every(longInterval)
			createArtifact(other, missing)
			waitFailed(other, v1alpha1.ReasonNotFound, false)

			// Other specs' Artifacts may be going away meanwhile: compare
			// with the API server's count until they agree.
			Eventually(func(g Gomega) {
				var list v1alpha1.ArtifactList
				g.Expect(k8sClient.List(bg, &list)).To(Succeed())
				want := map[string]float64{"True": 0, "False": 0, "Unknown": 0}
				for _, a := range list.Items {
					want[readyStatus(&a)]++
				}
				g.Expect(want["True"]).To(BeNumerically(">=", 1))
				g.Expect(want["False"]).To(BeNumerically(">=", 1))
				got := map[string]float64{}
				for s := range want {
					got[s] = metricValue("ocisync_artifacts", "ready", s)
				}
				g.Expect(got).To(Equal(want))
			}).Should(Succeed())
		})
	})
})

// requestSync sets the requestedAt annotation to value.
func requestSync(ns, value string) {
	GinkgoHelper()
	Eventually(func() error {
		a := getArtifact(ns)
		if a.Annotations == nil {
			a.Annotations = map[string]string{}
		}
		a.Annotations[v1alpha1.AnnotationReconcileRequestedAt] = value
		return k8sClient.Update(bg, a)
	}).Should(Succeed())
}

func readyStatus(a *v1alpha1.Artifact) string {
	for _, c := range a.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			return string(c.Status)
		}
	}
	return string(metav1.ConditionUnknown)
}

// metricValue gathers controller-runtime's registry, which the manager's
// metrics endpoint serves, and returns the value of the counter or gauge
// name whose labels are labelPairs (name, value, ...); 0 when there is
// none.
func metricValue(name string, labelPairs ...string) float64 {
	GinkgoHelper()
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred(), "gather the metrics")
	want := map[string]string{}
	for i := 0; i+1 < len(labelPairs); i += 2 {
		want[labelPairs[i]] = labelPairs[i+1]
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
