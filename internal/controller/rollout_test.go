package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/opencontainers/go-digest"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/rollout"
)

// spec.rollout: the workloads it names get the digest in a Pod template
// annotation, once per digest, so that their controllers roll them. There
// is no kubelet or apps controller here: the specs look at the template
// and its generation, which is what a Deployment controller acts on.
var _ = Describe("Rollout on change", func() {
	var ns, repo string
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
	})

	It("annotates a Deployment once per new digest, and reads or writes nothing while the digest stays", func() {
		createWorkload(newDeployment(ns, "app"))
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		createArtifact(ns, rolloutSpec(repo, "v1", deploymentRef("app"))) // every second
		w1 := waitAnnotated(ns, deploymentRef("app"), d1.Digest)
		Expect(w1.generation).To(BeEquivalentTo(2), "one patch of the template: generation 1, then 2")
		expectEvent(ns, corev1.EventTypeNormal, v1alpha1.ConditionRolloutTriggered, "Deployment app", d1.Digest.String())
		a := getArtifact(ns)
		Expect(a.Status.Rollout).To(Equal([]v1alpha1.WorkloadRolloutStatus{{Kind: "Deployment", Name: "app", UID: string(w1.uid), Digest: d1.Digest.String()}}))
		Expect(meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())

		expectEvent(ns, corev1.EventTypeNormal, "Published", d1.Digest.String())

		By("syncing the unchanged digest: no read or write of the Deployment, nor of anything else")
		heads := func() int { return proxy.Count(repo, "HEAD", "manifests") }
		Eventually(heads).Should(BeNumerically(">=", heads()+1), "one more sync, so that the first ones' events are out")
		before, headsBefore := managerRequests.snapshot(), heads()
		Eventually(heads).Should(BeNumerically(">=", headsBefore+3), "three more syncs")
		Expect(managerRequests.since(before, ns)).To(BeEmpty(), "requests of the manager about namespace %s in steady state", ns)
		Expect(workloadOf(ns, deploymentRef("app")).resourceVersion).To(Equal(w1.resourceVersion))

		By("publishing a new digest")
		before = managerRequests.snapshot()
		d2, _ := pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
		w2 := waitAnnotated(ns, deploymentRef("app"), d2.Digest)
		Expect(w2.generation).To(BeEquivalentTo(3))
		Expect(w2.uid).To(Equal(w1.uid))
		Expect(getConfigMap(ns, configMapName).Data).To(HaveKeyWithValue("a.txt", "two\n"))
		Eventually(heads).Should(BeNumerically(">=", heads()+2), "two more syncs")
		Expect(managerRequests.since(before, ns)).To(HaveKeyWithValue(apiRequest{verb: "patch", resource: "deployments", namespace: ns, name: "app"}, 1),
			"one patch per digest")
		Expect(workloadOf(ns, deploymentRef("app")).generation).To(BeEquivalentTo(3))
	})

	It("annotates a StatefulSet and a DaemonSet once each per digest", func() {
		createWorkload(newStatefulSet(ns, "db"))
		createWorkload(newDaemonSet(ns, "agent"))
		refs := []v1alpha1.WorkloadRef{{Kind: "StatefulSet", Name: "db"}, {Kind: "DaemonSet", Name: "agent"}}
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		createArtifact(ns, rolloutSpec(repo, "v1", refs...))
		for _, ref := range refs {
			Expect(waitAnnotated(ns, ref, d1.Digest).generation).To(BeEquivalentTo(2), "%s patched once", ref.Kind)
		}
		d2, _ := pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
		for _, ref := range refs {
			Expect(waitAnnotated(ns, ref, d2.Digest).generation).To(BeEquivalentTo(3), "%s patched once more", ref.Kind)
		}
		Expect(rolloutCondition(getArtifact(ns))).To(And(
			HaveField("Status", metav1.ConditionTrue),
			HaveField("Message", And(ContainSubstring("StatefulSet db"), ContainSubstring("DaemonSet agent"), ContainSubstring(d2.Digest.String()))),
		))
		Consistently(func() []int64 {
			return []int64{workloadOf(ns, refs[0]).generation, workloadOf(ns, refs[1]).generation}
		}).WithTimeout(2 * time.Second).Should(Equal([]int64{3, 3}))
	})

	It("does not annotate while the Artifact is suspended, and does once it resumes", func() {
		createWorkload(newDeployment(ns, "app"))
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		createArtifact(ns, rolloutSpec(repo, "v1", deploymentRef("app"), deploymentRef("later")))
		waitAnnotated(ns, deploymentRef("app"), d1.Digest)

		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Suspend = true })
		Eventually(func() int64 { a := getArtifact(ns); return a.Status.ObservedGeneration - a.Generation }).Should(BeZero())
		d2, _ := pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
		createWorkload(newDeployment(ns, "later"))
		Consistently(func() []string {
			return []string{workloadOf(ns, deploymentRef("app")).digest, workloadOf(ns, deploymentRef("later")).digest}
		}).WithTimeout(3*time.Second).Should(Equal([]string{d1.Digest.String(), ""}), "nothing is patched while suspended")

		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Suspend = false })
		waitAnnotated(ns, deploymentRef("app"), d2.Digest)
		waitAnnotated(ns, deploymentRef("later"), d2.Digest)
	})

	It("annotates a workload when it is created or re-created, and never one of another namespace", func() {
		other := newNamespace()
		elsewhere := newDeployment(other, "app")
		createWorkload(elsewhere)
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		spec := rolloutSpec(repo, "v1", deploymentRef("app"))
		spec.Interval = every(longInterval) // only the watch can bring the Deployment's creation
		createArtifact(ns, spec)
		Eventually(func(g Gomega) {
			a := getArtifact(ns)
			g.Expect(a.Status.Digest).To(Equal(d1.Digest.String()))
			g.Expect(meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "published")
			g.Expect(rolloutCondition(a)).To(HaveValue(And(
				HaveField("Status", metav1.ConditionFalse),
				HaveField("Reason", v1alpha1.ReasonWorkloadNotFound),
				HaveField("Message", ContainSubstring("Deployment app")),
			)))
			g.Expect(a.Status.Rollout).To(BeEmpty())
		}).Should(Succeed())

		By("creating the Deployment in the Artifact's namespace")
		d := newDeployment(ns, "app")
		// What kubectl apply leaves: the cache of workload metadata must
		// not hold it.
		d.Annotations = map[string]string{corev1.LastAppliedConfigAnnotation: `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"app"}}`}
		createWorkload(d)
		w1 := waitAnnotatedWithin(ns, deploymentRef("app"), d1.Digest, watchTimeout)
		Expect(w1.uid).To(Equal(d.UID))
		cached := rollout.Metadata("Deployment")
		Expect(mgrCache.Get(bg, client.ObjectKeyFromObject(d), cached)).To(Succeed())
		Expect(cached.Annotations).To(BeEmpty(), "the cache holds workloads as trimmed metadata")
		Expect(cached.ManagedFields).To(BeEmpty())

		By("re-creating it")
		Expect(k8sClient.Delete(bg, d)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(rolloutCondition(getArtifact(ns))).To(HaveValue(HaveField("Reason", v1alpha1.ReasonWorkloadNotFound)))
		}).WithTimeout(watchTimeout).Should(Succeed())
		again := newDeployment(ns, "app")
		createWorkload(again)
		w2 := waitAnnotatedWithin(ns, deploymentRef("app"), d1.Digest, watchTimeout)
		Expect(w2.uid).To(Equal(again.UID))
		Expect(w2.uid).NotTo(Equal(w1.uid))

		By("leaving the Deployment of the same name in another namespace alone")
		now := &appsv1.Deployment{}
		Expect(k8sClient.Get(bg, client.ObjectKeyFromObject(elsewhere), now)).To(Succeed())
		Expect(now.ResourceVersion).To(Equal(elsewhere.ResourceVersion))
		Expect(now.Spec.Template.Annotations).To(BeEmpty())
	})

	It("annotates for a volume only the digest its sync Job made live", func() {
		createClaim(ns, "data")
		createWorkload(newDeployment(ns, "app"))
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		spec := volumeSpec(repo, "v1", "data")
		spec.Rollout = &v1alpha1.RolloutSpec{Workloads: []v1alpha1.WorkloadRef{deploymentRef("app")}}
		createArtifact(ns, spec)
		job := waitJob(ns, d1.Digest)
		Consistently(func() string { return workloadOf(ns, deploymentRef("app")).digest }).WithTimeout(2*time.Second).
			Should(BeEmpty(), "not annotated while the Job pulls")
		completeJob(job)
		waitAnnotated(ns, deploymentRef("app"), d1.Digest)

		d2, _ := pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
		job = waitJob(ns, d2.Digest)
		Consistently(func() string { return workloadOf(ns, deploymentRef("app")).digest }).WithTimeout(2*time.Second).
			Should(Equal(d1.Digest.String()), "the live digest stays until the Job finished")
		completeJob(job)
		waitAnnotated(ns, deploymentRef("app"), d2.Digest)
	})

	It("reports a refused patch and retries it, while the output stays published and Ready", func() {
		createWorkload(newDeployment(ns, "app"))
		freeze := freezeDeployments(ns)

		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		spec := rolloutSpec(repo, "v1", deploymentRef("app"))
		spec.Interval = every(longInterval) // retries come from the backoff, not the interval
		createArtifact(ns, spec)
		before := managerRequests.snapshot()
		Eventually(func(g Gomega) {
			a := getArtifact(ns)
			g.Expect(a.Status.Digest).To(Equal(d1.Digest.String()))
			g.Expect(meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "the output is published")
			g.Expect(rolloutCondition(a)).To(HaveValue(And(
				HaveField("Status", metav1.ConditionFalse),
				HaveField("Reason", v1alpha1.ReasonRolloutFailed),
				HaveField("Message", And(ContainSubstring("Deployment app"), ContainSubstring("frozen by the test"))),
			)))
		}).Should(Succeed())
		Expect(getConfigMap(ns, configMapName).Data).To(HaveKeyWithValue("a.txt", "one\n"))
		Expect(kstatusOfArtifact(ns)).To(Equal(status.CurrentStatus), "a refused rollout leaves the Artifact Current for kstatus")
		expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonRolloutFailed, "Deployment app", "frozen by the test")
		Eventually(func() int {
			return managerRequests.since(before, ns)[apiRequest{verb: "patch", resource: "deployments", namespace: ns, name: "app"}]
		}).Should(BeNumerically(">=", 3), "the patch is retried")
		Expect(workloadOf(ns, deploymentRef("app")).digest).To(BeEmpty())

		By("lifting the refusal")
		Expect(k8sClient.Delete(bg, freeze)).To(Succeed())
		w := waitAnnotated(ns, deploymentRef("app"), d1.Digest)
		Expect(w.generation).To(BeEquivalentTo(2))
		a := getArtifact(ns)
		Expect(meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		Expect(a.Status.Conditions).To(HaveLen(2), "Ready and RolloutTriggered: %+v", a.Status.Conditions)
		expectPublishedOnce(ns, d1.Digest)
	})

	It("drops the condition and status.rollout when spec.rollout goes", func() {
		createWorkload(newDeployment(ns, "app"))
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		createArtifact(ns, rolloutSpec(repo, "v1", deploymentRef("app")))
		waitAnnotated(ns, deploymentRef("app"), d1.Digest)
		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Rollout = nil })
		a := waitReady(ns, d1.Digest) // which checks that Ready is the only condition
		Expect(a.Status.Rollout).To(BeEmpty())
		Expect(workloadOf(ns, deploymentRef("app")).digest).To(Equal(d1.Digest.String()), "the annotation stays: removing it would roll the Pods again")
	})

	It("refuses kinds other than Deployment, StatefulSet and DaemonSet, and more than 32 workloads", func() {
		spec := rolloutSpec(repo, "v1", v1alpha1.WorkloadRef{Kind: "ReplicaSet", Name: "x"})
		a := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: artifactName}, Spec: spec}
		err := k8sClient.Create(bg, a)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("spec.rollout.workloads[0].kind"))

		var many []v1alpha1.WorkloadRef
		for i := range 33 {
			many = append(many, v1alpha1.WorkloadRef{Kind: "Deployment", Name: "app-" + string(rune('a'+i%26)) + string(rune('a'+i/26))})
		}
		a.Spec = rolloutSpec(repo, "v1", many...)
		Expect(apierrors.IsInvalid(k8sClient.Create(bg, a))).To(BeTrue())
		a.Spec = rolloutSpec(repo, "v1", deploymentRef("app"), deploymentRef("app"))
		Expect(apierrors.IsInvalid(k8sClient.Create(bg, a))).To(BeTrue(), "a workload named twice")
	})
})

