package controller

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/eventsink"
	"github.com/ocisync/ocisync/internal/metrics"
	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/transport"
	"github.com/ocisync/ocisync/internal/rollout"
)

// Field indexes on Artifacts, so that a Secret or ServiceAccount event
// finds the Artifacts that use it without listing every Artifact.
const (
	indexSecretNames    = ".spec.secretNames"
	indexServiceAccount = ".spec.serviceAccountName"
	indexClaimName      = ".spec.volume.claimName"
	indexOutputSecret   = ".spec.secret.name"
)

// DefaultConcurrentReconciles is how many Artifacts sync at once by
// default. A sync mostly waits on its registry and the API server, so
// more workers than cores pay off; ten keeps what the ConfigMap output
// holds in memory at once (up to 1 MiB per sync) small, and the
// per-registry limit on requests in flight, not this, is what protects a
// registry.
const DefaultConcurrentReconciles = 10

// CacheOptions limits what the manager caches to what the reconciler
// reads, so that its memory follows the Artifacts rather than the cluster:
// of all Jobs and ConfigMaps, only those ocisync made (labelled with
// v1alpha1.LabelArtifactName); Secrets, ServiceAccounts, claims and the
// apps workloads spec.rollout may name as metadata only
// (SetupWithManager), trimmed to what their watches use.
// A read of a kind the manager does not watch fails rather than starting
// a cluster-wide informer unnoticed.
//
// scope narrows every cache further: to its namespaces, and to the
// Artifacts its selector matches and the outputs labelled for them
// (Scope.outputLabels), so a shard holds nothing of the others' shards.
func CacheOptions(scope Scope) cache.Options {
	synced, err := labels.NewRequirement(v1alpha1.LabelArtifactName, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label name
	}
	// An output's shard labels are copies of its Artifact's for exactly
	// the keys the selector names, so the selector picks the outputs of
	// the Artifacts it picks.
	ours := labels.NewSelector().Add(*synced).Add(scope.requirements()...)
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&batchv1.Job{}: {Label: ours},
			// Drift of an output shows through this watch; an output
			// written before ocisync labelled them, or labelled for
			// another shard, is read from the API server, and labelled,
			// by its next sync (ownedConfigMap).
			&corev1.ConfigMap{}: {Label: ours},
		},
		DefaultTransform:            TrimForCache,
		ReaderFailOnMissingInformer: true,
	}
	if scope.sharded() {
		opts.ByObject[&v1alpha1.Artifact{}] = cache.ByObject{Label: scope.Selector}
	}
	if len(scope.Namespaces) > 0 {
		// The default of every informer, the metadata ones included.
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range scope.Namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// ClientOptions makes the manager's client read Secrets and
// ServiceAccounts from the API server: a typed read of one through the
// cache would start an informer holding every Secret of the cluster. The
// reconciler reads them through refCache, which asks the API server only
// for what changed.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{
		DisableFor: []client.Object{&corev1.Secret{}, &corev1.ServiceAccount{}},
	}}
}

// TrimForCache drops from every object the manager caches what the
// reconciler never reads: managed fields; of the objects watched as
// metadata everything but what identifies them (their annotations could
// hold a whole Secret: kubectl apply's last-applied-configuration); of
// Artifacts that annotation, a copy of the spec; and of output ConfigMaps
// their content, for its checksum (trimConfigMap). Other labels and
// annotations stay: an output ConfigMap is updated from its cached copy,
// which must not lose them.
func TrimForCache(in any) (any, error) {
	switch o := in.(type) {
	case *metav1.PartialObjectMetadata:
		return &metav1.PartialObjectMetadata{TypeMeta: o.TypeMeta, ObjectMeta: metav1.ObjectMeta{
			Namespace:         o.Namespace,
			Name:              o.Name,
			UID:               o.UID,
			ResourceVersion:   o.ResourceVersion,
			DeletionTimestamp: o.DeletionTimestamp,
		}}, nil
	case *corev1.ConfigMap:
		trimConfigMap(o)
	case *v1alpha1.Artifact:
		// Only the status is ever written from the cached copy.
		delete(o.Annotations, corev1.LastAppliedConfigAnnotation)
	}
	return cache.TransformStripManagedFields()(in)
}

