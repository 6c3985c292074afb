package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTLSServer starts an HTTPS server whose certificate is signed by ca and
// names 127.0.0.1, localhost and dnsNames. clientCAs, if set, makes the
// server require a client certificate signed by it.
func newTLSServer(t *testing.T, ca *testCA, clientCAs *testCA, h http.Handler, dnsNames ...string) *httptest.Server {
	t.Helper()
	_, _, pair := ca.issue(t, "registry", false, dnsNames...)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	if clientCAs != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCAs.cert)
		srv.TLS.ClientCAs = pool
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			io.WriteString(w, "client="+r.TLS.PeerCertificates[0].Subject.CommonName)
			return
		}
		io.WriteString(w, "ok")
	})
}

func TestServerVerification(t *testing.T) {
	ca := newTestCA(t, "test registry CA")
	other := newTestCA(t, "unrelated CA")
	srv := newTLSServer(t, ca, nil, okHandler())
	caFile := writeFile(t, "ca.pem", ca.pem)
	bundle := writeFile(t, "bundle.pem", append(append([]byte("# corporate bundle\n"), other.pem...), ca.pem...))

	tests := []struct {
		name   string
		opts   Options
		wantOK bool
	}{
		{"CAPEM", Options{CAPEM: ca.pem}, true},
		{"CAFile", Options{CAFile: caFile}, true},
		{"bundle with several CAs and a comment", Options{CAFile: bundle}, true},
		{"CAFile and CAPEM together", Options{CAFile: caFile, CAPEM: other.pem}, true},
		{"system roots only", Options{}, false},
		{"another CA", Options{CAPEM: other.pem}, false},
		{"insecure skip verify", Options{InsecureSkipVerify: true}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := quietClient(t, tc.opts)
			resp, err := mustGet(t, c, srv.URL+"/v2/", nil)
			if tc.wantOK {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatal("request to an untrusted server succeeded")
			}
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				t.Errorf("err = %v, want an unknown-authority error", err)
			}
			if len(rec.get()) != 0 {
				t.Errorf("a certificate failure was retried (%d waits)", len(rec.get()))
			}
		})
	}
}

func TestMinimumTLSVersion(t *testing.T) {
	ca := newTestCA(t, "ca")
	_, _, pair := ca.issue(t, "old", false)
	srv := httptest.NewUnstartedServer(okHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	c, rec := quietClient(t, Options{CAPEM: ca.pem})
	resp, err := mustGet(t, c, srv.URL, nil)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a TLS 1.1 server was accepted")
	}
	if !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("err = %v, want a protocol version failure", err)
	}
	if len(rec.get()) != 0 {
		t.Errorf("a TLS version failure was retried")
	}
}

