// Package manager_test runs the real ocisync binary's manager subcommand
// against a real control plane (etcd and kube-apiserver, through
// controller-runtime's envtest). `make test` builds those binaries and sets
// KUBEBUILDER_ASSETS and OCISYNC_TEST_BIN.
package manager_test

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

func TestManager(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ocisync manager")
}

var (
	// ocisyncBin is the ocisync binary under test.
	ocisyncBin string
	// kubeconfig is a kubeconfig file for an admin of the test cluster.
	kubeconfig string
	// clientset talks to the test cluster as an admin.
	clientset *kubernetes.Clientset
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
	ocisyncBin = registrytest.BinaryFromEnv(GinkgoT(), registrytest.EnvOcisync)

	// An envtest variable that points somewhere else would make this test
	// use another cluster, or none.
	Expect(os.Getenv("USE_EXISTING_CLUSTER")).To(Or(BeEmpty(), Equal("false")),
		"USE_EXISTING_CLUSTER is set: unset it, this test starts its own control plane")

	By("starting etcd and kube-apiserver")
	// etcd's data and the API server's certificates go under the suite's
	// temp dir, removed after the control plane stops (cleanups run last
	// registered first).
	dir := GinkgoT().TempDir()
	for _, sub := range []string{"etcd", "apiserver"} {
		Expect(os.Mkdir(filepath.Join(dir, sub), 0o700)).To(Succeed())
	}
	// The manager runs the Artifact controller, which needs its CRD.
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
	DeferCleanup(func() {
		By("stopping etcd and kube-apiserver")
		Expect(testEnv.Stop()).To(Succeed())
	})

	clientset, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())

	// The manager runs as a separate process, so it needs the cluster as a
	// kubeconfig file, like a user's.
	admin, err := testEnv.AddUser(envtest.User{Name: "ocisync-test-admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred(), "add a test cluster user")
	data, err := admin.KubeConfig()
	Expect(err).NotTo(HaveOccurred(), "write a kubeconfig for the test cluster")
	kubeconfig = filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(kubeconfig, data, 0o600)).To(Succeed())
})
