package controller

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci/auth"
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
	scheme    *runtime.Scheme

	// plainRegistry serves plain HTTP without authentication; specs reach
	// it through proxy.
	plainRegistry *registrytest.Registry
	// privateRegistry serves HTTPS from a test CA with htpasswd users.
	privateRegistry *registrytest.Registry
	// proxy fronts plainRegistry and injects faults.
	proxy *registryProxy
	// oras is the ORAS CLI, to push artifacts exactly as ORAS makes them.
	oras *registrytest.CLI
)

var _ = BeforeSuite(func() {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	Expect(assets).NotTo(BeEmpty(),
		"KUBEBUILDER_ASSETS is not set: run make test, which builds etcd and kube-apiserver and sets it")
	for _, name := range []string{"etcd", "kube-apiserver"} {
		p := filepath.Join(assets, name)
		st, err := os.Stat(p)
		Expect(err).NotTo(HaveOccurred(), "KUBEBUILDER_ASSETS=%q has no usable %s: run make test to build it", assets, name)
		Expect(st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0).To(BeTrue(),
			"%s is not an executable file: run make test to build it", p)
	}
	Expect(os.Getenv("USE_EXISTING_CLUSTER")).To(Or(BeEmpty(), Equal("false")),
		"USE_EXISTING_CLUSTER is set: unset it, this suite starts its own control plane")

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

	By("starting etcd and kube-apiserver")
	dir := GinkgoT().TempDir()
	for _, sub := range []string{"etcd", "apiserver"} {
		Expect(os.Mkdir(filepath.Join(dir, sub), 0o700)).To(Succeed())
	}
	testEnv := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		ControlPlane: envtest.ControlPlane{
			Etcd:      &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")},
			APIServer: &envtest.APIServer{CertDir: filepath.Join(dir, "apiserver")},
		},
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred(), "start the envtest control plane from %s", assets)
	// Cleanups run last registered first: the manager stops before the
	// control plane.
	DeferCleanup(func() {
		By("stopping etcd and kube-apiserver")
		Expect(testEnv.Stop()).To(Succeed())
	})

	scheme = runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	By("starting the manager with the Artifact reconciler")
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	Expect((&ArtifactReconciler{
		Client:     mgr.GetClient(),
		Scheme:     mgr.GetScheme(),
		Recorder:   mgr.GetEventRecorder("ocisync"),
		TokenCache: auth.NewTokenCache(),
	}).SetupWithManager(mgr)).To(Succeed())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed(), "run the manager")
	}()
	DeferCleanup(func() {
		By("stopping the manager")
		cancel()
		Eventually(done).WithTimeout(waitTimeout).Should(BeClosed(), "the manager should stop when its context ends")
	})
})
