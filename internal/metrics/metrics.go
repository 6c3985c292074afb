// Package metrics holds ocisync's Prometheus metrics. They are registered
// on controller-runtime's registry, on first use (see Register), so the
// manager's metrics endpoint (--metrics-bind-address) serves them next to
// controller-runtime's own.
//
// Labels take values from small fixed sets only: no Artifact name,
// namespace, reference, digest or registry host, whose number has no bound.
// Per-Artifact detail is in the Artifact's status and in the sync log line.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// Results of a sync: the values of the result label.
const (
	// ResultPublished: the output was written, or, without an output, a
	// new digest was resolved.
	ResultPublished = "published"
	// ResultUnchanged: the output already held the digest; nothing was
	// downloaded or written.
	ResultUnchanged = "unchanged"
	// ResultPending: a sync Job is at work on a volume output.
	ResultPending = "pending"
	// ResultFailed: the sync failed; the reason label holds the Ready
	// condition's reason.
	ResultFailed = "failed"
)

// Outputs: the values of the output label of the pulled bytes.
const (
	OutputConfigMap = "configmap"
	OutputSecret    = "secret"
	OutputVolume    = "volume"
)

// Blob cache lookups and evictions: the values of their result and
// reason labels.
const (
	CacheHit        = "hit"
	CacheMiss       = "miss"
	CacheBypass     = "bypass"
	EvictionLRU     = "lru"
	EvictionCorrupt = "corrupt"
)

var (
	syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocisync_artifact_syncs_total",
		Help: "Syncs of Artifacts (one per reconcile that checks the registry), by result (published, unchanged, pending, failed) and the reason of the Ready condition they left.",
	}, []string{"result", "reason"})

	syncDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ocisync_artifact_sync_duration_seconds",
		Help: "How long syncs of Artifacts took, by result: resolving the reference, and for the ConfigMap output downloading and writing it.",
		// From a cache hit (a HEAD request) to spec.timeout's default of
		// two minutes and beyond.
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"result"})

	pulledBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocisync_pulled_bytes_total",
		Help: "Bytes of verified layer content pulled for Artifacts, by output: downloaded by the manager for configmap and secret, and for volume pulled by a sync Job (counted when the manager sees the Job publish a new digest).",
	}, []string{"output"})

	registryRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocisync_registry_requests_total",
		Help: "HTTP requests of the manager to registries and their token services, each retry and redirect counted, by method and status code (\"error\" when no response came).",
	}, []string{"method", "code"})

	blobCacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocisync_blob_cache_lookups_total",
		Help: "Layer downloads asked of the manager's blob cache, by result: hit (served from disk after verifying it), miss (downloaded once and stored) or bypass (the cache is off or the blob is larger than it).",
	}, []string{"result"})

	blobCacheEvictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocisync_blob_cache_evictions_total",
		Help: "Blobs removed from the manager's blob cache, by reason: lru (least recently used, to stay within --blob-cache-size) or corrupt (the file on disk no longer matched its digest).",
	}, []string{"reason"})

	eventsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocisync_events_dropped_total",
		Help: "Kubernetes Events the manager recorded but did not write, by reason: queue full (the API server could not keep up), write failed, or unreferenceable.",
	}, []string{"reason"})

	webhookEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocisync_webhook_events_total",
		Help: "Requests to the push receiver, by provider and result: accepted, ignored (nothing of interest, such as a blob push), unauthorized, malformed, too_large, busy (answered 429) or failed.",
	}, []string{"provider", "result"})

	artifacts = &artifactsCollector{desc: prometheus.NewDesc(
		"ocisync_artifacts",
		"Artifacts by the status of their Ready condition (True, False, or Unknown, also when it is missing), as the leader's cache holds them at scrape time.",
		[]string{"ready"}, nil,
	)}
)

// Register registers ocisync's metrics on controller-runtime's registry,
// once; later calls do nothing. Every function of this package that
// counts calls it too. It is not done at init: the CLI commands link this
// package through the controller but never count, and should not pay for
// the registration at start.
func Register() { registerOnce() }

