//go:build linux

package bench

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// counts is a number of registry requests by "METHOD kind".
type counts map[string]int

func (c counts) count(key string) int { return c[key] }

func (c counts) total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// sub returns c minus before.
func (c counts) sub(before counts) counts {
	out := counts{}
	for k, v := range c {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// String lists the counts in a stable order, e.g. "GET manifest 5, HEAD manifest 5".
func (c counts) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if c[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// countingProxy is a reverse proxy in front of the registry that counts
// requests by method and endpoint kind, so the figures are what the
// manager asked, not what the registry logs; and the same again by
// repository, for the requests that name one.
type countingProxy struct {
	Host   string // host:port to put in references
	mu     sync.Mutex
	c      counts
	byRepo map[string]counts
	// labels names some manifests and blobs apart, by endpoint kind and
	// reference ("manifest sha256-…"): the requests of signature
	// verification, which the kind alone does not tell from the rest.
	labels map[string]string
}

func startProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("parsing the registry URL %q: %v", target, err)
	}
	p := &countingProxy{c: counts{}, byRepo: map[string]counts{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(rec, r)
		kind := endpointKind(r.URL.Path)
		p.mu.Lock()
		if l, ok := p.labels[labelKey(kind, r.URL.Path)]; ok {
			kind = l
		}
		p.mu.Unlock()
		key := r.Method + " " + kind
		// Failed requests are counted apart: a retry is a request too,
		// and the status says who failed.
		if rec.status >= 400 {
			key += fmt.Sprintf(" (%d)", rec.status)
		}
		p.mu.Lock()
		p.c[key]++
		if repo := repositoryOf(r.URL.Path); repo != "" {
			if p.byRepo[repo] == nil {
				p.byRepo[repo] = counts{}
			}
			p.byRepo[repo][key]++
		}
		p.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// label counts the requests for reference (a tag or digest) of the
// endpoint kind manifest or blob as of kind label, such as "manifest
// (signature)", from now on.
func (p *countingProxy) label(kind, reference, label string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.labels == nil {
		p.labels = map[string]string{}
	}
	p.labels[kind+" "+reference] = label
}

// labelKey is the key of label for a request of kind to path: the kind
// and the path's last element, the reference of a manifest or blob.
func labelKey(kind, path string) string {
	return kind + " " + path[strings.LastIndexByte(path, '/')+1:]
}

// statusRecorder keeps the status code a handler writes.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Flush lets the reverse proxy stream blobs through.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// snapshot returns a copy of the counts so far.
func (p *countingProxy) snapshot() counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.c)
}

// snapshotRepos returns a copy of the counts so far by repository.
func (p *countingProxy) snapshotRepos() map[string]counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]counts, len(p.byRepo))
	for repo, c := range p.byRepo {
		out[repo] = maps.Clone(c)
	}
	return out
}

// repositoryOf is the repository a distribution API path names, "" for
// one that names none (the ping, the catalog, anything else).
func repositoryOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	end := -1
	for _, sep := range []string{"/manifests/", "/blobs/", "/tags/list", "/referrers/"} {
		if i := strings.Index(rest, sep); i > 0 && (end < 0 || i < end) {
			end = i
		}
	}
	if end < 0 {
		return ""
	}
	return rest[:end]
}

// endpointKind names the distribution API endpoint of path.
func endpointKind(path string) string {
	if path == "/v2/" || path == "/v2" {
		return "ping"
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "other"
	}
	switch {
	case strings.Contains(rest, "/blobs/uploads"):
		return "upload"
	case strings.Contains(rest, "/blobs/"):
		return "blob"
	case strings.Contains(rest, "/manifests/"):
		return "manifest"
	case strings.HasSuffix(rest, "/tags/list"):
		return "tags"
	case strings.Contains(rest, "/referrers/"):
		return "referrers"
	}
	return "other"
}

func TestEndpointKind(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/v2/", "ping"},
		{"/v2/a/b/manifests/v1", "manifest"},
		{"/v2/a/manifests/sha256:abc", "manifest"},
		{"/v2/a/blobs/sha256:abc", "blob"},
		{"/v2/a/blobs/uploads/", "upload"},
		{"/v2/a/blobs/uploads/123", "upload"},
		{"/v2/a/tags/list", "tags"},
		{"/v2/a/referrers/sha256:abc", "referrers"},
		{"/token", "other"},
	} {
		if got := endpointKind(tc.path); got != tc.want {
			t.Errorf("endpointKind(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestRepositoryOf(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/v2/", ""},
		{"/v2/bench/repo-3/manifests/v1", "bench/repo-3"},
		{"/v2/a/manifests/sha256:abc", "a"},
		{"/v2/a/b/c/blobs/sha256:abc", "a/b/c"},
		{"/v2/a/blobs/uploads/123", "a"},
		{"/v2/a/tags/list", "a"},
		{"/v2/a/referrers/sha256:abc", "a"},
		{"/v2/_catalog", ""},
		{"/token", ""},
	} {
		if got := repositoryOf(tc.path); got != tc.want {
			t.Errorf("repositoryOf(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
