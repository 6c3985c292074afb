package controller

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/opencontainers/go-digest"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// No kubelet, scheduler or Job controller runs in the suite: specs play
// their part. They mark a sync Job complete or failed through its status,
// create the Pods a failed Job leaves, remove the finalizer the garbage
// collector would remove, and run the Job's command as a process.
var _ = Describe("Volume output", func() {
	var ns, repo string
	BeforeEach(func() {
		ns = newNamespace()
		repo = repoFor(ns)
	})

	It("runs a sync Job pinned to the digest, with Secrets mounted read-only, and publishes when it completes", func() {
		d1, m1 := pushArtifact(privatePusher(), privateRegistry.Host, repo, "v1", testArtifactType,
			textLayer("model.txt", "weights\n"), layer{"labels.json", jsonType, []byte(`["cat"]`)})
		Expect(k8sClient.Create(bg, dockerConfigJSONSecret(ns, "regcred", privateRegistry.Host, privateUser, privatePassword))).To(Succeed())
		Expect(k8sClient.Create(bg, caSecret(ns, "registry-ca"))).To(Succeed())
		createClaim(ns, "models")
		createArtifact(ns, v1alpha1.ArtifactSpec{
			Reference:     privateRegistry.Ref(repo, "v1"),
			PullSecrets:   []corev1.LocalObjectReference{{Name: "regcred"}},
			CertSecretRef: &corev1.LocalObjectReference{Name: "registry-ca"},
			Interval:      every(longInterval),
			Timeout:       &metav1.Duration{Duration: 90 * time.Second},
			Volume:        &v1alpha1.VolumeOutput{ClaimName: "models", SubPath: "team/bert", Extract: true},
		})

		job := waitJob(ns, d1.Digest)
		a := getArtifact(ns)
		By("checking the Job's spec")
		Expect(metav1.IsControlledBy(job, a)).To(BeTrue(), "owner references: %+v", job.OwnerReferences)
		Expect(job.OwnerReferences[0].BlockOwnerDeletion).To(HaveValue(BeTrue()))
		Expect(len(job.Name)).To(BeNumerically("<=", 63))
		Expect(job.Labels).To(HaveKeyWithValue(v1alpha1.LabelArtifactName, artifactName))
		Expect(job.Spec.ActiveDeadlineSeconds).To(HaveValue(BeEquivalentTo(90+60)), "spec.timeout plus a minute to start")
		Expect(job.Spec.TTLSecondsAfterFinished).To(HaveValue(BeEquivalentTo(syncJobTTL / time.Second)))
		Expect(job.Spec.BackoffLimit).To(HaveValue(BeEquivalentTo(2)))

		pod := job.Spec.Template.Spec
		Expect(pod.RestartPolicy).To(Equal(corev1.RestartPolicyNever))
		Expect(pod.AutomountServiceAccountToken).To(HaveValue(BeFalse()))
		Expect(pod.Containers).To(HaveLen(1))
		c := pod.Containers[0]
		Expect(c.Image).To(Equal(syncImage))
		Expect(c.Command).To(BeEmpty(), "the image's entrypoint is ocisync")
		resolved := privateRegistry.Host + "/" + repo + ":v1@" + d1.Digest.String()
		Expect(c.Args).To(Equal([]string{
			"pull", "--layout=versioned",
			"--docker-config=/var/run/ocisync/pull-secrets/0/config.json",
			"--ca-file=/var/run/ocisync/tls/ca.crt",
			"--extract",
			"--max-size=104857600", "--max-unpacked-size=1073741824",
			"--timeout=1m30s",
			resolved, "/data/team/bert",
		}))
		Expect(c.Env).To(BeEmpty())
		Expect(c.EnvFrom).To(BeEmpty())
		Expect(c.TerminationMessagePolicy).To(Equal(corev1.TerminationMessageFallbackToLogsOnError))
		Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceMemory))
		Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceMemory))
		Expect(c.VolumeMounts).To(ConsistOf(
			corev1.VolumeMount{Name: "data", MountPath: "/data"},
			corev1.VolumeMount{Name: "pull-secret-0", MountPath: "/var/run/ocisync/pull-secrets/0", ReadOnly: true},
			corev1.VolumeMount{Name: "tls", MountPath: "/var/run/ocisync/tls", ReadOnly: true},
		))
		mode := int32(0o440)
		Expect(pod.Volumes).To(ConsistOf(
			corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "models"}}},
			corev1.Volume{Name: "pull-secret-0", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "regcred", DefaultMode: &mode,
				Items: []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}},
			}}},
			corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "registry-ca", DefaultMode: &mode,
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}}},
		))
		raw, err := json.Marshal(job)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(raw)).NotTo(Or(
			ContainSubstring(privatePassword),
			ContainSubstring(base64.StdEncoding.EncodeToString([]byte(privateUser+":"+privatePassword))),
		), "the Job carries no credential")

		By("checking the Pod passes the restricted Pod Security profile")
		expectRestricted(job.Spec.Template)

		By("checking the status while the Job runs")
		Expect(a.Status.Volume).NotTo(BeNil())
		Expect(*a.Status.Volume).To(Equal(v1alpha1.VolumeStatus{SyncDigest: d1.Digest.String(), Job: job.Name}))
		Expect(meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReconciling)).To(HaveField("Status", metav1.ConditionTrue))
		Expect(meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady)).To(HaveField("Status", metav1.ConditionUnknown))
		Expect(a.Status.Digest).To(BeEmpty(), "nothing is live yet")
		expectEvent(ns, corev1.EventTypeNormal, "SyncStarted", job.Name)

		By("running the Job's command against the registry, into a folder standing in for the claim")
		claim := GinkgoT().TempDir()
		expectJobCommand(job, claim, 0)
		want := map[string]string{"model.txt": "weights\n", "labels.json": `["cat"]`}
		expectCurrent(filepath.Join(claim, "team", "bert"), d1.Digest, want)

		By("completing the Job")
		completeJob(job)
		a = waitReady(ns, d1.Digest)
		Expect(*a.Status.Volume).To(Equal(v1alpha1.VolumeStatus{LiveDigest: d1.Digest.String(), Job: job.Name}))
		Expect(a.Status.ResolvedReference).To(Equal(resolved))
		Expect(a.Status.Files).To(HaveLen(len(m1.Layers)))
		Expect(readyMessage(a)).To(ContainSubstring("claim models"))
		expectPublishedOnce(ns, d1.Digest)
		expectNoSecretIn(ns, privatePassword, privateUser)
		Consistently(func() []string { return jobNames(ns) }).WithTimeout(2*time.Second).Should(Equal([]string{job.Name}),
			"a completed Job is left to its TTL, and no other is made")
	})

	It("keeps the live digest while a new one syncs, and replaces a running Job only after it stopped", func() {
		createClaim(ns, "data")
		claim := GinkgoT().TempDir()
		d1, _ := pushPlain(repo, "stable", textLayer("a.txt", "one\n"))
		createArtifact(ns, volumeSpec(repo, "stable", "data"))
		job1 := waitJob(ns, d1.Digest)
		Expect(job1.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--plain-http"))
		expectJobCommand(job1, claim, 0)
		expectCurrent(claim, d1.Digest, map[string]string{"a.txt": "one\n"})
		completeJob(job1)
		waitReady(ns, d1.Digest)

		By("moving the tag: a new Job, the old digest still live")
		d2, _ := pushPlain(repo, "stable", textLayer("a.txt", "two\n"))
		job2 := waitJob(ns, d2.Digest)
		Expect(job2.Name).NotTo(Equal(job1.Name))
		Expect(job2.Spec.Template.Spec.Containers[0].Args).To(ContainElement(HaveSuffix(":stable@" + d2.Digest.String())))

		By("running the new Job's command while the registry corrupts blobs: it fails and current stays")
		proxy.SetFault(repo, faultCorruptBlobs)
		res := expectJobCommand(job2, claim, 1)
		proxy.SetFault(repo, faultNone)
		Expect(res.Stderr).To(ContainSubstring("digest"))
		expectCurrent(claim, d1.Digest, map[string]string{"a.txt": "one\n"})
		Eventually(func() []string { return jobNames(ns) }).Should(Equal([]string{job2.Name}),
			"the finished Job of the superseded digest is deleted")
		a := getArtifact(ns)
		Expect(*a.Status.Volume).To(Equal(v1alpha1.VolumeStatus{LiveDigest: d1.Digest.String(), SyncDigest: d2.Digest.String(), Job: job2.Name}))
		Expect(a.Status.Digest).To(Equal(d1.Digest.String()), "status.digest is what is live")
		Expect(readyMessage(a)).To(ContainSubstring(d1.Digest.String() + " stays live"))

		By("moving the tag again while that Job runs")
		d3, _ := pushPlain(repo, "stable", textLayer("a.txt", "three\n"))
		Eventually(func(g Gomega) {
			j := &batchv1.Job{}
			g.Expect(k8sClient.Get(bg, client.ObjectKeyFromObject(job2), j)).To(Succeed())
			g.Expect(j.DeletionTimestamp).NotTo(BeNil(), "the running Job is being deleted")
			g.Expect(j.Finalizers).To(ContainElement(metav1.FinalizerDeleteDependents), "its Pods go first")
		}).Should(Succeed())
		Consistently(func() []string { return jobNames(ns) }).WithTimeout(3*time.Second).Should(Equal([]string{job2.Name}),
			"no new Job starts while the superseded one's Pods may still write the claim")
		Expect(readyMessage(getArtifact(ns))).To(ContainSubstring("waiting for the superseded sync Job " + job2.Name))

		By("letting the garbage collector finish the deletion")
		finishDeletion(job2)
		job3 := waitJob(ns, d3.Digest)
		completeJob(job3)
		a = waitReady(ns, d3.Digest)
		Expect(*a.Status.Volume).To(Equal(v1alpha1.VolumeStatus{LiveDigest: d3.Digest.String(), Job: job3.Name}))
		expectPublishedOnce(ns, d1.Digest, d3.Digest)
	})

	It("reports a failed Job's reason and log tail, keeps the live digest, and retries with a new Job", func() {
		createClaim(ns, "data")
		d1, _ := pushPlain(repo, "stable", textLayer("a.txt", "one\n"))
		spec := volumeSpec(repo, "stable", "data")
		spec.Interval = every(3 * time.Second)
		createArtifact(ns, spec)
		job1 := waitJob(ns, d1.Digest)
		completeJob(job1)
		waitReady(ns, d1.Digest)

		d2, _ := pushPlain(repo, "stable", textLayer("a.txt", "two\n"))
		job2 := waitJob(ns, d2.Digest)
		tail := "ocisync pull: layer a.txt: content does not match its digest " + d2.Digest.String()
		terminatedPod(job2, 1, "Error", "Pulled nothing\n"+tail)
		failJob(job2, "BackoffLimitExceeded", "Job has reached the specified backoff limit")

		a := waitFailed(ns, v1alpha1.ReasonSyncJobFailed, false)
		Expect(readyMessage(a)).To(And(
			ContainSubstring("sync Job "+job2.Name+" failed"),
			ContainSubstring("BackoffLimitExceeded"),
			ContainSubstring("exited with code 1 (Error)"),
			ContainSubstring(tail),
		))
		Expect(a.Status.Digest).To(Equal(d1.Digest.String()), "the live digest stays")
		Expect(*a.Status.Volume).To(Equal(v1alpha1.VolumeStatus{LiveDigest: d1.Digest.String(), SyncDigest: d2.Digest.String(), Job: job2.Name}))
		expectEvent(ns, corev1.EventTypeWarning, v1alpha1.ReasonSyncJobFailed, tail)

		By("retrying after the interval with a new Job of the same name")
		retry := waitJob(ns, d2.Digest)
		Expect(retry.Name).To(Equal(job2.Name))
		Expect(retry.UID).NotTo(Equal(job2.UID))
		completeJob(retry)
		waitReady(ns, d2.Digest)
	})

	It("waits for a missing claim and starts as soon as it is created", func() {
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		spec := volumeSpec(repo, "v1", "late")
		spec.Interval = every(longInterval)
		createArtifact(ns, spec)
		a := waitFailed(ns, v1alpha1.ReasonOutputFailed, false)
		Expect(readyMessage(a)).To(ContainSubstring(`PersistentVolumeClaim "late" (spec.volume.claimName) does not exist`))
		Expect(jobNames(ns)).To(BeEmpty())
		createClaim(ns, "late")
		job := waitJobWithin(ns, d1.Digest, watchTimeout)
		completeJob(job)
		waitReady(ns, d1.Digest)
	})

	It("makes a new Job when an option changes for the same digest, and removes Jobs when the output becomes a ConfigMap", func() {
		createClaim(ns, "data")
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		createArtifact(ns, volumeSpec(repo, "v1", "data"))
		job1 := waitJob(ns, d1.Digest)
		completeJob(job1)
		waitReady(ns, d1.Digest)

		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Volume.Extract = true })
		var job2 *batchv1.Job
		Eventually(func(g Gomega) {
			job2 = waitJob(ns, d1.Digest)
			g.Expect(job2.Name).NotTo(Equal(job1.Name))
		}).Should(Succeed())
		Expect(job2.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--extract"))
		completeJob(job2)
		waitReady(ns, d1.Digest)

		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) {
			s.Volume, s.ConfigMap = nil, &v1alpha1.ConfigMapOutput{Name: configMapName}
		})
		a := waitReady(ns, d1.Digest)
		Expect(a.Status.Volume).To(BeNil())
		Eventually(func() []string { return jobNames(ns) }).Should(BeEmpty(), "the finished sync Jobs are deleted")
	})

	It("syncs an Artifact whose name is longer than a label value", func() {
		d1, _ := pushPlain(repo, "v1", textLayer("a.txt", "a\n"))
		createClaim(ns, "long")
		name := strings.Repeat("a-very-long-artifact-name-", 3) + "end" // 81 characters
		spec := volumeSpec(repo, "v1", "long")
		spec.Interval = every(longInterval)
		a := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
		Expect(k8sClient.Create(bg, a)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(bg, a))).To(Succeed()) })

		var job *batchv1.Job
		Eventually(func(g Gomega) {
			var list batchv1.JobList
			g.Expect(k8sClient.List(bg, &list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(1), "the sync Job of %s", name)
			job = &list.Items[0]
		}).WithTimeout(waitTimeout).Should(Succeed())
		Expect(job.Labels[v1alpha1.LabelArtifactName]).To(Equal(labelValue(name)))
		Expect(len(job.Labels[v1alpha1.LabelArtifactName])).To(BeNumerically("<=", 63))
		Expect(len(job.Name)).To(BeNumerically("<=", 63))
		completeJob(job)
		Eventually(func(g Gomega) {
			got := &v1alpha1.Artifact{}
			g.Expect(k8sClient.Get(bg, client.ObjectKeyFromObject(a), got)).To(Succeed())
			g.Expect(got.Status.Digest).To(Equal(d1.Digest.String()))
		}).WithTimeout(waitTimeout).Should(Succeed())
	})

	It("refuses a subPath that leads outside the claim at admission", func() {
		a := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: artifactName}, Spec: volumeSpec(repo, "v1", "data")}
		for sub, msg := range map[string]string{
			"/abs":      "subPath must be relative",
			"a/../../b": "subPath must not contain .. segments",
			"..":        "subPath must not contain .. segments",
			"a\nb":      "control characters",
		} {
			a.Spec.Volume.SubPath = sub
			err := k8sClient.Create(bg, a.DeepCopy())
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "subPath %q: %v", sub, err)
			Expect(err.Error()).To(ContainSubstring(msg))
		}
	})
})

