// Package integration tests the ocisync CLI against a real distribution
// registry and the real ORAS CLI, the way a user meets them. Run it with
// `make test`, which builds the binaries and sets the OCISYNC_TEST_*
// variables (see test/registry).
package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// Test accounts. Passwords are distinctive so tests can assert they never
// appear in output.
var (
	writer = registrytest.User{Name: "writer", Password: "Wr1ter-pa55-Integration"}
	reader = registrytest.User{Name: "reader", Password: "R3ader-pa55-Integration", Actions: []string{"pull"}}
	// robot only logs in with an identity token, in TestOrasAuthRules.
	robot = registrytest.User{Name: "robot", Password: "R0bot-pa55-Integration", Actions: []string{"pull"}}
	users = []registrytest.User{writer, reader, robot}
)

// Registries shared by all tests; tests stay apart by using distinct
// repositories (see repoName).
var (
	plainReg *registrytest.Registry // no auth, plain HTTP
	basicReg *registrytest.Registry // htpasswd, TLS
	tokenReg *registrytest.Registry // token, TLS, login required
)

// target is one way of reaching a registry, used to run a test in each
// auth mode.
type target struct {
	name string
	reg  *registrytest.Registry
}

func targets() []target {
	return []target{
		{"none+plain", plainReg},
		{"htpasswd+tls", basicReg},
		{"token+tls", tokenReg},
	}
}

// writerConfig returns a docker config with the writer's credentials, or
// "" when the registry needs none.
func (tg target) writerConfig(t *testing.T) string {
	if tg.reg.Auth == registrytest.AuthNone {
		return ""
	}
	return tg.reg.WriteDockerConfig(t, writer.Name)
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	mt, err := newMainT()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer mt.cleanup(&code)
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(mainFatal); !ok {
				panic(r)
			}
			code = 1
		}
	}()
	plainReg = registrytest.Start(mt, registrytest.Options{})
	basicReg = registrytest.Start(mt, registrytest.Options{Auth: registrytest.AuthHtpasswd, TLS: true, Users: users})
	tokenReg = registrytest.Start(mt, registrytest.Options{Auth: registrytest.AuthToken, TLS: true, Users: users})
	return m.Run()
}

// mainT lets TestMain use the harness: cleanups run after all tests, temp
// dirs live under one root, and Fatalf aborts the run.
type mainT struct {
	root     string
	n        int
	cleanups []func()
	failed   bool
}

type mainFatal struct{}

func newMainT() (*mainT, error) {
	root, err := os.MkdirTemp("", "ocisync-integration-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	return &mainT{root: root}, nil
}

func (mt *mainT) Helper()                 {}
func (mt *mainT) Cleanup(f func())        { mt.cleanups = append(mt.cleanups, f) }
func (mt *mainT) Logf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (mt *mainT) Failed() bool            { return mt.failed }

func (mt *mainT) Fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "integration setup: "+f+"\n", a...)
	mt.failed = true
	panic(mainFatal{})
}

func (mt *mainT) TempDir() string {
	mt.n++
	dir := filepath.Join(mt.root, fmt.Sprintf("%03d", mt.n))
	if err := os.Mkdir(dir, 0o700); err != nil {
		mt.Fatalf("create temp dir: %v", err)
	}
	return dir
}

// cleanup runs registered cleanups last-first, then removes the root. A
// failed run makes the harness print registry logs.
func (mt *mainT) cleanup(code *int) {
	if *code != 0 {
		mt.failed = true
	}
	for i := len(mt.cleanups) - 1; i >= 0; i-- {
		mt.cleanups[i]()
	}
	_ = os.RemoveAll(mt.root)
}

var repoSeq atomic.Int64

var nonRepoChars = regexp.MustCompile(`[^a-z0-9]+`)

// repoName returns a repository name unique to this test and call.
func repoName(t *testing.T) string {
	slug := strings.Trim(nonRepoChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(slug) > 100 {
		slug = slug[len(slug)-100:]
		slug = strings.TrimLeft(slug, "-")
	}
	return fmt.Sprintf("it/%s-%d", slug, repoSeq.Add(1))
}
