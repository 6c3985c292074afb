package cloudauth

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ocisync/ocisync/internal/cloudauth/cloudtest"
)

// TestMain takes away every way the SDKs have to leave loopback or to
// read this machine's own cloud configuration: instance metadata off,
// config files that do not exist, a metadata host that refuses, and no
// cloud variables from the environment. Tests set what they need with
// t.Setenv, so none of them runs in parallel.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "cloudauth-home-")
	if err != nil {
		panic(err)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		for _, p := range []string{"AWS_", "AZURE_", "GOOGLE_", "GCE_", "CLOUDSDK_", "IDENTITY_", "IMDS_", "MSI_"} {
			if strings.HasPrefix(k, p) {
				os.Unsetenv(k)
			}
		}
	}
	for k, v := range map[string]string{
		"HOME":                        home,
		"CLOUDSDK_CONFIG":             home,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             home + "/no-aws-config",
		"AWS_SHARED_CREDENTIALS_FILE": home + "/no-aws-credentials",
		"GCE_METADATA_HOST":           closedAddr(),
	} {
		os.Setenv(k, v)
	}
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

// closedAddr is a loopback address nothing listens on.
func closedAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// saTokens is a TokenFunc of a ServiceAccount: a token per audience, and
// a record of the audiences asked for.
type saTokens struct {
	mu        sync.Mutex
	audiences []string
	fail      error
}

func saToken(ns, name, audience string) string {
	return cloudtest.FakeJWT(map[string]any{"sub": "system:serviceaccount:" + ns + ":" + name, "aud": audience})
}

func (s *saTokens) fn(ns, name string) TokenFunc {
	return func(_ context.Context, audience string) (string, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.audiences = append(s.audiences, audience)
		if s.fail != nil {
			return "", s.fail
		}
		return saToken(ns, name, audience), nil
	}
}

// mustClass fails unless err is an *Error of class kind whose message
// contains each of want and none of the secrets.
func mustClass(t *testing.T, err, kind error, want []string, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", kind)
	}
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, kind) {
		t.Fatalf("error %q (%T) is not of class %v", err, err, kind)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a secret", err)
		}
	}
}
