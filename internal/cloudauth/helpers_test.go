package cloudauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// loopbackClient refuses to dial anything but 127.0.0.0/8 and trusts
// pool (nil: the system's), so that a test can never reach a real cloud.
func loopbackClient(pool *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				ip := net.ParseIP(host)
				if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
					return nil, fmt.Errorf("test transport: refusing to dial %s (loopback only)", addr)
				}
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		},
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeJWT is an unsigned JWT with the given claims: the fakes compare
// tokens as strings, and the ACR refresh token's exp is read.
func fakeJWT(claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	b, _ := json.Marshal(claims)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + ".sig"
}

// saTokens is a TokenFunc of a ServiceAccount: a token per audience, and
// a record of the audiences asked for.
type saTokens struct {
	mu        sync.Mutex
	audiences []string
	fail      error
}

func saToken(ns, name, audience string) string {
	return fakeJWT(map[string]any{"sub": "system:serviceaccount:" + ns + ":" + name, "aud": audience})
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

// endpoint is a fake cloud endpoint on loopback that counts its requests
// and can be taken down and brought back on the same address.
type endpoint struct {
	t       *testing.T
	handler http.Handler
	tls     bool
	srv     *httptest.Server
	addr    string
	url     string
	hits    atomic.Int64
}

func newEndpoint(t *testing.T, tlsOn bool, h http.HandlerFunc) *endpoint {
	t.Helper()
	e := &endpoint{t: t, tls: tlsOn}
	e.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		h(w, r)
	})
	e.start("127.0.0.1:0")
	t.Cleanup(func() { e.down() })
	return e
}

func (e *endpoint) start(addr string) {
	e.t.Helper()
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatalf("listen %s: %v", addr, err)
	}
	e.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: e.handler, ReadHeaderTimeout: 10 * time.Second}}
	if e.tls {
		e.srv.StartTLS()
	} else {
		e.srv.Start()
	}
	e.addr = l.Addr().String()
	e.url = e.srv.URL
}

// URL is the endpoint's base URL.
func (e *endpoint) URL() string { return e.url }

func (e *endpoint) down() {
	if e.srv != nil {
		e.srv.CloseClientConnections()
		e.srv.Close()
		e.srv = nil
	}
}

// up restarts a downed endpoint on its old address. A TLS endpoint gets
// a new certificate, so only plain ones are restarted.
func (e *endpoint) up() {
	if e.tls {
		e.t.Fatal("restart of a TLS endpoint")
	}
	e.start(e.addr)
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
