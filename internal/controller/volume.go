package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

// The volume output is written by a sync Job, not by the manager: the
// claim is mounted where the Job runs, and a large pull must not hold a
// worker. The Job runs `ocisync pull --layout versioned`, the same code a
// person runs at a terminal, pinned to the digest the controller resolved.

// Paths inside the sync Job's container.
const (
	syncContainer  = "pull"
	dataMountPath  = "/data"
	pullSecretsDir = "/var/run/ocisync/pull-secrets"
	tlsDir         = "/var/run/ocisync/tls"
	// dockerConfigFile is the name each pull Secret's key is mounted as.
	dockerConfigFile = "config.json"
)

// Settings of every sync Job.
const (
	// syncUser runs the Job: the nonroot user of distroless images.
	syncUser = 65532
	// jobStartSlack is added to spec.timeout for the Job's deadline: the
	// Pod must be scheduled and its image pulled before the pull's own
	// timeout starts to count.
	jobStartSlack = 60 * time.Second
	// jobBackoffLimit retries a failed Pod twice within one Job; after
	// that the Artifact reports the failure and a new Job is made later.
	jobBackoffLimit = 2
	// DefaultSyncJobTTL is how long a finished Job stays for inspection.
	DefaultSyncJobTTL = time.Hour
	// supersededPoll is how often to look again while a superseded Job's
	// Pods stop; the Job's deletion event usually comes first.
	supersededPoll = 2 * time.Second
	// maxLogTail bounds the log tail copied into the Ready condition.
	maxLogTail = 2048
	// defaultMaxUnpacked applies when spec.volume.maxUnpackedSize is unset.
	defaultMaxUnpacked = 1 << 30
)

// Labels the Job controller puts on a Job's Pods.
const (
	labelJobName       = "batch.kubernetes.io/job-name"
	labelControllerUID = "batch.kubernetes.io/controller-uid"
)

// pending is a sync that has started but not finished: the Artifact waits
// for a Job.
type pending struct {
	message string
	requeue time.Duration
}

