package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/rollout"
)

// Restarting the workloads of spec.rollout lets the apps controllers roll
// their Pods; the manager only patches their Pod templates. That is still
// the power to restart any Deployment, StatefulSet or DaemonSet of a
// namespace where someone may create an Artifact: the no-rollout install
// component (config/components/no-rollout) leaves these rules out and runs
// the manager with --rollout=false.
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch;patch

// indexRolloutWorkloads indexes Artifacts by the workloads spec.rollout
// names (rollout.IndexKey), so that a workload's creation finds them.
const indexRolloutWorkloads = ".spec.rollout.workloads"

// rolloutWorkloadsOf lists the index keys of the workloads an Artifact
// names in spec.rollout.
func rolloutWorkloadsOf(o client.Object) []string {
	r := o.(*v1alpha1.Artifact).Spec.Rollout
	if r == nil {
		return nil
	}
	keys := make([]string, 0, len(r.Workloads))
	for _, w := range r.Workloads {
		keys = append(keys, rollout.IndexKey(w.Kind, w.Name))
	}
	return keys
}

// rolloutStep annotates the Pod template of each workload of spec.rollout
// with the digest the output holds (status.digest, which record set or an
// up-to-date output kept), once per digest: status.rollout remembers what
// each workload was annotated with, under which uid, so that in steady
// state the step reads only the manager's cache of workload metadata and
// writes nothing. It runs after record, and also when the output was found
// up to date (a workload created since, or a patch that failed before).
//
// A failed patch never fails the sync: the output is published. It sets
// RolloutTriggered False and s.out.rolloutErr, which Reconcile returns
// for a retry with backoff. A workload that does not exist is waited for:
// its creation brings the Artifact back (SetupWithManager).
func (r *ArtifactReconciler) rolloutStep(ctx context.Context, s *syncState) error {
	obj := s.obj
	spec := obj.Spec.Rollout
	if spec == nil || len(spec.Workloads) == 0 {
		obj.Status.Rollout = nil
		apimeta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionRolloutTriggered)
		return nil
	}
	if r.DisableRollout {
		setCondition(obj, v1alpha1.ConditionRolloutTriggered, metav1.ConditionFalse, v1alpha1.ReasonRolloutDisabled,
			"the manager runs with --rollout=false (the no-rollout install component), so it does not annotate workloads; status.rollout is what was annotated before")
		return nil
	}
	digest := obj.Status.Digest
	if digest == "" {
		return nil
	}
	key := rollout.AnnotationKey(obj.Name)
	var (
		done, patched, missing, failed []string
		errs                           []error
		status                         = make([]v1alpha1.WorkloadRolloutStatus, 0, len(spec.Workloads))
	)
	for _, w := range spec.Workloads {
		what := w.Kind + " " + w.Name
		prev := rolloutStatusOf(obj, w)
		uid, err := r.workloadUID(ctx, obj.Namespace, w)
		switch {
		case err != nil:
			failed, errs = append(failed, what), append(errs, fmt.Errorf("reading %s: %w", what, err))
			if prev != nil {
				status = append(status, *prev)
			}
			continue
		case uid == "":
			missing = append(missing, what)
			continue
		case prev != nil && prev.Digest == digest && prev.UID == string(uid):
			done = append(done, what)
			status = append(status, *prev)
			continue
		}
		st, wrote, err := r.annotateWorkload(ctx, obj.Namespace, w, key, digest)
		switch {
		case err != nil:
			failed, errs = append(failed, what), append(errs, err)
			if prev != nil {
				status = append(status, *prev)
			}
		case st == nil:
			missing = append(missing, what)
		default:
			status = append(status, *st)
			done = append(done, what)
			if wrote {
				patched = append(patched, what)
			}
		}
	}
	obj.Status.Rollout = status
	if len(status) == 0 {
		obj.Status.Rollout = nil
	}
	if len(patched) > 0 {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, v1alpha1.ConditionRolloutTriggered, "Rollout",
			"annotated the Pod template of %s with %s=%s", strings.Join(patched, ", "), key, digest)
	}

	annotated := ""
	if len(done) > 0 {
		annotated = "; " + strings.Join(done, ", ") + " annotated with " + digest
	}
	switch {
	case len(errs) > 0:
		err := errors.Join(errs...)
		msg := "could not annotate " + strings.Join(failed, ", ") + " (retrying): " + strings.ReplaceAll(err.Error(), "\n", "; ") + annotated
		if len(missing) > 0 {
			msg += "; waiting for " + strings.Join(missing, ", ") + " to be created"
		}
		prev := apimeta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionRolloutTriggered)
		news := prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != v1alpha1.ReasonRolloutFailed || prev.Message != truncateMessage(msg)
		setCondition(obj, v1alpha1.ConditionRolloutTriggered, metav1.ConditionFalse, v1alpha1.ReasonRolloutFailed, msg)
		if news {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.ReasonRolloutFailed, "Rollout", "%s", truncateMessage(msg))
		}
		s.out.rolloutErr = fmt.Errorf("rollout of %s: %w", digest, err)
	case len(missing) > 0:
		setCondition(obj, v1alpha1.ConditionRolloutTriggered, metav1.ConditionFalse, v1alpha1.ReasonWorkloadNotFound,
			"waiting for "+strings.Join(missing, ", ")+" to be created in namespace "+obj.Namespace+annotated)
	default:
		setCondition(obj, v1alpha1.ConditionRolloutTriggered, metav1.ConditionTrue, v1alpha1.ReasonSucceeded,
			strings.Join(done, ", ")+" annotated with "+key+"="+digest)
	}
	return nil
}

