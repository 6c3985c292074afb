package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	"github.com/opencontainers/go-digest"

	registrytest "github.com/ocisync/ocisync/test/registry"
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
	// faultServerError answers 500 Internal Server Error.
	faultServerError
	// faultTooManyRequests answers 429 with "Retry-After: 1", as a
	// rate-limiting registry does.
	faultTooManyRequests
	// faultResetBlob sends the headers and half of a blob body, then
	// resets the connection.
	faultResetBlob
	// faultTruncateBlob sends half of a blob body and ends the response
	// normally, keeping the Content-Length of the whole.
	faultTruncateBlob
	// faultStallBlob sends the headers and half of a blob body, then
	// stalls until the fault is changed or the client gives up.
	faultStallBlob
	// faultRedirectBlob answers blob downloads with a 307 redirect to the
	// proxy's redirect target (see SetRedirectTarget), another origin.
	faultRedirectBlob
	// faultRejectToken answers requests carrying a bearer token with 401
	// and a fresh challenge, as a registry does once the token expired.
	faultRejectToken
	// faultServeManifest answers GET and HEAD of manifests with the
	// manifest set by SetManifest, whatever the reference: content the
	// registry itself would refuse to store.
	faultServeManifest
)

func (f fault) String() string {
	return [...]string{"none", "corrupt blobs", "503", "drop connections", "hang",
		"500", "429 with Retry-After", "reset mid-blob", "truncated blob", "stalled blob", "redirected blob",
		"expired token", "served manifest"}[f]
}

// blobFault reports whether f only concerns blob downloads: other requests
// pass untouched.
func (f fault) blobFault() bool {
	switch f {
	case faultCorruptBlobs, faultResetBlob, faultTruncateBlob, faultStallBlob, faultRedirectBlob:
		return true
	}
	return false
}

// servedManifest is what faultServeManifest answers with.
type servedManifest struct {
	contentType string
	body        []byte
	// digest is body's, set by SetManifest.
	digest digest.Digest
	// streamed leaves Content-Length out and answers HEAD with 405, so
	// that a client learns the size only by reading the body.
	streamed bool
}

// manifestSent says how much of the served manifest the proxy got out.
type manifestSent struct {
	// Bodies counts the GETs answered (fully or until the client hung
	// up); Bytes is the most written to one of them.
	Bodies int
	Bytes  int64
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
	// remaining, when set for a repository, is how many more requests its
	// fault hits before it clears itself: a burst.
	remaining map[string]int
	// release is closed when a repository's faultHang or faultStallBlob
	// ends.
	release map[string]chan struct{}
	counts  map[requestKey]int
	// faulted counts the requests a fault was applied to, by repository.
	faulted map[string]int
	// redirectTarget is the base URL faultRedirectBlob sends clients to.
	redirectTarget string
	// tokenRealm is the token server the registry's challenges name; when
	// set, challenges name the proxy's /token instead, which forwards to
	// it, so that faults can reach the token endpoint (as repository
	// tokenRepo).
	tokenRealm string
	tokenProxy *httputil.ReverseProxy
	// manifests and sent are faultServeManifest's content and what it
	// wrote, by repository.
	manifests map[string]servedManifest
	sent      map[string]manifestSent
}

// tokenRepo is the key of the token endpoint's faults and counts.
const tokenRepo = "/token"

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