// volumeSpec syncs repo:tag through the proxy into claim every second.
func volumeSpec(repo, tag, claim string) v1alpha1.ArtifactSpec {
	s := baseSpec(repo, tag)
	s.ConfigMap = nil
	s.Volume = &v1alpha1.VolumeOutput{ClaimName: claim}
	return s
}

func createClaim(ns, name string) {
	GinkgoHelper()
	Expect(k8sClient.Create(bg, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	})).To(Succeed())
}

// syncJobs lists the Artifact's sync Jobs, including those being deleted.
func syncJobs(ns string) []batchv1.Job {
	GinkgoHelper()
	var list batchv1.JobList
	Expect(k8sClient.List(bg, &list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelArtifactName: artifactName})).To(Succeed())
	return list.Items
}

func jobNames(ns string) []string {
	GinkgoHelper()
	var names []string
	for _, j := range syncJobs(ns) {
		names = append(names, j.Name)
	}
	slices.Sort(names)
	return names
}

// waitJob waits for the live (not deleted) sync Job of dgst.
func waitJob(ns string, dgst digest.Digest) *batchv1.Job {
	GinkgoHelper()
	return waitJobWithin(ns, dgst, waitTimeout)
}

func waitJobWithin(ns string, dgst digest.Digest, timeout time.Duration) *batchv1.Job {
	GinkgoHelper()
	var job *batchv1.Job
	Eventually(func(g Gomega) {
		job = nil
		for _, j := range syncJobs(ns) {
			if j.Annotations[v1alpha1.AnnotationDigest] == dgst.String() && j.DeletionTimestamp == nil && !jobFinished(&j) {
				job = &j
			}
		}
		g.Expect(job).NotTo(BeNil(), "a running sync Job for %s among %v", dgst, jobNames(ns))
	}).WithTimeout(timeout).Should(Succeed())
	return job
}

