// Package manager_test runs the real ocisync binary's manager subcommand
// against a real control plane (etcd and kube-apiserver, through
// controller-runtime's envtest). `make test` builds those binaries and sets
// KUBEBUILDER_ASSETS and OCISYNC_TEST_BIN.
package manager_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/test/controlplane"
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
	ocisyncBin = registrytest.BinaryFromEnv(GinkgoT(), registrytest.EnvOcisync)

	By("starting etcd and kube-apiserver")
	cp := controlplane.Start(GinkgoT())
	cfg := cp.Config

	var err error
	clientset, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())

	// The manager runs as a separate process, so it needs the cluster as a
	// kubeconfig file, like a user's.
	kubeconfig = cp.WriteKubeconfig(GinkgoT(), "ocisync-test-admin")
})

// newClient is a client of the suite's API server, as admin, that knows
// the built-in kinds and Artifacts.
func newClient() client.Client {
	GinkgoHelper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}
