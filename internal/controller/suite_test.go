package controller

import (
	"context"
	"io"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/test/controlplane"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// The suite runs the real ArtifactReconciler in a manager against a real
// control plane (etcd and kube-apiserver through envtest) and real
// Distribution registries. `make test` builds the binaries and sets
// KUBEBUILDER_ASSETS, OCISYNC_TEST_REGISTRY and OCISYNC_TEST_ORAS.
func TestController(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(waitTimeout)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	SetDefaultConsistentlyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "ocisync Artifact controller")
}

// Users of the private registry.
const (
	privateUser     = "alice"
	privatePassword = "alice-s3cret-Pa55"
)

var (
	// k8sClient talks to the API server directly, without a cache, so
	// that what a spec reads is what the server holds.
	k8sClient client.Client
	// k8sWatch watches, to count the writes an object sees.
	k8sWatch client.WithWatch
	// mgrCache is the manager's cache and reconciler the manager's
	// reconciler, to check what they hold.
	mgrCache   cache.Cache
	reconciler *ArtifactReconciler
	scheme     *runtime.Scheme
	// mgrElected is the manager's, for ocisync_artifacts (metrics).
	mgrElected <-chan struct{}
	// apiConfig reaches the API server, for the specs' own managers.
	apiConfig *rest.Config

	// plainRegistry serves plain HTTP without authentication; specs reach
	// it through proxy.
	plainRegistry *registrytest.Registry
	// privateRegistry serves HTTPS from a test CA with htpasswd users.
	privateRegistry *registrytest.Registry
	// proxy fronts plainRegistry and injects faults.
	proxy *registryProxy
	// oras is the ORAS CLI, to push artifacts exactly as ORAS makes them.
	oras *registrytest.CLI
	// ocisync is the built ocisync binary, to run a sync Job's command.
	ocisync *registrytest.CLI
)

// The sync Jobs' settings in the suite's reconciler.
const (
	syncImage  = "registry.example/ocisync:test"
	syncJobTTL = 7 * time.Minute
)

var _ = BeforeSuite(func() {

	// registrytest fails through GinkgoT with "run make test" when its
	// binaries are missing; its cleanups run through DeferCleanup at the
	// end of the suite.
	By("starting the registries")
	plainRegistry = registrytest.Start(GinkgoT(), registrytest.Options{Auth: registrytest.AuthNone})
	privateRegistry = registrytest.Start(GinkgoT(), registrytest.Options{
		Auth:  registrytest.AuthHtpasswd,
		TLS:   true,
		Users: []registrytest.User{{Name: privateUser, Password: privatePassword}},
	})
	proxy = startRegistryProxy(plainRegistry.URL)
	oras = registrytest.Oras(GinkgoT())
	ocisync = registrytest.Ocisync(GinkgoT())

	// Cleanups run last registered first: the manager stops before the
	// control plane.
	By("starting etcd and kube-apiserver")
	cfg := controlplane.Start(GinkgoT()).Config

	scheme = runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	var err error
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	k8sWatch, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	By("starting the manager with the Artifact reconciler")
	// Everything the manager logs, client-go's klog output too (as
	// ocisync manager routes it), also goes to managerLog, for the specs
	// that scan it.
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(GinkgoWriter, managerLog)), zap.UseDevMode(true)))
	klog.SetLogger(ctrl.Log)
	// Every request of the manager is counted, so that specs can check
	// which reads reach the API server.
	mgrConfig := rest.CopyConfig(cfg)
	mgrConfig.Wrap(managerRequests.wrap)
	apiConfig = cfg
	// The suite's manager is one shard too: that of the Artifacts without
	// the label shardLabel. Specs about sharding run a manager of their
	// own for Artifacts that carry it, which this one then neither caches
	// nor reconciles (shard_test.go); every other spec runs against a
	// sharded manager, whose outputs must behave as an unsharded one's.
	notSharded, err := labels.Parse("!" + shardLabel)
	Expect(err).NotTo(HaveOccurred())
	suiteScope := Scope{Selector: notSharded}
	mgr, err := ctrl.NewManager(mgrConfig, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  CacheOptions(suiteScope),
		Client:                 ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	mgrCache, mgrElected = mgr.GetCache(), mgr.Elected()
	recorder, err := NewEventRecorder(mgr)
	Expect(err).NotTo(HaveOccurred())
	reconciler = &ArtifactReconciler{
		Client:     mgr.GetClient(),
		Scheme:     mgr.GetScheme(),
		Recorder:   recorder,
		TokenCache: auth.NewTokenCache(),
		APIReader:  mgr.GetAPIReader(),
		SyncImage:  syncImage,
		SyncJobTTL: syncJobTTL,
		BlobCache:  newSuiteBlobCache(),
		Scope:      suiteScope,
		Cloud:      suiteCloud,
	}
	Expect(reconciler.SetupWithManager(mgr)).To(Succeed())

	runManager(mgr, "the manager", nil)
})

// runManager starts mgr until the spec (or, from BeforeSuite, the suite)
// ends; then stops it, waits for it, and runs stopped. It returns the
// context mgr runs under.
func runManager(mgr ctrl.Manager, what string, stopped func()) context.Context {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed(), "run %s", what)
	}()
	DeferCleanup(func() {
		By("stopping " + what)
		cancel()
		Eventually(done).WithTimeout(waitTimeout).Should(BeClosed(), "%s should stop when its context ends", what)
		if stopped != nil {
			stopped()
		}
	})
	return ctx
}
