// Package controller holds the Artifact reconciler: it resolves an
// Artifact's reference, pulls and verifies the selected layers through
// internal/oci, and publishes them.
package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/blobcache"
	"github.com/ocisync/ocisync/internal/metrics"
	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

// Defaults for fields the API server defaults too; they matter for
// objects created before a default existed and in unit tests.
const (
	defaultInterval = 5 * time.Minute
	defaultTimeout  = 2 * time.Minute
	defaultMaxSize  = 100 << 20
)

// ArtifactReconciler syncs Artifacts.
type ArtifactReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder events.EventRecorder
	// TokenCache is shared by every Artifact's registry client. Tokens are
	// keyed by registry, scope and credential, so Artifacts of different
	// namespaces never share one. Nil gives the reconciler its own.
	TokenCache *auth.TokenCache
	// RegistryLimits bounds the requests in flight per registry and holds
	// back every Artifact's requests to a registry that answered 429. It
	// is shared by every Artifact's registry client; nil gives the
	// reconciler one with the defaults.
	RegistryLimits *transport.Hosts
	// MaxConcurrentReconciles is how many Artifacts sync at once; 0 means
	// DefaultConcurrentReconciles.
	MaxConcurrentReconciles int
	// APIReader reads what the manager does not cache (the Pods of a
	// failed sync Job). Nil reads through Client.
	APIReader client.Reader
	// SyncImage is the image of sync Jobs, which run `ocisync pull`.
	// Volume outputs fail with a clear message while it is empty.
	SyncImage string
	// SyncJobTTL is how long finished sync Jobs are kept; 0 means
	// DefaultSyncJobTTL.
	SyncJobTTL time.Duration
	// BlobCache keeps the layers the ConfigMap output downloads, so that a
	// layer shared by Artifacts of one repository, or unchanged in a new
	// version, is downloaded once. Nil downloads every time.
	BlobCache *blobcache.Cache
	// Scope is the part of the cluster the manager's cache holds
	// (CacheOptions): the outputs are labelled so that they stay in it.
	// The zero Scope is the whole cluster.
	Scope Scope
	// DisableRollout turns spec.rollout off (the manager's --rollout=false):
	// no workload is watched or patched, and Artifacts with spec.rollout
	// report RolloutTriggered False with reason RolloutDisabled.
	DisableRollout bool
	// Cloud gives the registry credentials of spec.provider aws, gcp and
	// azure, shared by every Artifact; nil uses one with the defaults
	// (the manager's identity only).
	Cloud *Cloud

	clients httpClients
	// cloudOnce makes cloudDefault when Cloud is nil.
	cloudOnce    sync.Once
	cloudDefault *Cloud

	// informers reads the manager's cache directly, for the metadata of
	// Secrets, ServiceAccounts and claims: the client reads Secrets and
	// ServiceAccounts from the API server (ClientOptions). SetupWithManager
	// sets it; nil reads through Client.
	informers client.Reader
	// secrets and accounts keep the Secrets and ServiceAccounts syncs
	// read; refs makes them.
	refsOnce sync.Once
	secrets  *refCache[*corev1.Secret]
	accounts *refCache[*corev1.ServiceAccount]
	// secretWrites remembers the manager's writes of Secret outputs, so
	// that an intact one costs no read (secret.go).
	secretWrites secretWrites
	// pushEvents carries the Artifacts a registry push made due
	// (TriggerChanges) into the controller's queue; SetupWithManager
	// makes it.
	pushEvents chan event.TypedGenericEvent[*v1alpha1.Artifact]
	// verified remembers recent verifications for all Artifacts
	// (verifiedCache); SetupWithManager makes it.
	verified *verifiedCache
}

// +kubebuilder:rbac:groups=ocisync.io,resources=artifacts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=ocisync.io,resources=artifacts/status,verbs=get;update;patch
// Owner references that block the owner's deletion need this where the
// OwnerReferencesPermissionEnforcement admission plugin runs.
// +kubebuilder:rbac:groups=ocisync.io,resources=artifacts/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update
// Secrets, ServiceAccounts and claims are watched as metadata (list,
// watch); a sync gets the Secrets and ServiceAccounts it uses one by one,
// and only the metadata of its claim, from the cache.
// +kubebuilder:rbac:groups="",resources=secrets;serviceaccounts,verbs=get;list;watch
// The Secret output (spec.secret) is created, and updated when it drifts
// or a new digest comes; never deleted: the garbage collector removes it
// with its Artifact.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;update
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// A Job of an Artifact that moved in from another shard is relabelled
// (patch) so that this shard's cache sees it.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list