// completeJob sets the status the Job controller gives a Job whose Pod
// succeeded.
func completeJob(job *batchv1.Job) {
	GinkgoHelper()
	setJobStatus(job, func(st *batchv1.JobStatus, now metav1.Time) {
		st.CompletionTime = &now
		st.Succeeded = 1
		st.Conditions = append(st.Conditions,
			batchv1.JobCondition{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now, LastProbeTime: now},
			batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now, LastProbeTime: now})
	})
}

// failJob sets the status the Job controller gives a failed Job.
func failJob(job *batchv1.Job, reason, message string) {
	GinkgoHelper()
	setJobStatus(job, func(st *batchv1.JobStatus, now metav1.Time) {
		st.Failed = 3
		st.Conditions = append(st.Conditions,
			batchv1.JobCondition{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: now, LastProbeTime: now},
			batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: now, LastProbeTime: now})
	})
}

// setJobStatus writes the status of a Job that started a second ago and
// finished now, as finish describes, retrying on conflicts.
func setJobStatus(job *batchv1.Job, finish func(st *batchv1.JobStatus, now metav1.Time)) {
	GinkgoHelper()
	Eventually(func() error {
		j := &batchv1.Job{}
		if err := k8sClient.Get(bg, client.ObjectKeyFromObject(job), j); err != nil {
			return err
		}
		now := metav1.Now()
		start := metav1.NewTime(now.Add(-time.Second))
		j.Status.StartTime = &start
		finish(&j.Status, now)
		return k8sClient.Status().Update(bg, j)
	}).Should(Succeed())
}

