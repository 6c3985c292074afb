package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/blobcache"
	"github.com/ocisync/ocisync/internal/controller"
	"github.com/ocisync/ocisync/internal/metrics"
	"github.com/ocisync/ocisync/internal/oci/transport"
	"github.com/ocisync/ocisync/internal/receiver"
)

// managerOptions are the flags of 'ocisync manager'.
type managerOptions struct {
	metricsAddr             string
	probeAddr               string
	pprofAddr               string
	leaderElect             bool
	leaderElectionID        string
	leaderElectionNamespace string
	syncImage               string
	syncJobTTL              time.Duration
	concurrent              int
	registryMaxInFlight     int
	blobCacheDir            string
	blobCacheSize           string
	watchLabelSelector      string
	watchNamespaces         string
	webhookAddr             string
	webhookTokenFile        string
	webhookToken            string // read from webhookTokenFile at start
	webhookCertDir          string
	rollout                 bool
	cloudSAIdentity         bool
	zap                     zap.Options
}

func (o *managerOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", "0",
		"address the Prometheus metrics endpoint (/metrics) binds to, served over plain HTTP (e.g. :8080); 0 turns metrics off")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081",
		"address the /healthz and /readyz probe endpoints bind to; 0 turns them off")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "0",
		"address Go's profiling endpoints (/debug/pprof/) bind to, over plain HTTP and without authentication, so keep it on localhost (e.g. 127.0.0.1:6060); 0 turns them off")
	fs.BoolVar(&o.leaderElect, "leader-elect", false,
		"elect a leader through a Lease so that only one of several replicas reconciles at a time")
	fs.StringVar(&o.leaderElectionID, "leader-election-id", "manager.ocisync.io",
		"name of the Lease used for leader election")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "",
		"namespace of the leader election Lease; empty means the manager's own namespace when running in a cluster")
	fs.StringVar(&o.syncImage, "sync-image", "",
		"image of the Jobs that sync volume outputs; it must run ocisync as its entrypoint (default: the manager's own image, found through the POD_NAME and POD_NAMESPACE environment variables)")
	fs.DurationVar(&o.syncJobTTL, "sync-job-ttl", controller.DefaultSyncJobTTL,
		"how long finished sync Jobs are kept for inspection before Kubernetes deletes them")
	fs.IntVar(&o.concurrent, "concurrent", controller.DefaultConcurrentReconciles,
		"how many Artifacts sync at once; a sync mostly waits on its registry, so more than the cores pay off, while each may hold up to 1 MiB of ConfigMap content in memory")
	fs.IntVar(&o.registryMaxInFlight, "registry-max-inflight", transport.DefaultMaxInFlight,
		"how many requests the manager sends to one registry (scheme and host) at once, all Artifacts together; a blob download counts until it ends")
	fs.StringVar(&o.blobCacheDir, "blob-cache-dir", filepath.Join(os.TempDir(), "ocisync-blobs"),
		"folder of the cache of layers the ConfigMap output downloads, shared by all Artifacts; its content is verified again on every read")
	fs.StringVar(&o.blobCacheSize, "blob-cache-size", "256Mi",
		"bound of the blob cache in bytes, as a quantity (e.g. 512Mi); least recently used layers are evicted past it, larger layers bypass it, and 0 turns the cache off")
	fs.StringVar(&o.watchLabelSelector, "watch-label-selector", "",
		"reconcile only the Artifacts whose labels match this label selector (e.g. ocisync.io/shard=a, or !ocisync.io/shard), so that managers with disjoint selectors split a cluster; their outputs carry the Artifact's labels the selector names. Empty: all Artifacts")
	fs.StringVar(&o.webhookAddr, "webhook-bind-address", "",
		"address the push receiver binds to (e.g. :9443), on every replica: registries POST their notifications to /hooks/PROVIDER (see docs/push-triggers.md), and the Artifacts that follow the pushed repository sync at once; empty turns it off")
	fs.StringVar(&o.webhookTokenFile, "webhook-token-file", "",
		"file holding the token registries must send (Authorization: Bearer TOKEN, or the provider's own way); whitespace around it is trimmed; required with --webhook-bind-address")
	fs.StringVar(&o.webhookCertDir, "webhook-cert-dir", "",
		"folder holding tls.crt and tls.key (as a kubernetes.io/tls Secret mounts them) for the push receiver to serve HTTPS, reloaded when they change; empty: plain HTTP, for a receiver behind an Ingress that terminates TLS")
	fs.BoolVar(&o.rollout, "rollout", true,
		"annotate the Pod templates of the Deployments, StatefulSets and DaemonSets that Artifacts name in spec.rollout with each new digest, so that they restart; this watches those kinds as metadata and needs get, list, watch and patch on them. false leaves every workload alone (the no-rollout install component)")
	fs.StringVar(&o.watchNamespaces, "watch-namespaces", "",
		"comma-separated namespaces to reconcile Artifacts in and to cache anything of (e.g. team-a,team-b); empty: all namespaces")
	fs.BoolVar(&o.cloudSAIdentity, "cloud-service-account-identity", false,
		"let an Artifact with a cloud provider (aws, gcp, azure) use its spec.serviceAccountName's cloud identity instead of the manager's: the manager requests short-lived tokens of those ServiceAccounts (it then needs serviceaccounts/token create, see config/components/cloud-service-account-identity); off, such Artifacts are Stalled")
	// --kubeconfig, with controller-runtime's usual precedence: the flag,
	// then $KUBECONFIG, then the in-cluster config, then ~/.kube/config.
	config.RegisterFlags(fs)
	o.zap.BindFlags(fs)
}