// NewEventRecorder returns the recorder of the reconciler's Events, added
// to mgr so that it writes while mgr runs: a bounded queue and four
// writers (package eventsink) instead of client-go's broadcaster, which
// holds every Event for minutes and writes each in a goroutine of its own.
// Events are written as protobuf, which the API server decodes faster.
func NewEventRecorder(mgr ctrl.Manager) (*eventsink.Recorder, error) {
	cfg := rest.CopyConfig(mgr.GetConfig())
	cfg.ContentType = runtime.ContentTypeProtobuf
	cs, err := eventsv1client.NewForConfigAndClient(cfg, mgr.GetHTTPClient())
	if err != nil {
		return nil, fmt.Errorf("creating the Events client: %w", err)
	}
	rec := eventsink.New(func(ctx context.Context, ev *eventsv1.Event) error {
		_, err := cs.Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
		return err
	}, mgr.GetScheme(), "ocisync", eventsink.Options{})
	log := mgr.GetLogger().WithName("events")
	rec.OnDrop = func(reason string, ev *eventsv1.Event) {
		metrics.ObserveEventDropped(reason)
		log.V(1).Info("event dropped", "reason", reason, "eventReason", ev.Reason, "object", ev.Regarding.Namespace+"/"+ev.Regarding.Name)
	}
	if err := mgr.Add(rec); err != nil {
		return nil, fmt.Errorf("adding the Event recorder to the manager: %w", err)
	}
	return rec, nil
}

// SetupWithManager registers the reconciler, its indexes and its watches.
func (r *ArtifactReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.TokenCache == nil {
		r.TokenCache = auth.NewTokenCache()
	}
	if r.RegistryLimits == nil {
		r.RegistryLimits = &transport.Hosts{}
	}
	workers := r.MaxConcurrentReconciles
	if workers <= 0 {
		workers = DefaultConcurrentReconciles
	}
	// Registered here rather than at init, which every CLI command would
	// pay for; before the manager starts, so /metrics serves them at once.
	metrics.Register()
	// ocisync_artifacts counts what the manager's cache holds, at scrape
	// time, once this replica leads.
	metrics.ReportArtifacts(mgr.GetCache(), mgr.Elected())
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.Artifact{}, indexSecretNames, secretNamesOf); err != nil {
		return fmt.Errorf("indexing Artifacts by Secret: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.Artifact{}, indexServiceAccount, func(o client.Object) []string {
		if sa := o.(*v1alpha1.Artifact).Spec.ServiceAccountName; sa != "" {
			return []string{sa}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing Artifacts by ServiceAccount: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.Artifact{}, indexClaimName, func(o client.Object) []string {
		if v := o.(*v1alpha1.Artifact).Spec.Volume; v != nil {
			return []string{v.ClaimName}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing Artifacts by PersistentVolumeClaim: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.Artifact{}, indexOutputSecret, func(o client.Object) []string {
		if s := o.(*v1alpha1.Artifact).Spec.Secret; s != nil {
			return []string{s.Name}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing Artifacts by output Secret: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.Artifact{}, indexRepository, repositoryOf); err != nil {
		return fmt.Errorf("indexing Artifacts by repository: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.Artifact{}, indexRolloutWorkloads, rolloutWorkloadsOf); err != nil {
		return fmt.Errorf("indexing Artifacts by the workloads of spec.rollout: %w", err)
	}
	r.pushEvents = make(chan event.TypedGenericEvent[*v1alpha1.Artifact], pushQueueSize)
	r.verified = newVerifiedCache()
	r.informers = mgr.GetCache()
	if err := mgr.Add(manager.RunnableFunc(r.sweepRefsEvery(refSweepInterval))); err != nil {
		return fmt.Errorf("adding the sweep of kept Secrets and ServiceAccounts: %w", err)
	}
	// Secrets, ServiceAccounts and claims are watched as metadata only:
	// an event needs nothing more to find its Artifacts, and the cache
	// then holds no Secret content.
	b := ctrl.NewControllerManagedBy(mgr)
	if !r.DisableRollout {
		// The workloads of spec.rollout, as metadata: a creation (or a
		// re-creation, a new uid) brings the Artifacts that name it, so
		// that it gets the digest; their own updates, such as the
		// status writes of every rollout in the cluster, are let through
		// only when the uid changed.
		for _, kind := range rollout.Kinds() {
			b = b.Watches(rollout.Metadata(kind), handler.EnqueueRequestsFromMapFunc(r.artifactsForWorkload(kind)),
				builder.OnlyMetadata, builder.WithPredicates(workloadReplaced))
		}
	}
	return b.
		For(&v1alpha1.Artifact{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.ConfigMap{}, builder.WithPredicates(outputDrift)).
		// A sync Job's progress drives its Artifact's status.
		Owns(&batchv1.Job{}, builder.WithPredicates(jobProgress)).
		// A claim created after its Artifact starts the sync at once.
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.artifactsBy(ctx, o.GetNamespace(), indexClaimName, o.GetName())
		}), builder.OnlyMetadata, builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.artifactsForSecret), builder.OnlyMetadata).
		// Drift of a Secret output shows through the same metadata
		// watch: any version but the manager's own last write.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.artifactsBy(ctx, o.GetNamespace(), indexOutputSecret, o.GetName())
		}), builder.OnlyMetadata, builder.WithPredicates(r.outputSecretChanged())).
		Watches(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(r.artifactsForServiceAccount), builder.OnlyMetadata).
		// Registry pushes (TriggerChanges); the queue holds each Artifact
		// once however many pushes named it meanwhile.
		WatchesRawSource(source.Channel(r.pushEvents, &handler.TypedEnqueueRequestForObject[*v1alpha1.Artifact]{})).
		Named("artifact").
		WithOptions(controller.Options{RateLimiter: retryLimiter(), MaxConcurrentReconciles: workers}).
		Complete(r)
}

