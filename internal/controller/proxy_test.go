package controller

import (
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
)

// fault is what the proxy does to the requests of one repository.
type fault int

const (
	// faultNone passes requests through untouched.
	faultNone fault = iota
	// faultCorruptBlobs flips the first byte of every blob body it
	// serves, keeping the length, as a tampering mirror would.
	faultCorruptBlobs
	// faultUnavailable answers 503 Service Unavailable.
	faultUnavailable
	// faultDrop closes the connection without answering.
	faultDrop
	// faultHang holds requests until the fault is changed, so a sync
	// can be caught in the middle.
	faultHang
)

func (f fault) String() string {
	return [...]string{"none", "corrupt blobs", "503", "drop connections", "hang"}[f]
}

// requestKey counts requests by repository, method and endpoint kind
// (manifests, blobs, uploads, tags, or "" for anything else such as /v2/).
type requestKey struct {
	repo, method, kind string
}

// registryProxy is a reverse proxy in front of a plain-HTTP registry that
// counts requests and injects faults per repository, so specs sharing it
// do not disturb each other.
type registryProxy struct {
	// Host is "127.0.0.1:port", the registry host Artifacts name.
	Host string

	server *httptest.Server
	proxy  *httputil.ReverseProxy

	mu     sync.Mutex
	faults map[string]fault
	// release is closed when a repository's faultHang ends.
	release map[string]chan struct{}
	counts  map[requestKey]int
}

// registryPath splits /v2/<repo>/<kind>/<rest>; blob uploads get their own
// kind so that they are never mistaken for downloads.
var registryPath = regexp.MustCompile(`^/v2/(.+?)/(manifests|blobs|tags)/(.*)$`)

func parseRegistryPath(p string) (repo, kind string) {
	m := registryPath.FindStringSubmatch(p)
	if m == nil {
		return "", ""
	}
	repo, kind = m[1], m[2]
	if kind == "blobs" && strings.HasPrefix(m[3], "uploads") {
		kind = "uploads"
	}
	return repo, kind
}

// startRegistryProxy serves a proxy to target (an http:// URL) until the
// current node (spec or suite) ends.
func startRegistryProxy(target string) *registryProxy {
	GinkgoHelper()
	u, err := url.Parse(target)
	if err != nil {
		Fail("parse the proxy target " + target + ": " + err.Error())
	}
	p := &registryProxy{
		faults:  map[string]fault{},
		release: map[string]chan struct{}{},
		counts:  map[requestKey]int{},
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
		},
		Transport:      transport,
		ModifyResponse: p.modifyResponse,
		ErrorLog:       log.New(GinkgoWriter, "registry proxy: ", 0),
	}
	p.server = httptest.NewServer(http.HandlerFunc(p.serveHTTP))
	p.Host = strings.TrimPrefix(p.server.URL, "http://")
	DeferCleanup(func() {
		// Let hanging requests go before Close waits for them.
		p.mu.Lock()
		for repo := range p.release {
			p.setFaultLocked(repo, faultNone)
		}
		p.mu.Unlock()
		p.server.CloseClientConnections()
		p.server.Close()
		transport.CloseIdleConnections()
	})
	return p
}

// Ref returns host/repo:tag through the proxy (host/repo when tag is "").
func (p *registryProxy) Ref(repo, tag string) string {
	if tag == "" {
		return p.Host + "/" + repo
	}
	return p.Host + "/" + repo + ":" + tag
}

// SetFault makes the proxy treat repo's requests with f from now on.
func (p *registryProxy) SetFault(repo string, f fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setFaultLocked(repo, f)
}

func (p *registryProxy) setFaultLocked(repo string, f fault) {
	if ch, ok := p.release[repo]; ok && f != faultHang {
		close(ch)
		delete(p.release, repo)
	}
	if f == faultHang {
		if _, ok := p.release[repo]; !ok {
			p.release[repo] = make(chan struct{})
		}
	}
	if f == faultNone {
		delete(p.faults, repo)
		return
	}
	p.faults[repo] = f
}

// Counts returns a copy of the request counts of repo.
func (p *registryProxy) Counts(repo string) map[requestKey]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[requestKey]int{}
	for k, n := range p.counts {
		if k.repo == repo {
			out[k] = n
		}
	}
	return out
}

// Count returns how many method requests to kind endpoints of repo passed
// through the proxy.
func (p *registryProxy) Count(repo, method, kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[requestKey{repo, method, kind}]
}

// countsSince returns the requests made since an earlier Counts snapshot,
// without the keys that did not change.
func countsSince(before, after map[requestKey]int) map[requestKey]int {
	out := maps.Clone(after)
	for k, n := range before {
		if out[k] -= n; out[k] == 0 {
			delete(out, k)
		}
	}
	return out
}

func (p *registryProxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	repo, kind := parseRegistryPath(r.URL.Path)
	p.mu.Lock()
	p.counts[requestKey{repo, r.Method, kind}]++
	f := p.faults[repo]
	release := p.release[repo]
	p.mu.Unlock()

	switch f {
	case faultUnavailable:
		http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"the test proxy is refusing service"}]}`, http.StatusServiceUnavailable)
		return
	case faultDrop:
		// Aborting before any header is written makes the server close
		// the connection: the client sees it reset without an answer.
		panic(http.ErrAbortHandler)
	case faultHang:
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
	}
	p.proxy.ServeHTTP(w, r)
}

func (p *registryProxy) modifyResponse(resp *http.Response) error {
	repo, kind := parseRegistryPath(resp.Request.URL.Path)
	p.mu.Lock()
	f := p.faults[repo]
	p.mu.Unlock()
	if f == faultCorruptBlobs && kind == "blobs" && resp.Request.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
		resp.Body = &corruptingReader{ReadCloser: resp.Body}
	}
	return nil
}

// corruptingReader flips every bit of the first byte it passes on, so the
// body keeps its length but not its digest.
type corruptingReader struct {
	io.ReadCloser
	done bool
}

func (c *corruptingReader) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	if n > 0 && !c.done {
		b[0] ^= 0xff
		c.done = true
	}
	return n, err
}