// rolloutSpec syncs repo:tag into configMapName every second and restarts
// the workloads.
func rolloutSpec(repo, tag string, workloads ...v1alpha1.WorkloadRef) v1alpha1.ArtifactSpec {
	s := baseSpec(repo, tag)
	s.Rollout = &v1alpha1.RolloutSpec{Workloads: workloads}
	return s
}

func deploymentRef(name string) v1alpha1.WorkloadRef {
	return v1alpha1.WorkloadRef{Kind: "Deployment", Name: name}
}

func podTemplate(name string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/app:1",
			VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}},
		}}, Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configMapName}},
		}}}},
	}
}

func newDeployment(ns, name string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name),
		},
	}
}

func newStatefulSet(ns, name string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name),
		},
	}
}

func newDaemonSet(ns, name string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name),
		},
	}
}

// createWorkload creates a workload, deleted again when the spec ends.
func createWorkload(o client.Object) {
	GinkgoHelper()
	Expect(k8sClient.Create(bg, o)).To(Succeed())
	DeferCleanup(func() {
		Expect(client.IgnoreNotFound(k8sClient.Delete(bg, o))).To(Succeed())
	})
}

// workload is what the specs look at of a workload.
type workload struct {
	digest          string // the Pod template annotation of the Artifact artifactName
	generation      int64
	resourceVersion string
	uid             types.UID
}

