// Package e2e runs ocisync end to end, as a user would: a real control plane
// (etcd and kube-apiserver through controller-runtime's envtest) with the
// CRDs of config/crd, a real registry, the real ORAS CLI pushing content,
// the built `ocisync manager` process, and the Artifact of config/samples.
// It builds nothing: `make test` builds the binaries and names them in
// KUBEBUILDER_ASSETS, OCISYNC_TEST_BIN, OCISYNC_TEST_REGISTRY and
// OCISYNC_TEST_ORAS.
package e2e

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ocisync end to end")
}

// Paths relative to this package's folder, where go test runs it.
const (
	crdDir     = "../../config/crd/bases"
	sampleFile = "../../config/samples/ocisync_v1alpha1_artifact.yaml"
)

var (
	// ocisyncBin is the ocisync binary under test.
	ocisyncBin string
	// kubeconfig is a kubeconfig file for an admin of the test cluster.
	kubeconfig string
	// k8s talks to the test cluster as an admin.
	k8s client.Client
)

var _ = BeforeSuite(func() {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	Expect(assets).NotTo(BeEmpty(),
		"KUBEBUILDER_ASSETS is not set: run make test, which builds etcd and kube-apiserver and sets it")
	for _, name := range []string{"etcd", "kube-apiserver"} {
		st, err := os.Stat(filepath.Join(assets, name))
		Expect(err).NotTo(HaveOccurred(), "KUBEBUILDER_ASSETS=%q has no usable %s: run make test to build it", assets, name)
		Expect(st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0).To(BeTrue(),
			"%s in KUBEBUILDER_ASSETS=%q is not an executable file: run make test to build it", name, assets)
	}
	// Fail now, not halfway through, when a binary is missing.
	ocisyncBin = registrytest.BinaryFromEnv(GinkgoT(), registrytest.EnvOcisync)
	registrytest.BinaryFromEnv(GinkgoT(), registrytest.EnvRegistry)
	registrytest.BinaryFromEnv(GinkgoT(), registrytest.EnvOras)
	Expect(os.Getenv("USE_EXISTING_CLUSTER")).To(Or(BeEmpty(), Equal("false")),
		"USE_EXISTING_CLUSTER is set: unset it, this test starts its own control plane")

	By("starting etcd and kube-apiserver with the CRDs of " + crdDir)
	dir := GinkgoT().TempDir()
	for _, sub := range []string{"etcd", "apiserver"} {
		Expect(os.Mkdir(filepath.Join(dir, sub), 0o700)).To(Succeed())
	}
	testEnv := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{crdDir},
		ErrorIfCRDPathMissing: true,
		ControlPlane: envtest.ControlPlane{
			Etcd:      &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")},
			APIServer: &envtest.APIServer{CertDir: filepath.Join(dir, "apiserver")},
		},
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred(), "start the envtest control plane from %s", assets)
	// Registered first, so it runs last: after the manager has stopped.
	DeferCleanup(func() {
		By("stopping etcd and kube-apiserver")
		Expect(testEnv.Stop()).To(Succeed())
	})

	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(ocisyncv1alpha1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred(), "create a client for the test cluster")

	// The manager runs as a separate process and finds the cluster as a
	// user's would: through a kubeconfig file.
	admin, err := testEnv.AddUser(envtest.User{Name: "ocisync-e2e-admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred(), "add a test cluster user")
	data, err := admin.KubeConfig()
	Expect(err).NotTo(HaveOccurred(), "write a kubeconfig for the test cluster")
	kubeconfig = filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(kubeconfig, data, 0o600)).To(Succeed())
})