// rolloutStatusOf returns the status.rollout entry of workload w, or nil.
func rolloutStatusOf(obj *v1alpha1.Artifact, w v1alpha1.WorkloadRef) *v1alpha1.WorkloadRolloutStatus {
	for i := range obj.Status.Rollout {
		if st := &obj.Status.Rollout[i]; st.Kind == w.Kind && st.Name == w.Name {
			return st
		}
	}
	return nil
}

// workloadUID reads the uid of workload w in namespace from the manager's
// cache of workload metadata; "" when it does not exist or is being
// deleted.
func (r *ArtifactReconciler) workloadUID(ctx context.Context, namespace string, w v1alpha1.WorkloadRef) (types.UID, error) {
	m := rollout.Metadata(w.Kind)
	if m == nil {
		return "", fmt.Errorf("kind %q is not one of %s", w.Kind, strings.Join(rollout.Kinds(), ", "))
	}
	if err := r.metadata().Get(ctx, types.NamespacedName{Namespace: namespace, Name: w.Name}, m); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", err
	}
	if !m.DeletionTimestamp.IsZero() {
		return "", nil
	}
	return m.UID, nil
}

// annotateWorkload makes the Pod template of workload w carry key=digest.
// It reads the workload from the API server first, so that a template
// that holds the digest already (annotated before status.rollout said so,
// or by hand) is not patched. It returns what to record, nil when the
// workload is gone, and whether it patched.
func (r *ArtifactReconciler) annotateWorkload(ctx context.Context, namespace string, w v1alpha1.WorkloadRef, key, digest string) (*v1alpha1.WorkloadRolloutStatus, bool, error) {
	what := w.Kind + " " + w.Name
	current := rollout.Object(w.Kind)
	if err := r.reader().Get(ctx, types.NamespacedName{Namespace: namespace, Name: w.Name}, current); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading %s: %w", what, err)
	}
	if !current.GetDeletionTimestamp().IsZero() {
		return nil, false, nil
	}
	st := &v1alpha1.WorkloadRolloutStatus{Kind: w.Kind, Name: w.Name, UID: string(current.GetUID()), Digest: digest}
	if v, ok := rollout.TemplateAnnotation(current, key); ok && v == digest {
		return st, false, nil
	}
	data, err := rollout.Patch(key, digest)
	if err != nil {
		return nil, false, err
	}
	// The metadata of the answer is all that is needed.
	target := rollout.Metadata(w.Kind)
	target.Namespace, target.Name = namespace, w.Name
	if err := r.Patch(ctx, target, client.RawPatch(types.MergePatchType, data)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("patching %s: %w", what, err)
	}
	st.UID = string(target.UID)
	return st, true, nil
}
