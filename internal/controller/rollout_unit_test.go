package controller

import (
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// TestRolloutStepWithoutWorkloads covers what the rollout step decides
// before it looks at any workload: nothing to do without spec.rollout,
// and a manager with rollouts disabled says so in the condition.
func TestRolloutStepWithoutWorkloads(t *testing.T) {
	earlier := []v1alpha1.WorkloadRolloutStatus{{Kind: "Deployment", Name: "app", UID: "u1", Digest: "sha256:1"}}
	stale := metav1.Condition{Type: v1alpha1.ConditionRolloutTriggered, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded}
	tests := []struct {
		name        string
		disabled    bool
		rollout     *v1alpha1.RolloutSpec
		wantReason  string // of RolloutTriggered; "" for none
		wantRollout bool   // status.rollout kept
	}{
		{name: "no spec.rollout", rollout: nil},
		{name: "no workloads", rollout: &v1alpha1.RolloutSpec{}},
		{name: "disabled, no spec.rollout", disabled: true},
		{name: "disabled", disabled: true, rollout: &v1alpha1.RolloutSpec{Workloads: []v1alpha1.WorkloadRef{{Kind: "Deployment", Name: "app"}}},
			wantReason: v1alpha1.ReasonRolloutDisabled, wantRollout: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &v1alpha1.Artifact{
				Spec:   v1alpha1.ArtifactSpec{Rollout: tt.rollout},
				Status: v1alpha1.ArtifactStatus{Digest: "sha256:2", Rollout: earlier, Conditions: []metav1.Condition{stale}},
			}
			s := &syncState{obj: obj, out: &syncOutcome{}}
			if err := (&ArtifactReconciler{DisableRollout: tt.disabled}).rolloutStep(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			c := apimeta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionRolloutTriggered)
			switch {
			case tt.wantReason == "" && c != nil:
				t.Errorf("RolloutTriggered %+v, want none", c)
			case tt.wantReason != "" && (c == nil || c.Status != metav1.ConditionFalse || c.Reason != tt.wantReason):
				t.Errorf("RolloutTriggered %+v, want False %s", c, tt.wantReason)
			}
			if got := len(obj.Status.Rollout) > 0; got != tt.wantRollout {
				t.Errorf("status.rollout %+v; want kept: %v", obj.Status.Rollout, tt.wantRollout)
			}
			if s.out.rolloutErr != nil {
				t.Errorf("rolloutErr %v", s.out.rolloutErr)
			}
		})
	}
}