// workloadOf reads a workload from the API server; the zero workload when
// it does not exist.
func workloadOf(ns string, ref v1alpha1.WorkloadRef) workload {
	GinkgoHelper()
	u := rollout.Object(ref.Kind)
	err := k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: ref.Name}, u)
	if apierrors.IsNotFound(err) {
		return workload{}
	}
	Expect(err).NotTo(HaveOccurred())
	d, _ := rollout.TemplateAnnotation(u, rollout.AnnotationKey(artifactName))
	return workload{digest: d, generation: u.GetGeneration(), resourceVersion: u.GetResourceVersion(), uid: u.GetUID()}
}

// waitAnnotated waits until the workload's template carries dgst and the
// Artifact reports it, and returns the workload.
func waitAnnotated(ns string, ref v1alpha1.WorkloadRef, dgst digest.Digest) workload {
	GinkgoHelper()
	return waitAnnotatedWithin(ns, ref, dgst, waitTimeout)
}

func waitAnnotatedWithin(ns string, ref v1alpha1.WorkloadRef, dgst digest.Digest, timeout time.Duration) workload {
	GinkgoHelper()
	var w workload
	Eventually(func(g Gomega) {
		w = workloadOf(ns, ref)
		g.Expect(w.digest).To(Equal(dgst.String()), "the Pod template annotation of %s %s", ref.Kind, ref.Name)
		a := getArtifact(ns)
		g.Expect(a.Status.Rollout).To(ContainElement(v1alpha1.WorkloadRolloutStatus{Kind: ref.Kind, Name: ref.Name, UID: string(w.uid), Digest: dgst.String()}),
			"status.rollout")
		g.Expect(rolloutCondition(a)).To(HaveValue(And(
			HaveField("Message", ContainSubstring(ref.Kind+" "+ref.Name)),
			HaveField("ObservedGeneration", a.Generation),
		)))
	}).WithTimeout(timeout).Should(Succeed())
	return w
}