func TestMutualTLS(t *testing.T) {
	serverCA := newTestCA(t, "server CA")
	clientCA := newTestCA(t, "client CA")
	srv := newTLSServer(t, serverCA, clientCA, okHandler())
	certPEM, keyPEM, _ := clientCA.issue(t, "ocisync-operator", true)
	certFile := writeFile(t, "client.crt", certPEM)
	keyFile := writeFile(t, "client.key", keyPEM)
	strangerCert, strangerKey, _ := newTestCA(t, "stranger CA").issue(t, "stranger", true)

	tests := []struct {
		name   string
		opts   Options
		wantOK bool
	}{
		{"PEM pair", Options{CertPEM: certPEM, KeyPEM: keyPEM}, true},
		{"file pair", Options{CertFile: certFile, KeyFile: keyFile}, true},
		{"cert file with key PEM", Options{CertFile: certFile, KeyPEM: keyPEM}, true},
		{"no client certificate", Options{}, false},
		{"certificate from another CA", Options{CertPEM: strangerCert, KeyPEM: strangerKey}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.CAPEM = serverCA.pem
			c, rec := quietClient(t, tc.opts)
			resp, err := mustGet(t, c, srv.URL+"/v2/", nil)
			if !tc.wantOK {
				if err == nil {
					resp.Body.Close()
					t.Fatal("server accepted the connection without a valid client certificate")
				}
				if len(rec.get()) != 0 {
					t.Errorf("a rejected client certificate was retried: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "client=ocisync-operator" {
				t.Errorf("server saw %q, want our client certificate", body)
			}
		})
	}
}

func TestOptionErrors(t *testing.T) {
	ca := newTestCA(t, "ca")
	certPEM, keyPEM, _ := ca.issue(t, "client", true)
	_, otherKey, _ := ca.issue(t, "other", true)
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope", "ca.pem")
	garbage := writeFile(t, "garbage.pem", []byte("this is not PEM\n"))
	corrupt := writeFile(t, "corrupt.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	keyOnly := writeFile(t, "key-as-ca.pem", keyPEM)
	certFile := writeFile(t, "client.crt", certPEM)
	keyFile := writeFile(t, "client.key", keyPEM)
	encrypted := writeFile(t, "enc.key", []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"))

	tests := []struct {
		name string
		opts Options
		want []string // substrings of the error
	}{
		{"missing CA file", Options{CAFile: missing}, []string{"reading CA file", missing, "no such file"}},
		{"CA file not PEM", Options{CAFile: garbage}, []string{garbage, "no PEM \"CERTIFICATE\" block"}},
		{"CA file holding a key", Options{CAFile: keyOnly}, []string{keyOnly, "no PEM"}},
		{"corrupt certificate", Options{CAFile: corrupt}, []string{corrupt, "certificate #1 is not a valid X.509 certificate"}},
		{"bad CAPEM", Options{CAPEM: []byte("junk")}, []string{"Options.CAPEM", "no PEM"}},
		{"cert without key", Options{CertFile: certFile}, []string{certFile, "private key is missing"}},
		{"key without cert", Options{KeyPEM: keyPEM}, []string{"Options.KeyPEM", "certificate is missing"}},
		{"missing key file", Options{CertFile: certFile, KeyFile: missing}, []string{"reading client key file", missing}},
		{"missing cert file", Options{CertFile: missing, KeyFile: keyFile}, []string{"reading client certificate file", missing}},
		{"mismatched key", Options{CertPEM: certPEM, KeyPEM: otherKey}, []string{"loading client certificate", "does not match"}},
		{"swapped files", Options{CertFile: keyFile, KeyFile: certFile}, []string{certFile, keyFile}},
		{"encrypted key", Options{CertPEM: certPEM, KeyFile: encrypted}, []string{encrypted, "encrypted private keys are not supported"}},
		{"both cert forms", Options{CertFile: certFile, CertPEM: certPEM, KeyPEM: keyPEM}, []string{"CertFile and CertPEM"}},
	}
	keyBody := strings.Split(string(keyPEM), "\n")[1] // a line of key material
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewClient(tc.opts)
			if err == nil {
				t.Fatal("NewClient succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), keyBody) {
				t.Errorf("error %q contains private key material", err)
			}
		})
	}
}

func TestUserAgent(t *testing.T) {
	var mu sync.Mutex
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.UserAgent()
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name, option, header, want string
	}{
		{"default", "", "", "ocisync"},
		{"option", "ocisync/1.2.3 (cli)", "", "ocisync/1.2.3 (cli)"},
		{"request header wins", "ocisync/1.2.3", "custom/9", "custom/9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := quietClient(t, Options{UserAgent: tc.option})
			hdr := map[string]string{}
			if tc.header != "" {
				hdr["User-Agent"] = tc.header
			}
			resp, err := mustGet(t, c, srv.URL, hdr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if got != tc.want {
				t.Errorf("server saw User-Agent %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClientShape(t *testing.T) {
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeout != 0 {
		t.Errorf("client has a global Timeout %v; large blobs need context deadlines instead", c.Timeout)
	}
	if _, ok := c.Transport.(*Retry); !ok {
		t.Errorf("Transport is %T, want *Retry", c.Transport)
	}
	tr, err := NewTransport(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.TLSClientConfig.MinVersion != tls.VersionTLS12 || tr.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("TLS config %+v, want TLS 1.2 minimum and verification on", tr.TLSClientConfig)
	}
	if tr.ResponseHeaderTimeout != DefaultResponseHeaderTimeout || tr.TLSHandshakeTimeout == 0 || !tr.ForceAttemptHTTP2 {
		t.Errorf("transport timeouts/HTTP2 not set: %+v", tr)
	}
}

// setProxyEnv sets both spellings of each proxy variable.
func setProxyEnv(t *testing.T, httpProxy, httpsProxy, noProxy string) {
	t.Helper()
	for name, v := range map[string]string{"HTTP_PROXY": httpProxy, "HTTPS_PROXY": httpsProxy, "NO_PROXY": noProxy} {
		t.Setenv(name, v)
		t.Setenv(strings.ToLower(name), v)
	}
	t.Setenv("REQUEST_METHOD", "") // CGI mode would ignore HTTP_PROXY
}

func TestProxyFunc(t *testing.T) {
	tests := []struct {
		name                        string
		httpProxy, httpsProxy, none string
		target                      string
		want                        string // "" means direct
	}{
		{"http via HTTP_PROXY", "http://proxy.corp:3128", "", "", "http://registry.test/v2/", "http://proxy.corp:3128"},
		{"https via HTTPS_PROXY", "http://p1:1", "http://p2:2", "", "https://registry.test/v2/", "http://p2:2"},
		{"NO_PROXY exact host", "http://p1:1", "http://p2:2", "registry.test", "https://registry.test/v2/", ""},
		{"NO_PROXY domain suffix", "", "http://p2:2", ".corp.example", "https://r.corp.example/v2/", ""},
		{"NO_PROXY other host", "", "http://p2:2", "other.test", "https://registry.test/v2/", "http://p2:2"},
		{"no proxy configured", "", "", "", "https://registry.test/v2/", ""},
		{"loopback never proxied", "http://p1:1", "", "", "http://127.0.0.1:5000/v2/", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setProxyEnv(t, tc.httpProxy, tc.httpsProxy, tc.none)
			tr, err := NewTransport(Options{})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodGet, tc.target, nil)
			u, err := tr.Proxy(req)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if u != nil {
				got = u.String()
			}
			if got != tc.want {
				t.Errorf("proxy for %s = %q, want %q", tc.target, got, tc.want)
			}
		})
	}
}

// proxyRecorder is an HTTP proxy on 127.0.0.1 that records what it is
// asked for. Plain requests get an answer from the proxy itself; CONNECT
// tunnels go to tunnelTo (a local server) whatever host was named, so no
// traffic leaves the machine.
type proxyRecorder struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
}

func newProxyRecorder(t *testing.T, tunnelTo string) *proxyRecorder {
	p := &proxyRecorder{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if r.Method == http.MethodConnect {
			p.requests = append(p.requests, "CONNECT "+r.Host)
		} else {
			p.requests = append(p.requests, r.Method+" "+r.URL.String())
		}
		p.mu.Unlock()
		if r.Method != http.MethodConnect {
			io.WriteString(w, "answered by proxy")
			return
		}
		if tunnelTo == "" {
			http.Error(w, "no tunnel", http.StatusForbidden)
			return
		}
		backend, err := net.Dial("tcp", tunnelTo)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			backend.Close()
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() {
			defer backend.Close()
			defer conn.Close()
			go io.Copy(backend, buf.Reader)
			io.Copy(conn, backend)
		}()
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *proxyRecorder) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

func TestProxyEndToEnd(t *testing.T) {
	ca := newTestCA(t, "ca")
	backend := newTLSServer(t, ca, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "registry via tunnel, host "+r.Host)
	}), "registry.test")
	plainProxy := newProxyRecorder(t, "")
	tlsProxy := newProxyRecorder(t, backend.Listener.Addr().String())

	// "registry.test" is never resolved: the client only dials the proxy.
	setProxyEnv(t, plainProxy.URL, tlsProxy.URL, "")
	c, _ := quietClient(t, Options{CAPEM: ca.pem})

	// Changing the environment after NewClient does not affect it, and a
	// new client sees the new values (no per-process caching).
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("http_proxy", "http://127.0.0.1:1")

	tests := []struct {
		url, wantBody, wantSeen string
		proxy                   *proxyRecorder
	}{
		{"http://registry.test/v2/", "answered by proxy", "GET http://registry.test/v2/", plainProxy},
		{"https://registry.test/v2/", "registry via tunnel, host registry.test", "CONNECT registry.test:443", tlsProxy},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			resp, err := mustGet(t, c, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			seen := tc.proxy.seen()
			if len(seen) == 0 || seen[len(seen)-1] != tc.wantSeen {
				t.Errorf("proxy saw %q, want %q last", seen, tc.wantSeen)
			}
		})
	}

	c2, _ := quietClient(t, Options{MaxRetries: -1})
	ctx := t.Context()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://registry.test/v2/", nil)
	start := time.Now()
	resp, err := c2.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("new client still used the old proxy")
	}
	var ue *url.Error
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "127.0.0.1:1") || time.Since(start) > 5*time.Second {
		t.Errorf("err = %v, want a failure dialing the new proxy 127.0.0.1:1", err)
	}
}