// syncVolume makes the claim hold ref, which carries the resolved digest.
// It returns nil and no error once a Job has published it; a pending while
// one runs or while a superseded one stops; a *syncError when the Job
// failed.
func (r *ArtifactReconciler) syncVolume(ctx context.Context, obj *v1alpha1.Artifact, ref reference.Reference, access *registryAccess) (*pending, error) {
	if r.SyncImage == "" {
		return nil, transient(v1alpha1.ReasonOutputFailed, "the manager has no image for sync Jobs: start it with --sync-image, or in a Pod with POD_NAME and POD_NAMESPACE set so it can find its own image")
	}
	want, err := r.syncJob(obj, ref, access)
	if err != nil {
		return nil, err
	}
	st := volumeStatus(obj)

	jobs, err := r.syncJobsOf(ctx, obj, r.Client)
	if err != nil {
		return nil, err
	}
	if r.Scope.sharded() && !slices.ContainsFunc(jobs.Items, func(j batchv1.Job) bool { return j.Name == want.Name }) {
		// The cache holds the Jobs labelled for this shard only: those of
		// an Artifact that moved here from another shard carry its labels
		// until relabelled below, and a Job made anew would clash with
		// the one of the same work. Only a sync about to make a Job asks.
		if jobs, err = r.syncJobsOf(ctx, obj, r.reader()); err != nil {
			return nil, err
		}
	}
	var current *batchv1.Job
	var stopping []string
	supersededActive := false
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if !metav1.IsControlledBy(j, obj) {
			continue
		}
		if j.Name == want.Name && j.DeletionTimestamp.IsZero() {
			current = j
			continue
		}
		// Superseded: another digest, other options, or being deleted.
		// A finished Job's Pods have stopped; a running one must stop
		// before another starts.
		if !jobFinished(j) {
			supersededActive = true
			stopping = append(stopping, j.Name)
		}
		if err := r.deleteJob(ctx, j); err != nil {
			return nil, err
		}
	}
	if current != nil {
		if err := r.relabelJob(ctx, obj, current); err != nil {
			return nil, err
		}
	}
	if current != nil && supersededActive && jobFinished(current) {
		// A superseded Job that was still running may have repointed
		// current/ after this one finished: sync again once it stopped.
		if err := r.deleteJob(ctx, current); err != nil {
			return nil, err
		}
		current = nil
	}
	if len(stopping) > 0 {
		// One Job at a time: the next starts only when the Pods of the
		// others are gone, so two never write the claim together.
		slices.Sort(stopping)
		st.SyncDigest = ref.Digest.String()
		return &pending{
			message: fmt.Sprintf("waiting for the superseded sync Job %s to stop before syncing %s", strings.Join(stopping, ", "), ref),
			requeue: supersededPoll,
		}, nil
	}

	if current == nil {
		if err := r.checkClaim(ctx, obj); err != nil {
			return nil, err
		}
		if err := r.Create(ctx, want); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return nil, transient(v1alpha1.ReasonOutputFailed, "creating sync Job %q: %w", want.Name, err)
			}
			// Made by an earlier reconcile that the cache does not show
			// yet, or by someone else.
			existing := &batchv1.Job{}
			if err := r.reader().Get(ctx, client.ObjectKeyFromObject(want), existing); err != nil {
				return nil, transient(v1alpha1.ReasonOutputFailed, "reading sync Job %q: %w", want.Name, err)
			}
			if !metav1.IsControlledBy(existing, obj) {
				return nil, transient(v1alpha1.ReasonOutputConflict, "a Job named %q exists in namespace %q and is not owned by this Artifact; delete or rename it", want.Name, obj.Namespace)
			}
		} else {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "SyncStarted", "Sync", "sync Job %s started for %s", want.Name, ref)
		}
		st.SyncDigest, st.Job = ref.Digest.String(), want.Name
		return &pending{message: fmt.Sprintf("sync Job %s is pulling %s into claim %q", want.Name, ref, obj.Spec.Volume.ClaimName), requeue: interval(obj)}, nil
	}

	st.Job = current.Name
	switch {
	case jobSucceeded(current):
		st.LiveDigest, st.SyncDigest = ref.Digest.String(), ""
		return nil, nil
	case jobFailedCondition(current) != nil:
		st.SyncDigest = ref.Digest.String()
		failed := jobFailedCondition(current)
		retryAt := failed.LastTransitionTime.Add(retryDelay(obj))
		if wait := time.Until(retryAt); wait > 0 {
			se := transient(v1alpha1.ReasonSyncJobFailed, "%s", r.jobFailure(ctx, current, failed))
			se.retryAfter = wait
			return nil, se
		}
		// Time to try again: the failed Job goes, a new one follows
		// when its deletion shows.
		if err := r.deleteJob(ctx, current); err != nil {
			return nil, err
		}
		return &pending{message: fmt.Sprintf("retrying the failed sync Job %s for %s", current.Name, ref), requeue: supersededPoll}, nil
	default:
		st.SyncDigest = ref.Digest.String()
		return &pending{message: fmt.Sprintf("sync Job %s is pulling %s into claim %q", current.Name, ref, obj.Spec.Volume.ClaimName), requeue: interval(obj)}, nil
	}
}

// syncJobsOf lists the Jobs labelled as obj's sync Jobs through reader.
func (r *ArtifactReconciler) syncJobsOf(ctx context.Context, obj *v1alpha1.Artifact, reader client.Reader) (*batchv1.JobList, error) {
	var jobs batchv1.JobList
	if err := reader.List(ctx, &jobs, client.InNamespace(obj.Namespace), client.MatchingLabels{v1alpha1.LabelArtifactName: labelValue(obj.Name)}); err != nil {
		return nil, transient(v1alpha1.ReasonOutputFailed, "listing the sync Jobs of %s: %w", obj.Name, err)
	}
	return &jobs, nil
}