// Reconcile runs one sync of an Artifact: check the spec, build the
// registry client, resolve the reference, and when the digest is new, the
// output drifted or the annotation reconcile.ocisync.io/requestedAt asks
// for it, pull, verify and publish. Status and conditions are written
// once, at the end, and only when they changed.
func (r *ArtifactReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	obj := &v1alpha1.Artifact{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		// Outputs carry owner references; garbage collection removes them.
		return ctrl.Result{}, nil
	}
	base := obj.DeepCopy()
	defer func() {
		if err := r.patchStatus(ctx, base, obj); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	if obj.Spec.Suspend {
		markSuspended(obj)
		return ctrl.Result{}, nil
	}
	var early *laterPatch
	if obj.Status.ObservedGeneration != obj.Generation || apimeta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady) == nil {
		// kstatus reads a changed spec as in progress from
		// observedGeneration alone. Reconciling and Ready=Unknown say
		// so to people too, but only for a sync slower than
		// progressDelay: a quick one would pay an API write for a
		// status nobody sees.
		progressing := obj.DeepCopy()
		markProgressing(progressing)
		early = r.patchLater(ctx, base, progressing, progressDelay)
	}

	// A new value of the requestedAt annotation forces one sync past the
	// "unchanged" shortcut; the value is recorded once a sync ran, as
	// Flux does with reconcile.fluxcd.io/requestedAt.
	requested := obj.Annotations[v1alpha1.AnnotationReconcileRequestedAt]
	force := requested != "" && requested != obj.Status.LastHandledReconcileAt
	start := time.Now()
	out, wait, err := r.sync(ctx, obj, force)
	if early != nil {
		if written := early.stop(); written != nil {
			base = written
		}
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// The deadline was spec.timeout's: say so, since "context
		// deadline exceeded" alone does not tell what to change.
		err = fmt.Errorf("the sync did not finish within spec.timeout (%s); check the registry or raise spec.timeout: %w", timeout(obj), err)
	}
	if requested != "" {
		obj.Status.LastHandledReconcileAt = requested
	}
	if err != nil {
		se := classify(err)
		r.markFailed(obj, se)
		observeSync(ctx, obj, out, force, metrics.ResultFailed, se.reason, se, time.Since(start))
		var paused *transport.PausedError
		switch {
		case se.stall:
			return ctrl.Result{}, nil
		case se.retryAfter > 0:
			return ctrl.Result{RequeueAfter: se.retryAfter}, nil
		case errors.As(err, &paused) && time.Until(paused.Until) > 0:
			// Ask again once the registry's pause ends, not sooner
			// (jittered: every Artifact of that registry waits for the
			// same instant).
			return ctrl.Result{RequeueAfter: jittered(time.Until(paused.Until), rand.Float64())}, nil
		}
		return ctrl.Result{}, err
	}
	if wait != nil {
		markPending(obj, wait.message)
		observeSync(ctx, obj, out, force, metrics.ResultPending, v1alpha1.ReasonProgressing, nil, time.Since(start))
		return ctrl.Result{RequeueAfter: wait.requeue}, nil
	}
	markReady(obj)
	done := metrics.ResultUnchanged
	if out.written {
		done = metrics.ResultPublished
	}
	observeSync(ctx, obj, out, force, done, v1alpha1.ReasonSucceeded, nil, time.Since(start))
	// Only a sync that wrote announces: one that found the output holding
	// the new digest already (its Artifact read before the cache showed
	// the status of the sync that wrote it) would announce it twice.
	if out.newDigest && out.written {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "Published", "Publish", "published %s", obj.Status.ResolvedReference)
	}
	if out.rolloutErr != nil {
		// The output is published and Ready says so; the workloads not
		// annotated (RolloutTriggered False) are retried with backoff.
		return ctrl.Result{}, out.rolloutErr
	}
	return ctrl.Result{RequeueAfter: jittered(interval(obj), rand.Float64())}, nil
}

// syncOutcome is what one sync did, for its log line and metrics.
type syncOutcome struct {
	// digest is the manifest digest resolved; empty when the sync failed
	// before.
	digest string
	// newDigest: a digest other than the last one was published.
	newDigest bool
	// written: the ConfigMap or Secret was written, a sync Job put a new digest
	// live on the claim, or, without an output, a new digest resolved.
	written bool
	// bytes of layer content pulled: downloaded by the manager for the
	// ConfigMap or Secret, or by the sync Job that just put a digest live.
	bytes int64
	// step is the name of the step that failed, if one did.
	step string
	// rolloutErr is why a workload of spec.rollout could not be
	// annotated; it does not fail the sync.
	rolloutErr error
}

