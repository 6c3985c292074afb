package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// kstatus is how kubectl wait, Flux, Argo CD and cli-utils appliers decide
// whether an object is done: these specs compute it the way they do, on
// the Artifact as the API server returns it.
var _ = Describe("kstatus of an Artifact", func() {
	var ns, repo string
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
	})

	// kstatusOf computes the kstatus of the Artifact from its unstructured
	// form, as generic tools see it.
	kstatusOf := func() (status.Status, error) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("Artifact"))
		if err := k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: artifactName}, u); err != nil {
			return "", err
		}
		res, err := status.Compute(u)
		if err != nil {
			return "", err
		}
		return res.Status, nil
	}

	It("is Current when the Artifact is Ready", func() {
		desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		createArtifact(ns, baseSpec(repo, "v1"))
		waitReady(ns, desc.Digest)
		Expect(kstatusOf()).To(Equal(status.CurrentStatus))
	})

	It("is Failed when the Artifact is Stalled", func() {
		pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		spec := baseSpec(repo, "v1")
		spec.MediaType = "application/x-nothing"
		createArtifact(ns, spec)
		waitFailed(ns, v1alpha1.ReasonSelectorMismatch, true)
		Expect(kstatusOf()).To(Equal(status.FailedStatus))
	})

	It("is InProgress after a failure that is retried", func() {
		// A transient failure keeps Reconciling=True (a retry is coming)
		// and Ready=False: kstatus reads either as InProgress.
		createArtifact(ns, baseSpec(repo, "missing"))
		waitFailed(ns, v1alpha1.ReasonNotFound, false)
		Expect(kstatusOf()).To(Equal(status.InProgressStatus))
	})

	It("is InProgress, never Current, while the first sync of a new Artifact runs", func() {
		desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		// Hold the registry's answers so the first sync cannot finish.
		proxy.SetFault(repo, faultHang)
		DeferCleanup(proxy.SetFault, repo, faultNone)
		createArtifact(ns, baseSpec(repo, "v1"))
		// The CRD defaults status.observedGeneration to 0, behind every
		// generation: kstatus reads the Artifact as in progress before the
		// controller has even seen it.
		Expect(kstatusOf()).To(Equal(status.InProgressStatus), "right after creation")
		By("the controller marks the sync in progress while it runs")
		Eventually(func(g Gomega) {
			a := getArtifact(ns)
			g.Expect(a.Status.Conditions).To(ContainElements(
				And(HaveField("Type", v1alpha1.ConditionReconciling), HaveField("Status", metav1.ConditionTrue),
					HaveField("Reason", v1alpha1.ReasonProgressing)),
				And(HaveField("Type", v1alpha1.ConditionReady), HaveField("Status", metav1.ConditionUnknown)),
			))
		}).Should(Succeed())
		Consistently(kstatusOf).WithTimeout(1500 * time.Millisecond).Should(Equal(status.InProgressStatus))

		proxy.SetFault(repo, faultNone)
		waitReady(ns, desc.Digest)
		Expect(kstatusOf()).To(Equal(status.CurrentStatus))
	})

	It("is InProgress while a sync Job runs, and Current once it completed", func() {
		createClaim(ns, "data")
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		createArtifact(ns, volumeSpec(repo, "v1", "data"))
		job := waitJob(ns, d1.Digest)
		Consistently(kstatusOf).WithTimeout(1500 * time.Millisecond).Should(Equal(status.InProgressStatus))
		completeJob(job)
		waitReady(ns, d1.Digest)
		Expect(kstatusOf()).To(Equal(status.CurrentStatus))
	})

	It("is InProgress, never Current, until a changed spec has been synced", func() {
		desc, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		createArtifact(ns, baseSpec(repo, "v1"))
		waitReady(ns, desc.Digest)
		Expect(kstatusOf()).To(Equal(status.CurrentStatus))

		proxy.SetFault(repo, faultHang)
		DeferCleanup(proxy.SetFault, repo, faultNone)
		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.MediaType = textType })
		Consistently(kstatusOf).WithTimeout(2 * time.Second).Should(Equal(status.InProgressStatus))

		proxy.SetFault(repo, faultNone)
		waitReady(ns, desc.Digest)
		Expect(kstatusOf()).To(Equal(status.CurrentStatus))
	})
})