// runManager runs the Kubernetes controller manager until SIGINT or
// SIGTERM.
func runManager(args []string, stdout, stderr io.Writer) int {
	var opts managerOptions
	fs := flag.NewFlagSet("ocisync manager", flag.ContinueOnError)
	opts.bind(fs)
	// The flag package's own error output is an error line followed by the
	// whole flag list; print one line instead, and the list only for -h.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			managerUsage(stdout, fs)
			return 0
		}
		fmt.Fprintf(stderr, "ocisync manager: %v; run 'ocisync manager -h' for the flags\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ocisync manager: unexpected argument %q; the manager takes only flags, run 'ocisync manager -h' for them\n", fs.Arg(0))
		return 2
	}
	if opts.concurrent < 1 {
		fmt.Fprintf(stderr, "ocisync manager: --concurrent is %d; give at least 1\n", opts.concurrent)
		return 2
	}
	if opts.registryMaxInFlight < 1 {
		fmt.Fprintf(stderr, "ocisync manager: --registry-max-inflight is %d; give at least 1\n", opts.registryMaxInFlight)
		return 2
	}
	scope, err := parseScope(opts.watchLabelSelector, opts.watchNamespaces)
	if err != nil {
		fmt.Fprintf(stderr, "ocisync manager: %v\n", err)
		return 2
	}
	if opts.webhookAddr != "" {
		if opts.webhookTokenFile == "" {
			fmt.Fprintf(stderr, "ocisync manager: --webhook-bind-address needs --webhook-token-file: a file holding the token registries send\n")
			return 2
		}
		if opts.webhookToken, err = receiver.ReadToken(opts.webhookTokenFile); err != nil {
			fmt.Fprintf(stderr, "ocisync manager: %v\n", err)
			return 2
		}
	} else if opts.webhookTokenFile != "" || opts.webhookCertDir != "" {
		fmt.Fprintf(stderr, "ocisync manager: --webhook-token-file and --webhook-cert-dir need --webhook-bind-address, the address the push receiver listens on\n")
		return 2
	}
	cacheSize, err := resource.ParseQuantity(opts.blobCacheSize)
	if err != nil || cacheSize.Sign() < 0 {
		fmt.Fprintf(stderr, "ocisync manager: --blob-cache-size %q is not a size in bytes; give a quantity such as 256Mi, or 0 to turn the cache off\n", opts.blobCacheSize)
		return 2
	}
	// Opened before the manager starts, so that a folder it cannot use
	// stops the manager with this message rather than failing each sync.
	blobCache, err := blobcache.New(opts.blobCacheDir, cacheSize.Value())
	if err != nil {
		fmt.Fprintf(stderr, "ocisync manager: %v\n", err)
		return 1
	}

	// Find the cluster before installing the logger: controller-runtime
	// logs its own lines about failed config attempts, and a missing
	// cluster should be reported as the one line below.
	restConfig, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintf(stderr, "ocisync manager: cannot find a Kubernetes cluster to connect to: %v; run it inside a cluster, or point --kubeconfig or $KUBECONFIG at a kubeconfig file\n", err)
		return 1
	}

	opts.zap.DestWriter = stderr
	logger := zap.New(zap.UseFlagOptions(&opts.zap))
	ctrl.SetLogger(logger)
	// Where client-go is handed no logger it logs through klog's global
	// one; its lines must be JSON too, or they break a JSON log.
	klog.SetLogger(logger)
	setupLog := ctrl.Log.WithName("setup")
	if gc, limit := osMemoryTuning(); gc >= 0 || limit >= 0 {
		// What the manager chose where the environment chose nothing.
		var kv []any
		if gc >= 0 {
			kv = append(kv, "GOGC", gc)
		}
		if limit >= 0 {
			kv = append(kv, "GOMEMLIMIT", limit)
		}
		setupLog.Info("memory settings", kv...)
	}

	scheme, err := managerScheme()
	if err != nil {
		fmt.Fprintf(stderr, "ocisync manager: %v\n", err)
		return 1
	}

	if opts.syncJobTTL < time.Second {
		fmt.Fprintf(stderr, "ocisync manager: --sync-job-ttl is %s; give at least 1s\n", opts.syncJobTTL)
		return 2
	}

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   controller.CacheOptions(scope),
		Client:                  controller.ClientOptions(),
		Metrics:                 metricsserver.Options{BindAddress: opts.metricsAddr},
		HealthProbeBindAddress:  opts.probeAddr,
		PprofBindAddress:        opts.pprofAddr,
		LeaderElection:          opts.leaderElect,
		LeaderElectionID:        opts.leaderElectionID,
		LeaderElectionNamespace: opts.leaderElectionNamespace,
		// The process exits as soon as the manager stops, so handing the
		// Lease back at once is safe and lets a new replica take over
		// without waiting for the Lease to expire.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		fmt.Fprintf(stderr, "ocisync manager: cannot set up the controller manager for %s: %v\n", restConfig.Host, err)
		return 1
	}

	if opts.syncImage == "" {
		img, err := ownImage(context.Background(), mgr.GetAPIReader())
		if err != nil {
			setupLog.Info("no image for sync Jobs: Artifacts with a volume output will fail until the manager runs with --sync-image", "reason", err.Error())
		} else {
			opts.syncImage = img
		}
	}
	if err := setupControllers(mgr, opts, scope, blobCache); err != nil {
		fmt.Fprintf(stderr, "ocisync manager: cannot set up the controllers: %v\n", err)
		return 1
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		fmt.Fprintf(stderr, "ocisync manager: cannot add the health check: %v\n", err)
		return 1
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		fmt.Fprintf(stderr, "ocisync manager: cannot add the readiness check: %v\n", err)
		return 1
	}

	// Not ctrl.SetupSignalHandler: it may be called only once per process,
	// and runManager must stay callable from tests.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if opts.leaderElect && scope.Selector != nil && !flagSet(fs, "leader-election-id") {
		// Shards that share a Lease elect one leader among them all: the
		// others' Artifacts would wait for as long as it leads.
		setupLog.Info("this manager reconciles one shard of the Artifacts but uses the default leader election Lease; give each shard its own --leader-election-id, or shards in one namespace run one at a time", "leaderElectionID", opts.leaderElectionID)
	}
	setupLog.Info("starting manager", "version", Version, "apiServer", restConfig.Host,
		"leaderElection", opts.leaderElect, "healthProbeAddress", opts.probeAddr, "metricsAddress", opts.metricsAddr,
		"syncImage", opts.syncImage, "watchLabelSelector", opts.watchLabelSelector, "watchNamespaces", scope.Namespaces)
	if err := mgr.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "ocisync manager: the controller manager stopped with an error: %v\n", err)
		return 1
	}
	setupLog.Info("manager stopped")
	return 0
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// managerScheme holds every API type the manager reads or writes: Pods,
// Secrets, ServiceAccounts and ConfigMaps (core), Jobs (batch), Leases
// (coordination), Events (core and events) and Artifacts. Not all of
// client-go's built-in types: registering those costs every manager start
// thousands of allocations, and the scheme keeps them for its lifetime.
func managerScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, batchv1.AddToScheme, coordinationv1.AddToScheme, eventsv1.AddToScheme,
		authenticationv1.AddToScheme, // TokenRequest, for cloud identities of ServiceAccounts
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("cannot register the Kubernetes built-in API types: %w", err)
		}
	}
	if err := ocisyncv1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("cannot register the ocisync API types: %w", err)
	}
	// +kubebuilder:scaffold:scheme
	return s, nil
}

