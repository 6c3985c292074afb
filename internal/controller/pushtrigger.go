package controller

import (
	"context"
	"fmt"

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

// TriggerChanges is the receiver's Trigger: each change makes the
// Artifacts that follow its repository sync now, as they would at their
// interval (a HEAD, then a download only if the digest moved). The
// event's host narrows the match when some Artifacts name that host, and
// does not prevent it when none does: pushers and the cluster often name
// one registry differently. A tag narrows it too, for Artifacts that
// follow another tag; semver ranges follow every tag.
func (r *ArtifactReconciler) TriggerChanges(ctx context.Context, _ string, changes []receiver.Change) ([]int, error) {
	counts := make([]int, len(changes))
	for i, ch := range changes {
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
		due := all
		if len(sameHost) > 0 {
			due = sameHost
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