func rolloutCondition(a *v1alpha1.Artifact) *metav1.Condition {
	return meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionRolloutTriggered)
}

// freezeDeployments makes the API server refuse every update of the
// Deployments of ns, with a ValidatingAdmissionPolicy, and returns its
// binding: deleting it lifts the refusal. Both go when the spec ends.
func freezeDeployments(ns string) *admissionv1.ValidatingAdmissionPolicyBinding {
	GinkgoHelper()
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}},
				ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
				}}},
			},
			Validations: []admissionv1.Validation{{Expression: "object.spec.template == oldObject.spec.template", Message: "Deployments of this namespace are frozen by the test"}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		},
	}
	for _, o := range []client.Object{policy, binding} {
		Expect(k8sClient.Create(bg, o)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(bg, o))).To(Succeed()) })
	}
	// The API server enforces a policy once its informer saw it: try a
	// change in dry run until it is refused.
	Eventually(func() error {
		d := &appsv1.Deployment{}
		if err := k8sClient.Get(bg, types.NamespacedName{Namespace: ns, Name: "app"}, d); err != nil {
			return err
		}
		d.Spec.Template.Annotations = map[string]string{"probe": "x"}
		return k8sClient.Update(bg, d, client.DryRunAll)
	}).Should(MatchError(ContainSubstring("frozen by the test")))
	return binding
}

// kstatusOfArtifact computes the kstatus of the Artifact as generic tools
// see it.
func kstatusOfArtifact(ns string) (status.Status, error) {
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