// retryLimiter spaces the retries of a failing Artifact from 100ms up to
// five minutes, the default interval: controller-runtime's default grows
// to 1000s, so an Artifact could stay failed long after its registry came
// back.
func retryLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, defaultInterval)
}

// outputDrift lets through the ConfigMap events that can mean drift:
// deletions, and updates that leave the content other than what the
// controller wrote (its checksum annotation). The controller's own creates
// and updates are left out: the sync they would start reads the Artifact
// from a cache that may not show the status just written, so it would
// download and announce the same digest again.
var outputDrift = predicate.Funcs{
	CreateFunc: func(event.CreateEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		cm, ok := e.ObjectNew.(*corev1.ConfigMap)
		return !ok || cm.Annotations[annotationChecksum] != observedChecksum(cm)
	},
}

// jobProgress lets through the Job events that can change what the
// Artifact reports: a Job finishing, and a Job going away (a superseded
// one whose Pods have stopped).
var jobProgress = predicate.Funcs{
	CreateFunc: func(event.CreateEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*batchv1.Job)
		cur, okNew := e.ObjectNew.(*batchv1.Job)
		return !okOld || !okNew || jobFinished(old) != jobFinished(cur) || !cur.DeletionTimestamp.IsZero()
	},
}

// workloadReplaced lets through the workload events that can leave a
// workload without its digest: creations, deletions, and updates that
// show another object under the name (a re-creation the watch saw only
// once relisted).
var workloadReplaced = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool { return e.ObjectOld.GetUID() != e.ObjectNew.GetUID() },
}

// artifactsForWorkload maps an event of a workload of kind to the
// Artifacts of its namespace that name it in spec.rollout.
func (r *ArtifactReconciler) artifactsForWorkload(kind string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.artifactsBy(ctx, o.GetNamespace(), indexRolloutWorkloads, rollout.IndexKey(kind, o.GetName()))
	}
}

