// Package controlplane starts the real etcd and kube-apiserver that
// `make test` builds, with ocisync's CRDs installed, for the suites that
// need a cluster (the controller suite, the manager smoke test, e2e).
package controlplane

import (
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	Env    *envtest.Environment
	Config *rest.Config
	dir    string
}

// CRDDir is the folder of ocisync's generated CRDs.
func CRDDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "config", "crd", "bases")
}

// Start checks KUBEBUILDER_ASSETS, starts the control plane with the CRDs
// of CRDDir, keeping etcd's data and the certificates under t.TempDir(),
// and stops it in t.Cleanup. It fails t, saying to run make test, when the
// binaries are missing.
func Start(t registrytest.T) *ControlPlane {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatalf("KUBEBUILDER_ASSETS is not set: run make test, which builds etcd and kube-apiserver and sets it")
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		st, err := os.Stat(filepath.Join(assets, name))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			t.Fatalf("KUBEBUILDER_ASSETS=%q has no executable %s: run make test to build it", assets, name)
		}
	}
	if v := os.Getenv("USE_EXISTING_CLUSTER"); v != "" && v != "false" {
		t.Fatalf("USE_EXISTING_CLUSTER is set: unset it, the tests start their own control plane")
	}
	dir := t.TempDir()
	for _, sub := range []string{"etcd", "apiserver"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatalf("creating %s: %v", sub, err)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{CRDDir()},
		ErrorIfCRDPathMissing: true,
		ControlPlane: envtest.ControlPlane{
			Etcd:      &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")},
			APIServer: &envtest.APIServer{CertDir: filepath.Join(dir, "apiserver")},
		},
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the envtest control plane from %s: %v", assets, err)
	}
	// Registered before the caller's own cleanups, so it runs after them:
	// whatever talks to the cluster stops first.
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Fatalf("stopping the control plane: %v", err)
		}
	})
	return &ControlPlane{Env: env, Config: cfg, dir: dir}
}

// WriteKubeconfig adds a cluster admin named user and writes a kubeconfig
// for it, for a process that finds the cluster as a user's would.
func (c *ControlPlane) WriteKubeconfig(t registrytest.T, user string) string {
	t.Helper()
	admin, err := c.Env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("adding the test cluster user %s: %v", user, err)
	}
	data, err := admin.KubeConfig()
	if err != nil {
		t.Fatalf("writing a kubeconfig for the test cluster: %v", err)
	}
	path := filepath.Join(c.dir, "kubeconfig-"+user)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	return path
}