var registerOnce = sync.OnceFunc(func() {
	ctrlmetrics.Registry.MustRegister(syncs, syncDuration, pulledBytes, registryRequests, blobCacheLookups, blobCacheEvictions, eventsDropped, webhookEvents, artifacts)
	// Series that exist from the start, at zero, so that rates and alerts
	// work before the first sync of each kind.
	for _, r := range []string{ResultPublished, ResultUnchanged} {
		syncs.WithLabelValues(r, v1alpha1.ReasonSucceeded)
		syncDuration.WithLabelValues(r)
	}
	syncs.WithLabelValues(ResultPending, v1alpha1.ReasonProgressing)
	syncDuration.WithLabelValues(ResultPending)
	syncDuration.WithLabelValues(ResultFailed)
	pulledBytes.WithLabelValues(OutputConfigMap)
	pulledBytes.WithLabelValues(OutputSecret)
	pulledBytes.WithLabelValues(OutputVolume)
	for _, r := range []string{CacheHit, CacheMiss, CacheBypass} {
		blobCacheLookups.WithLabelValues(r)
	}
	for _, r := range []string{EvictionLRU, EvictionCorrupt} {
		blobCacheEvictions.WithLabelValues(r)
	}
})

// ObserveSync records one sync: its result, the reason of the Ready
// condition it left, and how long it took.
func ObserveSync(result, reason string, d time.Duration) {
	Register()
	syncs.WithLabelValues(result, reason).Inc()
	syncDuration.WithLabelValues(result).Observe(d.Seconds())
}

// ObserveWebhook counts one request to the push receiver.
func ObserveWebhook(provider, result string) {
	Register()
	webhookEvents.WithLabelValues(provider, result).Inc()
}

// ObserveEventDropped counts one Event dropped for reason.
func ObserveEventDropped(reason string) {
	Register()
	eventsDropped.WithLabelValues(reason).Inc()
}

// AddPulledBytes counts n bytes of layer content pulled for output.
func AddPulledBytes(output string, n int64) {
	Register()
	if n > 0 {
		pulledBytes.WithLabelValues(output).Add(float64(n))
	}
}

// ObserveBlobCacheLookup counts one lookup in the blob cache by result
// (CacheHit, CacheMiss or CacheBypass).
func ObserveBlobCacheLookup(result string) {
	Register()
	blobCacheLookups.WithLabelValues(result).Inc()
}

// ObserveBlobCacheEviction counts one blob removed from the blob cache by
// reason (EvictionLRU or EvictionCorrupt).
func ObserveBlobCacheEviction(reason string) {
	Register()
	blobCacheEvictions.WithLabelValues(reason).Inc()
}

// InstrumentRoundTripper counts every request next sends in
// ocisync_registry_requests_total; nil next means http.DefaultTransport.
// The method needs no bounding: only ocisync's registry client chooses it.
func InstrumentRoundTripper(next http.RoundTripper) http.RoundTripper {
	Register()
	if next == nil {
		next = http.DefaultTransport
	}
	return &countingTransport{next: next}
}

type countingTransport struct {
	next http.RoundTripper
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	registryRequests.WithLabelValues(req.Method, code).Inc()
	return resp, err
}

// CloseIdleConnections passes on to next, as http.Client expects of its
// transport.
func (t *countingTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// ReportArtifacts makes ocisync_artifacts count the Artifacts that reader
// lists, once elected is closed. Counting on scrape, rather than on each
// status change, stays right across deletions and restarts. Only the
// leader reports, so that summing over replicas counts each Artifact once.
// A later call replaces the earlier.
func ReportArtifacts(reader client.Reader, elected <-chan struct{}) {
	Register()
	artifacts.source.Store(&artifactSource{reader: reader, elected: elected})
}

// listTimeout bounds a scrape's List: the cache answers from memory, but
// waits for an informer that has not synced yet.
const listTimeout = 5 * time.Second

type artifactSource struct {
	reader  client.Reader
	elected <-chan struct{}
}

type artifactsCollector struct {
	desc   *prometheus.Desc
	source atomic.Pointer[artifactSource]
}

func (c *artifactsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *artifactsCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.source.Load()
	if src == nil {
		return
	}
	select {
	case <-src.elected:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	var list v1alpha1.ArtifactList
	// Read only: the cache's objects need no copy.
	if err := src.reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		// Left out rather than failing the scrape, which would hide every
		// other metric. The cache starts after the metrics endpoint.
		if notStarted := (*cache.ErrCacheNotStarted)(nil); !errors.As(err, &notStarted) {
			ctrl.Log.WithName("metrics").Error(err, "listing Artifacts for ocisync_artifacts; the metric is left out of this scrape")
		}
		return
	}
	counts := map[metav1.ConditionStatus]int{metav1.ConditionTrue: 0, metav1.ConditionFalse: 0, metav1.ConditionUnknown: 0}
	for i := range list.Items {
		status := metav1.ConditionUnknown
		if ready := apimeta.FindStatusCondition(list.Items[i].Status.Conditions, v1alpha1.ConditionReady); ready != nil {
			status = ready.Status
		}
		if _, ok := counts[status]; !ok {
			status = metav1.ConditionUnknown
		}
		counts[status]++
	}
	for status, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(status))
	}
}