// secretNamesOf lists the Secrets an Artifact names directly.
func secretNamesOf(o client.Object) []string {
	a := o.(*v1alpha1.Artifact)
	var names []string
	for _, ref := range a.Spec.PullSecrets {
		names = append(names, ref.Name)
	}
	if a.Spec.Verify != nil {
		names = append(names, a.Spec.Verify.SecretRef.Name)
	}
	if a.Spec.CertSecretRef != nil {
		names = append(names, a.Spec.CertSecretRef.Name)
	}
	return names
}

// artifactsForSecret finds the Artifacts that use a Secret, directly or
// through a ServiceAccount's imagePullSecrets, in the Secret's namespace.
// The ServiceAccounts looked at are those syncs read (the kept copies):
// exactly the ones whose imagePullSecrets matter. One that changed since
// is no worry: its own event synced its Artifacts, which read it again.
func (r *ArtifactReconciler) artifactsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.artifactsBy(ctx, o.GetNamespace(), indexSecretNames, o.GetName())
	_, accounts := r.refs()
	for _, sa := range accounts.kept(o.GetNamespace()) {
		for _, ref := range sa.ImagePullSecrets {
			if ref.Name == o.GetName() {
				reqs = append(reqs, r.artifactsBy(ctx, o.GetNamespace(), indexServiceAccount, sa.Name)...)
				break
			}
		}
	}
	return reqs
}

func (r *ArtifactReconciler) artifactsForServiceAccount(ctx context.Context, o client.Object) []reconcile.Request {
	return r.artifactsBy(ctx, o.GetNamespace(), indexServiceAccount, o.GetName())
}

func (r *ArtifactReconciler) artifactsBy(ctx context.Context, namespace, index, value string) []reconcile.Request {
	var list v1alpha1.ArtifactList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{index: value}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing Artifacts by index", "index", index)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, a := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: a.Namespace, Name: a.Name}})
	}
	return reqs
}

// refSweepInterval is how often the kept Secrets and ServiceAccounts that
// no Artifact references any more are dropped.
const refSweepInterval = 10 * time.Minute

// refs returns the kept copies of the Secrets and ServiceAccounts syncs
// read.
func (r *ArtifactReconciler) refs() (*refCache[*corev1.Secret], *refCache[*corev1.ServiceAccount]) {
	r.refsOnce.Do(func() {
		r.secrets, r.accounts = newSecretCache(), newAccountCache()
	})
	return r.secrets, r.accounts
}

// metadata reads what the manager's cache holds, bypassing the client's
// DisableFor, which would send metadata reads of Secrets to the API
// server too.
func (r *ArtifactReconciler) metadata() client.Reader {
	if r.informers != nil {
		return r.informers
	}
	return r.Client
}

// sweepRefsEvery runs sweepRefs every d until ctx ends.
func (r *ArtifactReconciler) sweepRefsEvery(d time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				r.sweepRefs(ctx)
			}
		}
	}
}

// sweepRefs drops the kept ServiceAccounts no Artifact names, then the
// kept Secrets that neither an Artifact nor a kept ServiceAccount names,
// and the remembered writes of Secret outputs no Artifact names any more.
// Lookups go through the Artifact indexes of the cache; one that fails
// keeps the entry.
func (r *ArtifactReconciler) sweepRefs(ctx context.Context) {
	secrets, accounts := r.refs()
	used := func(namespace, index, value string) bool {
		var list v1alpha1.ArtifactList
		err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{index: value})
		return err != nil || len(list.Items) > 0
	}
	accounts.sweep(func(sa *corev1.ServiceAccount) bool {
		return used(sa.Namespace, indexServiceAccount, sa.Name)
	})
	secrets.sweep(func(s *corev1.Secret) bool {
		if used(s.Namespace, indexSecretNames, s.Name) {
			return true
		}
		for _, sa := range accounts.kept(s.Namespace) {
			for _, ref := range sa.ImagePullSecrets {
				if ref.Name == s.Name {
					return true
				}
			}
		}
		return false
	})
	r.secretWrites.sweep(func(key types.NamespacedName) bool {
		return used(key.Namespace, indexOutputSecret, key.Name)
	})
}