// observeSync writes the sync's log line and metrics. The line carries
// names, digest and sizes, never credentials: the error messages of syncs
// are written to be shown in the status, where everyone with read access
// sees them.
func observeSync(ctx context.Context, obj *v1alpha1.Artifact, out *syncOutcome, forced bool, result, reason string, err error, d time.Duration) {
	metrics.ObserveSync(result, reason, d)
	switch {
	case obj.Spec.ConfigMap != nil:
		metrics.AddPulledBytes(metrics.OutputConfigMap, out.bytes)
	case obj.Spec.Secret != nil:
		metrics.AddPulledBytes(metrics.OutputSecret, out.bytes)
	case obj.Spec.Volume != nil:
		metrics.AddPulledBytes(metrics.OutputVolume, out.bytes)
	}
	kv := []any{"artifact", obj.Namespace + "/" + obj.Name, "result", result, "reason", reason}
	if out.digest != "" {
		kv = append(kv, "digest", out.digest)
	}
	// The JSON encoder writes the duration in seconds.
	kv = append(kv, "bytes", out.bytes, "duration", d)
	if forced {
		kv = append(kv, "requestedAt", obj.Status.LastHandledReconcileAt)
	}
	if err != nil {
		kv = append(kv, "step", out.step, "error", err.Error())
	}
	if out.rolloutErr != nil {
		kv = append(kv, "rolloutError", out.rolloutErr.Error())
	}
	ctrl.LoggerFrom(ctx).Info("sync", kv...)
}

// sync does the work and records what it published in obj.Status. It
// reports what it did, or, for the volume output, what the sync waits
// for. force skips the check that would find the output up to date.
func (r *ArtifactReconciler) sync(ctx context.Context, obj *v1alpha1.Artifact, force bool) (*syncOutcome, *pending, error) {
	out := &syncOutcome{}
	err := r.syncSteps(ctx, obj, force, out)
	if p := (*pendingError)(nil); errors.As(err, &p) {
		return out, p.pending, nil
	}
	return out, nil, err
}

// pendingError carries a pending sync out of syncSteps' error path.
type pendingError struct{ *pending }

func (p *pendingError) Error() string { return p.message }

func shortDigest(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) >= 12 {
		return hex[:12]
	}
	return d
}

func interval(obj *v1alpha1.Artifact) time.Duration {
	if d := obj.Spec.Interval.Duration; d > 0 {
		return d
	}
	return defaultInterval
}

// maxJitter is the largest fraction of the interval added to a
// successful sync's requeue.
const maxJitter = 0.1

// jittered returns d stretched by a fraction u ∈ [0, 1) of maxJitter, so
// that Artifacts created together (a GitOps apply, a manager restart) do
// not poll their registry together. A fresh u each sync, rather than a
// fixed phase per Artifact, keeps them drifting apart even when two drew
// close phases once; never shorter than d, so the registry is asked no
// more often than the interval says.
func jittered(d time.Duration, u float64) time.Duration {
	u = min(max(u, 0), 1)
	return d + time.Duration(float64(d)*maxJitter*u)
}

func timeout(obj *v1alpha1.Artifact) time.Duration {
	if t := obj.Spec.Timeout; t != nil && t.Duration > 0 {
		return t.Duration
	}
	return defaultTimeout
}

func maxSize(obj *v1alpha1.Artifact) int64 {
	if q := obj.Spec.MaxSize; q != nil && q.Value() > 0 {
		return q.Value()
	}
	return defaultMaxSize
}

// progressDelay is how long a sync of a new spec runs before its
// Artifact shows Reconciling.
const progressDelay = time.Second

// laterPatch is a status patch that is written only if it is not stopped
// within a delay.
type laterPatch struct {
	timer   *time.Timer
	done    chan struct{}
	written *v1alpha1.Artifact
}

// patchLater writes obj's status over base's after d, unless stopped
// first. obj and base must not change meanwhile: pass copies.
func (r *ArtifactReconciler) patchLater(ctx context.Context, base, obj *v1alpha1.Artifact, d time.Duration) *laterPatch {
	p := &laterPatch{done: make(chan struct{})}
	p.timer = time.AfterFunc(d, func() {
		defer close(p.done)
		if err := r.patchStatus(ctx, base, obj); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "marking the sync in progress")
			return
		}
		p.written = obj
	})
	return p
}

// stop cancels the patch, or waits for it if it has started, and returns
// the object as written, or nil when nothing was.
func (p *laterPatch) stop() *v1alpha1.Artifact {
	if p.timer.Stop() {
		return nil
	}
	<-p.done
	return p.written
}

// patchStatus writes obj's status when it differs from base's; an
// unchanged status costs no API call.
func (r *ArtifactReconciler) patchStatus(ctx context.Context, base, obj *v1alpha1.Artifact) error {
	if equality.Semantic.DeepEqual(base.Status, obj.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}