// ownImage finds the image of the Pod the manager runs in, named by the
// downward API variables POD_NAMESPACE and POD_NAME: the container named
// "manager", or the Pod's only container.
func ownImage(ctx context.Context, reader client.Reader) (string, error) {
	ns, name := os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	if ns == "" || name == "" {
		return "", errors.New("POD_NAMESPACE and POD_NAME are not set (config/manager sets them from the downward API)")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pod := &corev1.Pod{}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
		return "", fmt.Errorf("reading the manager's Pod %s/%s: %w", ns, name, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "manager" || len(pod.Spec.Containers) == 1 {
			return c.Image, nil
		}
	}
	return "", fmt.Errorf("the manager's Pod %s/%s has no container named \"manager\"", ns, name)
}

// parseScope reads --watch-label-selector and --watch-namespaces.
func parseScope(selector, namespaces string) (controller.Scope, error) {
	var scope controller.Scope
	if strings.TrimSpace(selector) != "" {
		sel, err := labels.Parse(selector)
		if err != nil {
			return scope, fmt.Errorf("--watch-label-selector %q is not a label selector: %v; give one such as ocisync.io/shard=a or !ocisync.io/shard", selector, err)
		}
		reqs, _ := sel.Requirements()
		for _, r := range reqs {
			// Outputs carry copies of the labels the selector names, and
			// this one names the Artifact on every output.
			if r.Key() == ocisyncv1alpha1.LabelArtifactName {
				return scope, fmt.Errorf("--watch-label-selector %q names the label %s, which ocisync sets on outputs itself; select on another label, such as ocisync.io/shard", selector, ocisyncv1alpha1.LabelArtifactName)
			}
		}
		scope.Selector = sel
	}
	if strings.TrimSpace(namespaces) != "" {
		for _, ns := range strings.Split(namespaces, ",") {
			ns = strings.TrimSpace(ns)
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return scope, fmt.Errorf("--watch-namespaces %q: %q is not a namespace name (%s); give namespace names separated by commas", namespaces, ns, errs[0])
			}
			if !slices.Contains(scope.Namespaces, ns) {
				scope.Namespaces = append(scope.Namespaces, ns)
			}
		}
	}
	return scope, nil
}

