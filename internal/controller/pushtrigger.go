package controller

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci/reference"
	"github.com/ocisync/ocisync/internal/receiver"
)

// indexRepository indexes Artifacts by the repository path they follow,
// so that a push finds them without listing every Artifact.
const indexRepository = ".spec.reference.repository"

// pushQueueSize bounds the Artifacts waiting to be enqueued after pushes;
// beyond it the receiver answers 429 and the registry retries.
const pushQueueSize = 4096

// repositoryOf is the repository path an Artifact follows, for push
// triggers: none for one pinned to a digest, which no push changes, or
// whose reference does not parse (it is Stalled anyway).
func repositoryOf(o client.Object) []string {
	ref, err := reference.Parse(o.(*v1alpha1.Artifact).Spec.Reference)
	if err != nil || ref.Digest != "" {
		return nil
	}
	return []string{ref.Repository}
}

// dueAfter returns the Artifacts a change makes due: those that follow
// its repository. The event's host narrows the match when some Artifacts
// name that host, and does not prevent it when none does: pushers and
// the cluster often name one registry differently. A tag narrows it too,
// for Artifacts that follow another tag; semver ranges follow every tag.
// Suspended Artifacts are left alone.
func (r *ArtifactReconciler) dueAfter(ctx context.Context, ch receiver.Change) ([]*v1alpha1.Artifact, error) {
	var list v1alpha1.ArtifactList
	if err := r.List(ctx, &list, client.MatchingFields{indexRepository: ch.Repository}); err != nil {
		return nil, fmt.Errorf("listing the Artifacts of repository %s: %w", ch.Repository, err)
	}
	var sameHost, all []*v1alpha1.Artifact
	for j := range list.Items {
		a := &list.Items[j]
		ref, err := reference.Parse(a.Spec.Reference)
		if err != nil || a.Spec.Suspend {
			continue
		}
		if ch.Tag != "" && a.Spec.SemVer == "" && ref.WithDefaultTag().Tag != ch.Tag {
			continue
		}
		all = append(all, a)
		if ch.Host != "" && ref.Registry == ch.Host {
			sameHost = append(sameHost, a)
		}
	}
	if len(sameHost) > 0 {
		return sameHost, nil
	}
	return all, nil
}

// TriggerChanges is the leader's Trigger: each change makes the
// Artifacts that follow its repository (dueAfter) sync now, as they
// would at their interval (a HEAD, then a download only if the digest
// moved). Nothing is written: they go straight into the queue.
func (r *ArtifactReconciler) TriggerChanges(ctx context.Context, changes []receiver.Change) ([]int, error) {
	counts := make([]int, len(changes))
	for i, ch := range changes {
		due, err := r.dueAfter(ctx, ch)
		if err != nil {
			return nil, err
		}
		for _, a := range due {
			select {
			case r.pushEvents <- event.TypedGenericEvent[*v1alpha1.Artifact]{Object: a}:
				counts[i]++
			default:
				return nil, receiver.ErrBusy
			}
		}
	}
	return counts, nil
}

// RequestChanges is the Trigger of a replica that does not lead: its
// queue is not running, so it asks the leader through the API server,
// setting reconcile.ocisync.io/requestedAt on each Artifact due (the
// annotation kubectl users set by hand). The leader syncs on the change
// of the annotation. An Artifact that appears twice across changes is
// annotated once.
func (r *ArtifactReconciler) RequestChanges(ctx context.Context, changes []receiver.Change) ([]int, error) {
	counts := make([]int, len(changes))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	done := map[types.NamespacedName]bool{}
	for i, ch := range changes {
		due, err := r.dueAfter(ctx, ch)
		if err != nil {
			return nil, err
		}
		for _, a := range due {
			key := client.ObjectKeyFromObject(a)
			if !done[key] {
				done[key] = true
				patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, v1alpha1.AnnotationReconcileRequestedAt, now)
				if err := r.Patch(ctx, a, client.RawPatch(types.MergePatchType, patch)); err != nil {
					if apierrors.IsNotFound(err) {
						continue
					}
					return nil, fmt.Errorf("asking the leader to sync Artifact %s: %w", key, err)
				}
			}
			counts[i]++
		}
	}
	return counts, nil
}