// startRegistryProxy serves a plain-HTTP proxy to target (an http:// or,
// trusting caFile, https:// URL) until the current node (spec or suite)
// ends.
func startRegistryProxy(target string, caFile ...string) *registryProxy {
	GinkgoHelper()
	u, err := url.Parse(target)
	if err != nil {
		Fail("parse the proxy target " + target + ": " + err.Error())
	}
	p := &registryProxy{
		faults:    map[string]fault{},
		remaining: map[string]int{},
		release:   map[string]chan struct{}{},
		counts:    map[requestKey]int{},
		faulted:   map[string]int{},
		manifests: map[string]servedManifest{},
		sent:      map[string]manifestSent{},
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	if len(caFile) > 0 {
		pem, err := os.ReadFile(caFile[0])
		if err != nil {
			Fail("read the proxy target's CA: " + err.Error())
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
		},
		Transport:      transport,
		ModifyResponse: p.modifyResponse,
		ErrorLog:       log.New(GinkgoWriter, "registry proxy: ", 0),
		// Flush at once, so a stalled body has really sent its first half.
		FlushInterval: -1,
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

// SetBurst applies f to the next n requests of repo it concerns, then
// clears it.
func (p *registryProxy) SetBurst(repo string, f fault, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setFaultLocked(repo, f)
	p.remaining[repo] = n
}

// Faulted returns how many requests of repo a fault was applied to.
func (p *registryProxy) Faulted(repo string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faulted[repo]
}

// SetManifest makes the proxy answer every manifest request of repo with m
// (faultServeManifest) until the fault is changed.
func (p *registryProxy) SetManifest(repo string, m servedManifest) {
	m.digest = digest.FromBytes(m.body)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.manifests[repo] = m
	p.sent[repo] = manifestSent{}
	p.setFaultLocked(repo, faultServeManifest)
}

// ManifestSent returns how much of SetManifest's manifest reached clients.
func (p *registryProxy) ManifestSent(repo string) manifestSent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent[repo]
}

// SetRedirectTarget sets the base URL (scheme://host) faultRedirectBlob
// redirects to.
func (p *registryProxy) SetRedirectTarget(base string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirectTarget = base
}

func (p *registryProxy) setFaultLocked(repo string, f fault) {
	delete(p.remaining, repo)
	if ch, ok := p.release[repo]; ok && f != faultHang && f != faultStallBlob {
		close(ch)
		delete(p.release, repo)
	}
	if f == faultHang || f == faultStallBlob {
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

// ProxyTokens makes the registry's challenges name the proxy's /token
// instead of realm, the registry's token server, and forwards /token there.
func (p *registryProxy) ProxyTokens(realm string) {
	GinkgoHelper()
	u, err := url.Parse(realm)
	if err != nil {
		Fail("parse the token realm " + realm + ": " + err.Error())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenRealm = realm
	p.tokenProxy = &httputil.ReverseProxy{
		Rewrite:  func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: u.Scheme, Host: u.Host}) },
		ErrorLog: log.New(GinkgoWriter, "token proxy: ", 0),
	}
}

// takeLocked returns the fault to apply to request r of repo and kind,
// counting it against a burst, and the channel that ends a stall. Call
// with p.mu held.
func (p *registryProxy) takeLocked(repo, kind string, r *http.Request) (fault, chan struct{}) {
	f := p.faults[repo]
	if f == faultNone || (f.blobFault() && (kind != "blobs" || r.Method != http.MethodGet)) {
		return faultNone, nil
	}
	if f == faultServeManifest && (kind != "manifests" || (r.Method != http.MethodGet && r.Method != http.MethodHead)) {
		return faultNone, nil
	}
	if f == faultRejectToken && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		return faultNone, nil
	}
	release := p.release[repo]
	p.faulted[repo]++
	if n, ok := p.remaining[repo]; ok {
		if n <= 1 {
			p.setFaultLocked(repo, faultNone)
		} else {
			p.remaining[repo] = n - 1
		}
	}
	return f, release
}

// faultKey carries the fault chosen for a request to modifyResponse.
type faultKey struct{}

type faultValue struct {
	f       fault
	release chan struct{}
}

func (p *registryProxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	repo, kind := parseRegistryPath(r.URL.Path)
	p.mu.Lock()
	tokens := p.tokenProxy
	if tokens != nil && r.URL.Path == tokenRepo {
		repo = tokenRepo
	}
	p.counts[requestKey{repo, r.Method, kind}]++
	f, release := p.takeLocked(repo, kind, r)
	redirect := p.redirectTarget
	p.mu.Unlock()

	if repo == tokenRepo {
		if f == faultUnavailable {
			http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"the test token server is down"}]}`, http.StatusServiceUnavailable)
			return
		}
		r.URL.Path = "/token"
		tokens.ServeHTTP(w, r)
		return
	}
	switch f {
	case faultRejectToken:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service=%q,scope="repository:%s:pull"`,
			p.server.URL, registrytest.DefaultService, repo))
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}`, http.StatusUnauthorized)
		return
	case faultUnavailable:
		http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"the test proxy is refusing service"}]}`, http.StatusServiceUnavailable)
		return
	case faultServerError:
		http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"the test proxy failed"}]}`, http.StatusInternalServerError)
		return
	case faultTooManyRequests:
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"the test proxy is rate limiting"}]}`, http.StatusTooManyRequests)
		return
	case faultRedirectBlob:
		http.Redirect(w, r, redirect+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		return
	case faultServeManifest:
		p.serveManifest(w, r, repo)
		return
	case faultResetBlob, faultTruncateBlob, faultStallBlob, faultCorruptBlobs:
		r = r.WithContext(context.WithValue(r.Context(), faultKey{}, faultValue{f, release}))
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

// serveManifest answers with repo's servedManifest and records how many
// bytes of it the client took before it hung up.
func (p *registryProxy) serveManifest(w http.ResponseWriter, r *http.Request, repo string) {
	p.mu.Lock()
	m := p.manifests[repo]
	p.mu.Unlock()
	if m.streamed && r.Method == http.MethodHead {
		http.Error(w, `{"errors":[{"code":"UNSUPPORTED","message":"the test proxy serves this manifest to GET only"}]}`, http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", m.contentType)
	h.Set("Docker-Content-Digest", m.digest.String())
	if !m.streamed {
		h.Set("Content-Length", strconv.Itoa(len(m.body)))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	// Write in chunks and flush each, so what was written is what the
	// connection took, not what sat in the server's buffer.
	rc := http.NewResponseController(w)
	var n int64
	for rest := m.body; len(rest) > 0; {
		chunk := rest[:min(len(rest), 32<<10)]
		k, err := w.Write(chunk)
		n += int64(k)
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			break
		}
		rest = rest[k:]
	}
	p.mu.Lock()
	s := p.sent[repo]
	s.Bodies++
	s.Bytes = max(s.Bytes, n)
	p.sent[repo] = s
	p.mu.Unlock()
}

func (p *registryProxy) modifyResponse(resp *http.Response) error {
	p.mu.Lock()
	realm := p.tokenRealm
	p.mu.Unlock()
	if c := resp.Header.Get("WWW-Authenticate"); realm != "" && c != "" {
		resp.Header.Set("WWW-Authenticate", strings.ReplaceAll(c, realm, p.server.URL+tokenRepo))
	}
	v, _ := resp.Request.Context().Value(faultKey{}).(faultValue)
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	half := resp.ContentLength / 2
	switch v.f {
	case faultCorruptBlobs:
		resp.Body = &corruptingReader{ReadCloser: resp.Body}
	case faultResetBlob:
		// ReverseProxy aborts the response when copying the body fails.
		resp.Body = &cutReader{ReadCloser: resp.Body, left: half, err: errors.New("the test proxy reset the connection")}
	case faultTruncateBlob:
		resp.Body = &cutReader{ReadCloser: resp.Body, left: half, err: io.EOF}
	case faultStallBlob:
		resp.Body = &cutReader{ReadCloser: resp.Body, left: half, stall: v.release, ctx: resp.Request.Context()}
	}
	return nil
}

// cutReader passes on left bytes, then stalls until stall is closed or ctx
// ends when stall is set, and returns err otherwise.
type cutReader struct {
	io.ReadCloser
	left  int64
	err   error
	stall chan struct{}
	ctx   context.Context
}

func (c *cutReader) Read(b []byte) (int, error) {
	if c.left <= 0 {
		if c.stall != nil {
			select {
			case <-c.stall:
			case <-c.ctx.Done():
			}
			return 0, errors.New("the test proxy stalled the body")
		}
		return 0, c.err
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.ReadCloser.Read(b)
	c.left -= int64(n)
	return n, err
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