// terminatedPod creates a Pod of job whose sync container ended with code
// and message, as the kubelet reports it.
func terminatedPod(job *batchv1.Job, code int32, reason, message string) {
	GinkgoHelper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: job.Namespace, GenerateName: job.Name + "-",
			Labels: map[string]string{labelJobName: job.Name, labelControllerUID: string(job.UID)},
		},
		Spec: job.Spec.Template.Spec,
	}
	Expect(k8sClient.Create(bg, pod)).To(Succeed())
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodFailed,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: syncContainer, Image: syncImage,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: code, Reason: reason, Message: message, StartedAt: now, FinishedAt: now,
			}},
		}},
	}
	Expect(k8sClient.Status().Update(bg, pod)).To(Succeed())
}

// finishDeletion removes the finalizers of a Job being deleted, as the
// garbage collector does once its Pods are gone.
func finishDeletion(job *batchv1.Job) {
	GinkgoHelper()
	Eventually(func() error {
		j := &batchv1.Job{}
		if err := k8sClient.Get(bg, client.ObjectKeyFromObject(job), j); err != nil {
			return client.IgnoreNotFound(err)
		}
		j.Finalizers = nil
		return k8sClient.Update(bg, j)
	}).Should(Succeed())
	Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(bg, client.ObjectKeyFromObject(job), &batchv1.Job{}))
	}).Should(BeTrue())
}

