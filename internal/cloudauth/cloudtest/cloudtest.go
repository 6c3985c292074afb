// Package cloudtest holds fake cloud identity endpoints on loopback for
// the tests of internal/cloudauth and of the controller: the GKE metadata
// server with Google's STS and IAM Credentials, Entra ID over TLS with
// an ACR token exchange, and the pieces they are made of. Nothing here
// verifies a signature: the fakes read the claims of the tokens they are
// given, as the clouds would after verifying them.
//
// It does not import internal/cloudauth, so that the package's own tests
// can use it.
package cloudtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// T is what the fakes need of a test: *testing.T and GinkgoT() are.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// LoopbackClient refuses to dial anything but 127.0.0.0/8 and trusts
// pool (nil: the system's), so that a test can never reach a real cloud.
func LoopbackClient(pool *x509.CertPool) *http.Client {
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

// FakeJWT is an unsigned JWT with the given claims.
func FakeJWT(claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	b, _ := json.Marshal(claims)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + ".sig"
}

// Claims are the claims of a JWT the fakes look at, read without
// verifying it.
type Claims struct {
	Sub string
	Aud []string
}

// ReadClaims reads the sub and aud claims of a JWT; zero when unreadable.
func ReadClaims(jwt string) Claims {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return Claims{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}
	}
	var c struct {
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return Claims{}
	}
	out := Claims{Sub: c.Sub}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		out.Aud = []string{one}
	} else {
		_ = json.Unmarshal(c.Aud, &out.Aud)
	}
	return out
}

// Is reports whether the claims are of exactly subject and audience.
func (c Claims) Is(subject, audience string) bool {
	return c.Sub == subject && len(c.Aud) == 1 && c.Aud[0] == audience
}

// ServiceAccountSubject is the sub claim of a ServiceAccount's token.
func ServiceAccountSubject(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// Endpoint is a fake cloud endpoint on loopback that counts its
// requests and can be taken down and brought back on the same address.
type Endpoint struct {
	t       T
	handler http.Handler
	tls     bool
	// mu guards srv, addr and url: the code under test reads the URL
	// while a test brings the endpoint down and up.
	mu   sync.Mutex
	srv  *httptest.Server
	addr string
	url  string
	// tlsConf keeps a TLS endpoint's certificate across Down and Up, so
	// that clients which trust it trust the restarted endpoint too.
	tlsConf *tls.Config
	// Hits counts the requests served.
	Hits atomic.Int64
}

// NewEndpoint starts h on loopback, over TLS with a certificate of its
// own if tlsOn; it is closed at the end of the test.
func NewEndpoint(t T, tlsOn bool, h http.HandlerFunc) *Endpoint {
	t.Helper()
	e := &Endpoint{t: t, tls: tlsOn}
	e.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.Hits.Add(1)
		h(w, r)
	})
	e.start("127.0.0.1:0")
	t.Cleanup(e.Down)
	return e
}

func (e *Endpoint) start(addr string) {
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
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: e.handler, ReadHeaderTimeout: 10 * time.Second}}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tls {
		if e.tlsConf != nil {
			srv.TLS = e.tlsConf.Clone()
		}
		srv.StartTLS()
		e.tlsConf = srv.TLS.Clone()
	} else {
		srv.Start()
	}
	e.srv, e.addr, e.url = srv, l.Addr().String(), srv.URL
}

// URL is the endpoint's base URL.
func (e *Endpoint) URL() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.url
}

// Handler is the endpoint's handler (counting its requests), to serve
// the same fake on another endpoint, e.g. over TLS.
func (e *Endpoint) Handler() http.HandlerFunc { return e.handler.ServeHTTP }

// Addr is the endpoint's host:port.
func (e *Endpoint) Addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addr
}

// Certificate is the certificate of a TLS endpoint.
func (e *Endpoint) Certificate() *x509.Certificate {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tlsConf == nil || len(e.tlsConf.Certificates) == 0 {
		return nil
	}
	c, err := x509.ParseCertificate(e.tlsConf.Certificates[0].Certificate[0])
	if err != nil {
		e.t.Fatalf("endpoint certificate: %v", err)
	}
	return c
}

// Down closes the endpoint: connections to it are refused.
func (e *Endpoint) Down() {
	e.mu.Lock()
	srv := e.srv
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// Up restarts a downed endpoint on its old address (a TLS one with its
// old certificate).
func (e *Endpoint) Up() {
	e.start(e.Addr())
}

// WriteCAFile writes the certificates of TLS endpoints as a PEM file in
// dir and returns its path.
func WriteCAFile(t T, dir string, es ...*Endpoint) string {
	t.Helper()
	var b []byte
	for _, e := range es {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.Certificate().Raw})...)
	}
	file := filepath.Join(dir, "cloudtest-ca.pem")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatalf("write CA file: %v", err)
	}
	return file
}

// Clock is the real clock moved forward by Add, for Options.Now: tests
// expire credentials with it without waiting. The zero value is ready.
type Clock struct {
	mu  sync.Mutex
	off time.Duration
}

// Now is the real time plus what was added.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

// Add moves the clock forward by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}
