package transport

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// headerRecorder is a server that records the headers of each request.
type headerRecorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newHeaderRecorder(t *testing.T) *headerRecorder {
	h := &headerRecorder{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.seen = append(h.seen, r.Header.Clone())
		h.mu.Unlock()
		io.WriteString(w, "blob")
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *headerRecorder) headers() []http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]http.Header(nil), h.seen...)
}

// redirector answers every request with a 307 to the URL next returns.
func redirector(t *testing.T, next func(r *http.Request) string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, next(r), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func withHost(t *testing.T, raw, host string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = host + ":" + u.Port()
	return u.String()
}

func TestRedirectToOtherOriginDropsCredentials(t *testing.T) {
	tests := []struct {
		name string
		host string // host name for the target server (always 127.0.0.1)
	}{
		// net/http alone keeps credentials here: the host name is the same.
		{"other port, same host name", "127.0.0.1"},
		{"other host name", "localhost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := newHeaderRecorder(t)
			dest := withHost(t, target.URL, tc.host) + "/storage/blob?X-Amz-Signature=abc"
			origin := redirector(t, func(*http.Request) string { return dest })
			c, _ := quietClient(t, Options{})
			resp, err := mustGet(t, c, origin.URL+"/v2/r/blobs/sha256:1", map[string]string{
				"Authorization": "Bearer s3cr3t-token",
				"Cookie":        "session=s3cr3t",
				"Accept":        "application/octet-stream",
			})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			hs := target.headers()
			if len(hs) != 1 {
				t.Fatalf("target got %d requests, want 1", len(hs))
			}
			if a, ck := hs[0].Get("Authorization"), hs[0].Get("Cookie"); a != "" || ck != "" {
				t.Errorf("target received Authorization %q, Cookie %q; want neither", a, ck)
			}
			if hs[0].Get("Accept") == "" {
				t.Errorf("non-sensitive Accept header was dropped")
			}
		})
	}
}

func TestRedirectSameOriginKeepsCredentials(t *testing.T) {
	var mu sync.Mutex
	var finalAuth []string
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/r/blobs/a":
			http.Redirect(w, r, "/storage/a", http.StatusTemporaryRedirect)
		case "/v2/r/blobs/b": // via another origin and back
			http.Redirect(w, r, withHost(t, srv.URL, "localhost")+"/bounce", http.StatusFound)
		case "/bounce":
			http.Redirect(w, r, srv.URL+"/storage/b", http.StatusFound)
		default:
			mu.Lock()
			finalAuth = append(finalAuth, r.Header.Get("Authorization"))
			mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)

	tests := []struct {
		path     string
		wantAuth string
	}{
		{"/v2/r/blobs/a", "Bearer tok"},
		{"/v2/r/blobs/b", ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			mu.Lock()
			finalAuth = nil
			mu.Unlock()
			c, _ := quietClient(t, Options{})
			resp, err := mustGet(t, c, srv.URL+tc.path, map[string]string{"Authorization": "Bearer tok"})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if len(finalAuth) != 1 || finalAuth[0] != tc.wantAuth {
				t.Errorf("final hop saw Authorization %q, want %q", finalAuth, tc.wantAuth)
			}
		})
	}
}

func TestCheckRedirectOrigins(t *testing.T) {
	tests := []struct {
		name     string
		via      []string
		target   string
		wantAuth bool
		wantErr  string
	}{
		{"same origin", []string{"https://r.example/v2/"}, "https://r.example/blob", true, ""},
		{"explicit default port", []string{"https://r.example/v2/"}, "https://R.Example:443/blob", true, ""},
		{"explicit default http port", []string{"http://r.example/v2/"}, "http://r.example:80/blob", true, ""},
		{"other port", []string{"https://r.example/v2/"}, "https://r.example:8443/blob", false, ""},
		{"subdomain", []string{"https://r.example/v2/"}, "https://cdn.r.example/blob", false, ""},
		{"scheme upgrade", []string{"http://r.example/v2/"}, "https://r.example/blob", false, ""},
		{"http to http", []string{"http://r.example/v2/"}, "http://r.example/b", true, ""},
		{"plain http origin may go anywhere", []string{"http://r.example/v2/", "https://r.example/x"}, "http://r.example/b", false, ""},
		{"https downgrade", []string{"https://r.example/v2/"}, "http://r.example/b", false, "downgrade"},
		{"https downgrade after hops", []string{"https://r.example/v2/", "https://cdn.example/x"}, "http://cdn.example/b", false, "downgrade"},
		{"tenth redirect", hops("https://r.example/", 10), "https://r.example/next", true, ""},
		{"eleventh redirect", hops("https://r.example/", 11), "https://r.example/next", false, "stopped after 10 redirects"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var via []*http.Request
			for _, u := range tc.via {
				r, _ := http.NewRequest(http.MethodGet, u, nil)
				via = append(via, r)
			}
			req, _ := http.NewRequest(http.MethodGet, tc.target+"?X-Amz-Signature=abc", nil)
			req.Header.Set("Authorization", "Bearer t")
			req.Header.Set("Cookie", "c=1")
			req.Header.Set("Proxy-Authorization", "Basic x")
			req.Header.Set("Accept", "*/*")
			err := CheckRedirect(req, via)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "X-Amz-Signature") {
					t.Errorf("error %q leaks the query string", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
				if (req.Header.Get(h) != "") != tc.wantAuth {
					t.Errorf("%s present=%v, want %v", h, req.Header.Get(h) != "", tc.wantAuth)
				}
			}
			if req.Header.Get("Accept") == "" {
				t.Errorf("Accept was dropped")
			}
		})
	}
}

func hops(base string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%d", base, i))
	}
	return out
}

func TestRedirectDowngradeRefused(t *testing.T) {
	var plainHits atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
	}))
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/blob", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(secure.Close)

	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw})
	c, _ := quietClient(t, Options{CAPEM: ca})
	resp, err := mustGet(t, c, secure.URL+"/v2/r/blobs/sha256:1", map[string]string{"Authorization": "Bearer t"})
	if resp != nil {
		resp.Body.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "refusing redirect") || !strings.Contains(err.Error(), "downgrade") {
		t.Fatalf("err = %v, want a refused downgrade", err)
	}
	if plainHits.Load() != 0 {
		t.Errorf("the plain-HTTP server was contacted")
	}
}

func TestRedirectLimit(t *testing.T) {
	tests := []struct {
		redirects int
		wantErr   bool
	}{
		{10, false},
		{11, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.redirects), func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var n int
				fmt.Sscanf(r.URL.Path, "/%d", &n)
				hits.Add(1)
				if n < tc.redirects {
					http.Redirect(w, r, fmt.Sprintf("/%d", n+1), http.StatusFound)
					return
				}
				io.WriteString(w, "done")
			}))
			t.Cleanup(srv.Close)
			c, _ := quietClient(t, Options{})
			resp, err := mustGet(t, c, srv.URL+"/0", nil)
			if resp != nil {
				resp.Body.Close()
			}
			if tc.wantErr {
				var ue *url.Error
				if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "stopped after 10 redirects") {
					t.Fatalf("err = %v, want the redirect limit", err)
				}
				if hits.Load() != 11 {
					t.Errorf("server saw %d requests, want 11", hits.Load())
				}
				return
			}
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("err = %v, want success after %d redirects", err, tc.redirects)
			}
		})
	}
}
