package controller

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// The status follows kstatus: Ready is always present; Reconciling and
// Stalled are present only while True; observedGeneration says which spec
// the conditions describe.

func setCondition(obj *v1alpha1.Artifact, typ string, status metav1.ConditionStatus, reason, msg string) {
	apimeta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{
		Type:               typ,
		Status:             status,
		Reason:             reason,
		Message:            truncateMessage(msg),
		ObservedGeneration: obj.Generation,
	})
}

// truncateMessage keeps messages within the API's 32768-byte limit.
func truncateMessage(msg string) string {
	const limit = 32000
	if len(msg) > limit {
		return msg[:limit] + "..."
	}
	return msg
}

func isReady(obj *v1alpha1.Artifact) bool {
	return apimeta.IsStatusConditionTrue(obj.Status.Conditions, v1alpha1.ConditionReady)
}

// markProgressing: a sync of a new spec has started.
func markProgressing(obj *v1alpha1.Artifact) {
	msg := "syncing generation " + strconv.FormatInt(obj.Generation, 10)
	setCondition(obj, v1alpha1.ConditionReconciling, metav1.ConditionTrue, v1alpha1.ReasonProgressing, msg)
	apimeta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionStalled)
	if !isReady(obj) {
		setCondition(obj, v1alpha1.ConditionReady, metav1.ConditionUnknown, v1alpha1.ReasonProgressing, msg)
	}
}

// markPending: a sync Job is at work. Ready is Unknown until it finishes,
// while the previous version stays live on the claim.
func markPending(obj *v1alpha1.Artifact, msg string) {
	if v := obj.Status.Volume; v != nil && v.LiveDigest != "" && v.LiveDigest != v.SyncDigest {
		msg += "; " + v.LiveDigest + " stays live until it is done"
	}
	setCondition(obj, v1alpha1.ConditionReconciling, metav1.ConditionTrue, v1alpha1.ReasonProgressing, msg)
	setCondition(obj, v1alpha1.ConditionReady, metav1.ConditionUnknown, v1alpha1.ReasonProgressing, msg)
	apimeta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionStalled)
	obj.Status.ObservedGeneration = obj.Generation
}

// markReady: the output holds what the spec names.
func markReady(obj *v1alpha1.Artifact) {
	var msg string
	switch {
	case obj.Spec.ConfigMap != nil:
		msg = "published " + obj.Status.ResolvedReference + " to ConfigMap " + obj.Spec.ConfigMap.Name
	case obj.Spec.Secret != nil:
		msg = "published " + obj.Status.ResolvedReference + " to Secret " + obj.Spec.Secret.Name
	case obj.Spec.Volume != nil:
		msg = "published " + obj.Status.ResolvedReference + " to claim " + obj.Spec.Volume.ClaimName
	default:
		msg = "resolved " + obj.Status.ResolvedReference
	}
	setCondition(obj, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, msg)
	apimeta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionReconciling)
	apimeta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionStalled)
	obj.Status.ObservedGeneration = obj.Generation
}

// markFailed: Ready turns False with the failure's reason. A stalling
// failure sets Stalled; any other keeps Reconciling, since a retry is
// coming. A Warning event is recorded when the failure is news, so that a
// failure repeating every backoff does not spam events.
func (r *ArtifactReconciler) markFailed(obj *v1alpha1.Artifact, se *syncError) {
	msg := se.Error()
	prev := apimeta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
	news := prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != se.reason || prev.Message != truncateMessage(msg)
	setCondition(obj, v1alpha1.ConditionReady, metav1.ConditionFalse, se.reason, msg)
	if se.stall {
		setCondition(obj, v1alpha1.ConditionStalled, metav1.ConditionTrue, se.reason, msg)
		apimeta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionReconciling)
	} else {
		setCondition(obj, v1alpha1.ConditionReconciling, metav1.ConditionTrue, v1alpha1.ReasonProgressing, "retrying after: "+msg)
		apimeta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionStalled)
	}
	obj.Status.ObservedGeneration = obj.Generation
	if news {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, se.reason, "Sync", "%s", truncateMessage(msg))
	}
}

// markSuspended: nothing runs; the last status stays, but a suspended
// object must still carry Ready.
func markSuspended(obj *v1alpha1.Artifact) {
	apimeta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionReconciling)
	if ready := apimeta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady); ready == nil {
		setCondition(obj, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "suspended before the first sync; set spec.suspend to false to sync")
	} else {
		// The last outcome stands, now observed for the suspending spec:
		// kubectl wait reads a condition of an older generation as stale
		// and would wait forever.
		ready.ObservedGeneration = obj.Generation
	}
	obj.Status.ObservedGeneration = obj.Generation
}