// pushWindow is how long the push receiver gathers events before it
// triggers the Artifacts of their repositories.
const pushWindow = 200 * time.Millisecond

// setupControllers registers the reconcilers with the manager.
func setupControllers(mgr ctrl.Manager, opts managerOptions, scope controller.Scope, blobCache *blobcache.Cache) error {
	recorder, err := controller.NewEventRecorder(mgr)
	if err != nil {
		return err
	}
	r := &controller.ArtifactReconciler{
		Client:     mgr.GetClient(),
		APIReader:  mgr.GetAPIReader(),
		Scheme:     mgr.GetScheme(),
		Recorder:   recorder,
		SyncImage:  opts.syncImage,
		SyncJobTTL: opts.syncJobTTL,
		BlobCache:  blobCache,
		Scope:      scope,
		Cloud:      &controller.Cloud{ServiceAccountIdentity: opts.cloudSAIdentity},

		DisableRollout:          !opts.rollout,
		MaxConcurrentReconciles: opts.concurrent,
		RegistryLimits:          &transport.Hosts{MaxInFlight: opts.registryMaxInFlight},
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Artifact controller: %w", err)
	}
	if opts.webhookAddr != "" {
		log := mgr.GetLogger().WithName("receiver")
		// Events for one repository within the window make one round of
		// syncs: registries retry, pipelines push many tags.
		// Every replica receives. The leader puts the Artifacts due
		// straight into its queue; a replica that does not lead (its
		// queue is not running) asks the leader by annotating them, so a
		// Service can route to any replica.
		elected := mgr.Elected()
		coalescer := receiver.NewCoalescer(pushWindow, func(changes []receiver.Change) {
			trigger, how := r.TriggerChanges, "queued"
			select {
			case <-elected:
			default:
				trigger, how = r.RequestChanges, "requested from the leader"
			}
			counts, err := trigger(context.Background(), changes)
			if err != nil {
				log.Error(err, "triggering the Artifacts of pushed repositories")
				return
			}
			for i, c := range changes {
				log.Info("push triggered syncs", "host", c.Host, "repository", c.Repository, "tag", c.Tag, "artifacts", counts[i], "how", how)
			}
		})
		h := receiver.NewHandler(opts.webhookToken, func(_ context.Context, _ string, changes []receiver.Change) ([]int, error) {
			return nil, coalescer.Add(changes)
		}, log)
		h.Observe = metrics.ObserveWebhook
		if err := mgr.Add(&receiver.Server{Addr: opts.webhookAddr, Handler: h, CertDir: opts.webhookCertDir}); err != nil {
			return fmt.Errorf("adding the push receiver: %w", err)
		}
	}
	// +kubebuilder:scaffold:builder
	return nil
}

func managerUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "Usage: ocisync manager [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Runs the Kubernetes controller manager until SIGINT or SIGTERM. It finds its")
	fmt.Fprintln(w, "cluster through --kubeconfig, $KUBECONFIG, the in-cluster service account or")
	fmt.Fprintln(w, "~/.kube/config, in that order.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "It logs to stderr as JSON, one object per line (--zap-encoder=console for")
	fmt.Fprintln(w, "text), with one line per sync: \"msg\":\"sync\" with the artifact")
	fmt.Fprintln(w, "(namespace/name), result, reason, digest, bytes pulled and duration (in")
	fmt.Fprintln(w, "seconds). With --metrics-bind-address it serves Prometheus metrics at")
	fmt.Fprintln(w, "/metrics: ocisync_artifact_syncs_total, ocisync_artifact_sync_duration_seconds,")
	fmt.Fprintln(w, "ocisync_pulled_bytes_total, ocisync_registry_requests_total,")
	fmt.Fprintln(w, "ocisync_blob_cache_lookups_total, ocisync_blob_cache_evictions_total and")
	fmt.Fprintln(w, "ocisync_artifacts, next to controller-runtime's own.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Flags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}