// expectRestricted creates a Pod from template, by server-side dry run,
// in a namespace that enforces the restricted Pod Security profile: the
// API server's PodSecurity admission judges it. A copy that runs as root
// must be refused, so the check cannot pass vacuously.
func expectRestricted(template corev1.PodTemplateSpec) {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "restricted-", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	Expect(k8sClient.Create(bg, ns)).To(Succeed())
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "sync"}, Spec: template.Spec}
	Expect(k8sClient.Create(bg, pod.DeepCopy(), client.DryRunAll)).To(Succeed(), "the sync Pod passes the restricted profile")

	root := pod.DeepCopy()
	root.Spec.SecurityContext.RunAsNonRoot = new(false)
	root.Spec.Containers[0].SecurityContext.RunAsNonRoot = nil
	err := k8sClient.Create(bg, root, client.DryRunAll)
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a Pod running as root is refused: %v", err)
	Expect(err.Error()).To(ContainSubstring("restricted"))
}

// expectJobCommand runs the Job's container command with the built
// ocisync binary, as the kubelet would run it, and expects exit code
// want: the claim is the folder claim, every other volume mount becomes a
// folder under a temporary root (Secret volumes filled with the Secret's
// items, read from the API server), and the paths in the arguments are
// rewritten to match.
func expectJobCommand(job *batchv1.Job, claim string, want int) registrytest.Result {
	GinkgoHelper()
	root := GinkgoT().TempDir()
	pod := job.Spec.Template.Spec
	c := pod.Containers[0]
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	claimMounted := false
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		dir := filepath.Join(root, "mounts", m.Name)
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		mounts[m.MountPath] = dir
		v := volumes[m.Name]
		switch {
		case v.PersistentVolumeClaim != nil:
			mounts[m.MountPath], claimMounted = claim, true
		case v.Secret != nil:
			s := &corev1.Secret{}
			Expect(k8sClient.Get(bg, client.ObjectKey{Namespace: job.Namespace, Name: v.Secret.SecretName}, s)).To(Succeed())
			for _, it := range v.Secret.Items {
				Expect(s.Data).To(HaveKey(it.Key), "Secret %s mounts key %s", s.Name, it.Key)
				Expect(os.WriteFile(filepath.Join(dir, it.Path), s.Data[it.Key], 0o440)).To(Succeed())
			}
		default:
			Fail("the sync Job mounts a volume of an unexpected kind: " + m.Name)
		}
	}
	Expect(claimMounted).To(BeTrue(), "the Job mounts the claim")
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		for mountPath, dir := range mounts {
			// Flag values and the target folder start with a mount path.
			if _, after, ok := strings.Cut(a, mountPath); ok && (after == "" || after[0] == '/') {
				a = strings.Replace(a, mountPath, dir, 1)
			}
		}
		args[i] = a
	}
	res := ocisync.Run(GinkgoT(), args...)
	Expect(res.ExitCode).To(Equal(want), "ocisync %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.Stdout, res.Stderr)
	return res
}

// expectCurrent checks that dir/current links to .ocisync/<hex of dgst>
// and holds exactly want.
func expectCurrent(dir string, dgst digest.Digest, want map[string]string) {
	GinkgoHelper()
	link, err := os.Readlink(filepath.Join(dir, "current"))
	Expect(err).NotTo(HaveOccurred())
	Expect(link).To(HavePrefix(filepath.Join(".ocisync", dgst.Encoded())))
	got := map[string]string{}
	cur := filepath.Join(dir, "current") + string(filepath.Separator)
	Expect(filepath.WalkDir(cur, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		got[strings.TrimPrefix(p, cur)] = string(b)
		return err
	})).To(Succeed())
	Expect(got).To(Equal(want))
}