// relabelJob gives obj's sync Job j the shard labels of obj, so that its
// progress reaches this shard's cache: a Job started before its Artifact
// moved here carries the labels of the shard it came from.
func (r *ArtifactReconciler) relabelJob(ctx context.Context, obj *v1alpha1.Artifact, j *batchv1.Job) error {
	labelled := j.DeepCopy()
	var changed bool
	if labelled.Labels, changed = r.Scope.relabel(labelled.Labels, obj.Labels); !changed {
		return nil
	}
	// Only the labels are patched: a Job's spec is immutable, and its
	// status is the Job controller's.
	if err := r.Patch(ctx, labelled, client.MergeFrom(j)); err != nil {
		return transient(v1alpha1.ReasonOutputFailed, "labelling sync Job %q for this manager's shard: %w", j.Name, err)
	}
	*j = *labelled
	return nil
}

// deleteSyncJobs removes the sync Jobs of an Artifact that no longer has
// a volume output. Only those the cache holds: a Job of an Artifact that
// moved here from another shard is left to its TTL and to garbage
// collection with its Artifact.
func (r *ArtifactReconciler) deleteSyncJobs(ctx context.Context, obj *v1alpha1.Artifact) error {
	jobs, err := r.syncJobsOf(ctx, obj, r.Client)
	if err != nil {
		return err
	}
	for i := range jobs.Items {
		if metav1.IsControlledBy(&jobs.Items[i], obj) {
			if err := r.deleteJob(ctx, &jobs.Items[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// volumeStatus returns obj's volume status, creating it.
func volumeStatus(obj *v1alpha1.Artifact) *v1alpha1.VolumeStatus {
	if obj.Status.Volume == nil {
		obj.Status.Volume = &v1alpha1.VolumeStatus{}
	}
	return obj.Status.Volume
}

// retryDelay is how long a failed sync Job stays before a new one is
// made: the interval, at most five minutes, like the retries of other
// failures.
func retryDelay(obj *v1alpha1.Artifact) time.Duration {
	return min(interval(obj), defaultInterval)
}

// deleteJob deletes a sync Job. A running Job goes only after its Pods
// (foreground propagation), so that "the Job is gone" means "nothing
// writes the claim any more"; a finished Job's Pods have stopped already.
func (r *ArtifactReconciler) deleteJob(ctx context.Context, j *batchv1.Job) error {
	if !j.DeletionTimestamp.IsZero() {
		return nil
	}
	propagation := metav1.DeletePropagationForeground
	if jobFinished(j) {
		propagation = metav1.DeletePropagationBackground
	}
	err := r.Delete(ctx, j, client.PropagationPolicy(propagation), client.Preconditions{UID: &j.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return transient(v1alpha1.ReasonOutputFailed, "deleting the superseded sync Job %q: %w", j.Name, err)
	}
	return nil
}

// checkClaim reports a missing claim before a Job that would wait for it
// forever is made. Whether it exists and is being deleted is all it
// needs: the metadata the manager watches claims for.
func (r *ArtifactReconciler) checkClaim(ctx context.Context, obj *v1alpha1.Artifact) error {
	name := obj.Spec.Volume.ClaimName
	pvc := &metav1.PartialObjectMetadata{}
	pvc.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaim"))
	if err := r.metadata().Get(ctx, client.ObjectKey{Namespace: obj.Namespace, Name: name}, pvc); err != nil {
		if apierrors.IsNotFound(err) {
			return transient(v1alpha1.ReasonOutputFailed, "PersistentVolumeClaim %q (spec.volume.claimName) does not exist in namespace %q; create it or fix the name", name, obj.Namespace)
		}
		return transient(v1alpha1.ReasonOutputFailed, "reading PersistentVolumeClaim %q: %w", name, err)
	}
	if !pvc.DeletionTimestamp.IsZero() {
		return transient(v1alpha1.ReasonOutputFailed, "PersistentVolumeClaim %q (spec.volume.claimName) is being deleted", name)
	}
	return nil
}

func jobFinished(j *batchv1.Job) bool {
	return jobSucceeded(j) || jobFailedCondition(j) != nil
}

func jobSucceeded(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func jobFailedCondition(j *batchv1.Job) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// jobFailure describes a failed sync Job: the Job's reason, and the exit
// and log tail of its last Pod (the container's termination message falls
// back to the log tail; ocisync prints its error there).
func (r *ArtifactReconciler) jobFailure(ctx context.Context, j *batchv1.Job, failed *batchv1.JobCondition) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sync Job %s failed", j.Name)
	if failed.Reason != "" || failed.Message != "" {
		fmt.Fprintf(&b, " (%s: %s)", failed.Reason, failed.Message)
	}
	var pods corev1.PodList
	err := r.reader().List(ctx, &pods, client.InNamespace(j.Namespace), client.MatchingLabels{labelControllerUID: string(j.UID)})
	if err != nil {
		fmt.Fprintf(&b, "; its Pods could not be read: %v", err)
		return b.String()
	}
	var last *corev1.ContainerStateTerminated
	var lastPod string
	var lastTime time.Time
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name != syncContainer {
				continue
			}
			t := cs.State.Terminated
			if t == nil {
				t = cs.LastTerminationState.Terminated
			}
			if t != nil && (last == nil || !t.FinishedAt.Time.Before(lastTime)) {
				last, lastPod, lastTime = t, p.Name, t.FinishedAt.Time
			}
		}
	}
	if last == nil {
		b.WriteString("; no Pod of it left a termination message")
		return b.String()
	}
	fmt.Fprintf(&b, "; Pod %s exited with code %d", lastPod, last.ExitCode)
	if last.Reason != "" {
		fmt.Fprintf(&b, " (%s)", last.Reason)
	}
	if msg := strings.TrimSpace(last.Message); msg != "" {
		if len(msg) > maxLogTail {
			msg = "..." + msg[len(msg)-maxLogTail:]
		}
		fmt.Fprintf(&b, ", log tail:\n%s", msg)
	}
	return b.String()
}

// reader reads objects the manager does not cache: Pods, Jobs just
// created, ConfigMaps without ocisync's label, and the Secrets and
// ServiceAccounts a sync uses.
func (r *ArtifactReconciler) reader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// syncJob builds the Job that pulls ref into obj's claim. Its name ends
// in a hash of everything the Job does, so a Job is reused exactly when
// it would do the same again, and a different digest, option, Secret or
// image makes another.
func (r *ArtifactReconciler) syncJob(obj *v1alpha1.Artifact, ref reference.Reference, access *registryAccess) (*batchv1.Job, error) {
	vol := obj.Spec.Volume
	dir := dataMountPath
	if sub := strings.Trim(vol.SubPath, "/"); sub != "" {
		clean := path.Clean(sub)
		if clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(clean, 0) {
			return nil, stalled(v1alpha1.ReasonInvalidSpec, "spec.volume.subPath %q leads outside the claim; give a folder inside it", vol.SubPath)
		}
		if clean != "." {
			dir = dataMountPath + "/" + clean
		}
	}
	maxUnpacked := int64(defaultMaxUnpacked)
	if q := vol.MaxUnpackedSize; q != nil && q.Value() > 0 {
		maxUnpacked = q.Value()
	}

	args := []string{"pull", "--layout=versioned"}
	if obj.Spec.PlainHTTP {
		args = append(args, "--plain-http")
	}
	mounts := []corev1.VolumeMount{{Name: "data", MountPath: dataMountPath}}
	volumes := []corev1.Volume{{
		Name: "data",
		VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
			ClaimName: vol.ClaimName,
		}},
	}}
	secretVolume := func(name, secret string, keys ...string) corev1.Volume {
		items := make([]corev1.KeyToPath, 0, len(keys))
		for i := 0; i+1 < len(keys); i += 2 {
			items = append(items, corev1.KeyToPath{Key: keys[i], Path: keys[i+1]})
		}
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  secret,
			Items:       items,
			DefaultMode: ptr.To[int32](0o440),
		}}}
	}
	// The Secrets are mounted, never copied: their data stays out of the
	// Job, its args and its environment. Order is precedence, as for the
	// manager's own client: first match per registry wins.
	for i, s := range access.pullSecrets {
		name := "pull-secret-" + strconv.Itoa(i)
		dir := pullSecretsDir + "/" + strconv.Itoa(i)
		volumes = append(volumes, secretVolume(name, s.name, s.key, dockerConfigFile))
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: dir, ReadOnly: true})
		args = append(args, "--docker-config="+dir+"/"+dockerConfigFile)
	}
	if access.certSecret != "" {
		var keys []string
		if access.hasCA {
			keys = append(keys, keyCA, keyCA)
			args = append(args, "--ca-file="+tlsDir+"/"+keyCA)
		}
		if access.hasClientCert {
			keys = append(keys, corev1.TLSCertKey, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, corev1.TLSPrivateKeyKey)
			args = append(args, "--cert-file="+tlsDir+"/"+corev1.TLSCertKey, "--key-file="+tlsDir+"/"+corev1.TLSPrivateKeyKey)
		}
		if len(keys) > 0 {
			volumes = append(volumes, secretVolume("tls", access.certSecret, keys...))
			mounts = append(mounts, corev1.VolumeMount{Name: "tls", MountPath: tlsDir, ReadOnly: true})
		}
	}
	if mt := obj.Spec.MediaType; mt != "" {
		args = append(args, "--media-type="+mt)
	}
	if p := obj.Spec.Platform; p != "" {
		args = append(args, "--platform="+p)
	}
	if vol.Extract {
		args = append(args, "--extract")
	}
	args = append(args,
		"--max-size="+strconv.FormatInt(maxSize(obj), 10),
		"--max-unpacked-size="+strconv.FormatInt(maxUnpacked, 10),
		"--timeout="+timeout(obj).String(),
		ref.String(), dir)

	ttl := r.SyncJobTTL
	if ttl <= 0 {
		ttl = DefaultSyncJobTTL
	}
	// An Artifact's name may be longer than a label value can be; the
	// Jobs found by the label are checked for their owner anyway.
	labels := map[string]string{v1alpha1.LabelArtifactName: labelValue(obj.Name)}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: obj.Namespace,
			// The shard labels go on the Job only, not its Pods: the
			// Job's name hashes its spec, and an Artifact that changes
			// shards must not start its Job anew.
			Labels:      r.Scope.withShardLabels(labels, obj.Labels),
			Annotations: map[string]string{v1alpha1.AnnotationDigest: ref.Digest.String()},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To[int32](jobBackoffLimit),
			ActiveDeadlineSeconds:   ptr.To(int64((timeout(obj) + jobStartSlack + time.Second - 1) / time.Second)),
			TTLSecondsAfterFinished: ptr.To(int32(ttl / time.Second)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					// The Job needs nothing from the API server.
					AutomountServiceAccountToken: ptr.To(false),
					EnableServiceLinks:           ptr.To(false),
					// The restricted Pod Security profile.
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: ptr.To(true),
						RunAsUser:    ptr.To[int64](syncUser),
						RunAsGroup:   ptr.To[int64](syncUser),
						// Makes the claim writable by the Job's user, and
						// the mounted Secrets readable.
						FSGroup:             ptr.To[int64](syncUser),
						FSGroupChangePolicy: ptr.To(corev1.FSGroupChangeOnRootMismatch),
						SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            syncContainer,
						Image:           r.SyncImage,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args:            args,
						VolumeMounts:    mounts,
						// ocisync prints its error last; the kubelet keeps
						// the log tail as the termination message.
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						// Measured peak RSS of a pull stays near 30 MiB
						// whatever the artifact's size.
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("50m"),
								corev1.ResourceMemory: resource.MustParse("64Mi"),
							},
							Limits: corev1.ResourceList{
								corev1.ResourceMemory: resource.MustParse("256Mi"),
							},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							RunAsNonRoot:             ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
					Volumes: volumes,
				},
			},
		},
	}
	spec, err := json.Marshal(job.Spec)
	if err != nil {
		return nil, fmt.Errorf("encoding the sync Job: %w", err)
	}
	sum := sha256.Sum256(spec)
	job.Name = jobNamePrefix(obj.Name) + "-" + hex.EncodeToString(sum[:])[:10]
	if err := controllerutil.SetControllerReference(obj, job, r.Scheme); err != nil {
		return nil, fmt.Errorf("owning the sync Job: %w", err)
	}
	return job, nil
}

// jobNamePrefix shortens an Artifact's name so that the Job's name (and
// the job-name label on its Pods) stays within 63 characters.
func jobNamePrefix(name string) string {
	const max = 63 - 1 - 10
	if len(name) > max {
		name = name[:max]
	}
	return strings.TrimRight(name, "-.")
}
