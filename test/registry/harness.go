// Package registrytest runs a real CNCF Distribution registry and the ORAS
// and ocisync command lines for integration tests. It needs the paths of the
// binaries in environment variables, which `make test` sets:
//
//	OCISYNC_TEST_REGISTRY  the distribution registry binary (v3)
//	OCISYNC_TEST_ORAS      the oras CLI
//	OCISYNC_TEST_BIN       the ocisync binary under test
//
// Everything the harness writes lives under the caller's TempDir, and every
// process or server it starts is stopped through the caller's Cleanup.
package registrytest

import (
	"os"
	"path/filepath"
)

// T is the part of testing.TB the harness uses. Both *testing.T and
// Ginkgo's GinkgoT() satisfy it, and a TestMain can supply its own.
type T interface {
	Helper()
	Cleanup(func())
	TempDir() string
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// Environment variables naming the binaries under test.
const (
	EnvRegistry = "OCISYNC_TEST_REGISTRY"
	EnvOras     = "OCISYNC_TEST_ORAS"
	EnvCosign   = "OCISYNC_TEST_COSIGN"
	EnvOcisync  = "OCISYNC_TEST_BIN"
)

// BinaryFromEnv returns the absolute path held in the environment variable
// name, failing the test with instructions when it is unset or wrong.
func BinaryFromEnv(t T, name string) string {
	t.Helper()
	p := os.Getenv(name)
	if p == "" {
		t.Fatalf("%s is not set: run make test, which builds the registry, oras and ocisync binaries and sets it", name)
	}
	if !filepath.IsAbs(p) {
		t.Fatalf("%s=%q is not an absolute path: run make test, or set it to the binary's absolute path", name, p)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatalf("%s=%q cannot be used: %v; run make test to build it", name, p, err)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		t.Fatalf("%s=%q is not an executable file: run make test to build it", name, p)
	}
	return p
}

// failed reports whether t has failed, when t can tell.
func failed(t T) bool {
	f, ok := t.(interface{ Failed() bool })
	return ok && f.Failed()
}
