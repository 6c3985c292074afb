// Package e2e runs ocisync end to end, as a user would: a real control plane
// (etcd and kube-apiserver through controller-runtime's envtest) with the
// CRDs of config/crd, a real registry, the real ORAS CLI pushing content,
// the built `ocisync manager` process, and the Artifact of config/samples.
// It builds nothing: `make test` builds the binaries and names them in
// KUBEBUILDER_ASSETS, OCISYNC_TEST_BIN, OCISYNC_TEST_REGISTRY and
// OCISYNC_TEST_ORAS.
package e2e

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/test/controlplane"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ocisync end to end")
}

// sampleFile is relative to this package's folder, where go test runs it.
const sampleFile = "../../config/samples/ocisync_v1alpha1_artifact.yaml"

var (
	// ocisyncBin is the ocisync binary under test.
	ocisyncBin string
	// kubeconfig is a kubeconfig file for an admin of the test cluster.
	kubeconfig string
	// k8s talks to the test cluster as an admin.
	k8s client.Client
)

var _ = BeforeSuite(func() {
	// Fail now, not halfway through, when a binary is missing.
	ocisyncBin = registrytest.BinaryFromEnv(GinkgoT(), registrytest.EnvOcisync)
	registrytest.BinaryFromEnv(GinkgoT(), registrytest.EnvRegistry)
	registrytest.BinaryFromEnv(GinkgoT(), registrytest.EnvOras)
	By("starting etcd and kube-apiserver with the CRDs")
	cp := controlplane.Start(GinkgoT())
	cfg := cp.Config

	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(ocisyncv1alpha1.AddToScheme(scheme)).To(Succeed())
	var err error
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred(), "create a client for the test cluster")

	// The manager runs as a separate process and finds the cluster as a
	// user's would: through a kubeconfig file.
	kubeconfig = cp.WriteKubeconfig(GinkgoT(), "ocisync-e2e-admin")
})
