package oci

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/reference"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

// testRepo is the repository the tests use unless they need a second one.
const testRepo = "test/repo"

// fakeRegistry is a small in-memory distribution-spec registry. Content
// lives in maps keyed by repository; intercept lets a test take over any
// request to make the registry misbehave.
type fakeRegistry struct {
	t    *testing.T
	srv  *httptest.Server
	host string

	mu        sync.Mutex
	manifests map[string]fakeManifest // repo@digest
	tags      map[string]string       // repo:tag -> digest
	blobs     map[string][]byte       // repo@digest
	uploads   map[string]string       // upload id -> repo
	nextID    int
	requests  []fakeRequest

	// Knobs, set before the client runs.
	user, pass    string // when set, every request needs this Basic credential
	tagPageSize   int    // paginate tags/list with Link headers
	locationQuery string // appended to upload Locations, e.g. "?_state=x"
	refuseMount   bool   // answer mounts with 202 and an upload session
	noHeadDigest  bool   // HEAD on manifests leaves out Docker-Content-Digest
	intercept     func(w http.ResponseWriter, r *http.Request) bool
}

type fakeManifest struct {
	mediaType string
	data      []byte
}

type fakeRequest struct {
	Method, Path, RawQuery string
	Header                 http.Header
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{
		t:         t,
		manifests: map[string]fakeManifest{},
		tags:      map[string]string{},
		blobs:     map[string][]byte{},
		uploads:   map[string]string{},
	}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	f.host = f.srv.Listener.Addr().String()
	return f
}

// repo returns a Repository for testRepo on this registry, with retries
// off so that error statuses come back at once.
func (f *fakeRegistry) repo(t *testing.T, mod ...func(*Options)) *Repository {
	t.Helper()
	return f.repoNamed(t, testRepo, mod...)
}

func (f *fakeRegistry) repoNamed(t *testing.T, name string, mod ...func(*Options)) *Repository {
	t.Helper()
	opts := Options{PlainHTTP: true, Transport: transport.Options{MaxRetries: -1}}
	for _, m := range mod {
		m(&opts)
	}
	c, err := NewClient(opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c.Repository(reference.Reference{Registry: f.host, Repository: name})
}

// withCredential configures a static Basic credential for the registry.
func (f *fakeRegistry) withCredential(user, pass string) func(*Options) {
	return func(o *Options) {
		o.Credentials = auth.StaticCredential(f.host, auth.Credential{Username: user, Password: pass})
	}
}

func withMaxManifest(n int64) func(*Options) {
	return func(o *Options) { o.MaxManifestBytes = n }
}

func (f *fakeRegistry) setIntercept(fn func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.intercept = fn
}

// putBlob stores data as a blob of repo and returns its descriptor.
func (f *fakeRegistry) putBlob(repo string, mediaType string, data []byte) ocispec.Descriptor {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := digest.FromBytes(data)
	f.blobs[repo+"@"+d.String()] = append([]byte(nil), data...)
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

// putManifest stores a manifest under its digest and, if tag is set, the tag.
func (f *fakeRegistry) putManifest(repo, tag, mediaType string, data []byte) ocispec.Descriptor {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := digest.FromBytes(data)
	f.manifests[repo+"@"+d.String()] = fakeManifest{mediaType: mediaType, data: append([]byte(nil), data...)}
	if tag != "" {
		f.tags[repo+":"+tag] = d.String()
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

func (f *fakeRegistry) blob(repo string, d digest.Digest) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[repo+"@"+d.String()]
	return b, ok
}

func (f *fakeRegistry) manifest(repo, ref string) (fakeManifest, string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.manifestLocked(repo, ref)
}

func (f *fakeRegistry) manifestLocked(repo, ref string) (fakeManifest, string, bool) {
	if d, ok := f.tags[repo+":"+ref]; ok {
		ref = d
	}
	m, ok := f.manifests[repo+"@"+ref]
	return m, ref, ok
}

// reqs returns the recorded requests whose method matches (any when empty)
// and whose path contains pathPart.
func (f *fakeRegistry) reqs(method, pathPart string) []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeRequest
	for _, r := range f.requests {
		if (method == "" || r.Method == method) && strings.Contains(r.Path, pathPart) {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeRegistry) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func writeRegistryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()})
	user, pass, intercept := f.user, f.pass, f.intercept
	f.mu.Unlock()

	if user != "" {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="fake registry"`)
			writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
	}
	if intercept != nil && intercept(w, r) {
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case rest == "":
		w.WriteHeader(http.StatusOK)
	case strings.Contains(rest, "/manifests/"):
		i := strings.LastIndex(rest, "/manifests/")
		f.serveManifest(w, r, rest[:i], rest[i+len("/manifests/"):])
	case strings.HasSuffix(rest, "/blobs/uploads/"):
		f.startUpload(w, r, strings.TrimSuffix(rest, "/blobs/uploads/"))
	case strings.Contains(rest, "/blobs/uploads/"):
		i := strings.LastIndex(rest, "/blobs/uploads/")
		f.finishUpload(w, r, rest[:i], rest[i+len("/blobs/uploads/"):])
	case strings.Contains(rest, "/blobs/"):
		i := strings.LastIndex(rest, "/blobs/")
		f.serveBlob(w, r, rest[:i], rest[i+len("/blobs/"):])
	case strings.HasSuffix(rest, "/tags/list"):
		f.serveTags(w, r, strings.TrimSuffix(rest, "/tags/list"))
	default:
		writeRegistryError(w, http.StatusNotFound, "NAME_UNKNOWN", "no such endpoint")
	}
}

func (f *fakeRegistry) serveManifest(w http.ResponseWriter, r *http.Request, repo, ref string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		m, d, ok := f.manifest(repo, ref)
		if !ok {
			writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		w.Header().Set("Content-Type", m.mediaType)
		w.Header().Set("Content-Length", strconv.Itoa(len(m.data)))
		f.mu.Lock()
		noHead := f.noHeadDigest
		f.mu.Unlock()
		if r.Method == http.MethodGet || !noHead {
			w.Header().Set("Docker-Content-Digest", d)
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(m.data)
		}
	case http.MethodPut:
		const limit = 4 << 20
		data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil || int64(len(data)) > limit {
			writeRegistryError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", "manifest too large")
			return
		}
		d := digest.FromBytes(data)
		if want, err := digest.Parse(ref); err == nil && want != d {
			writeRegistryError(w, http.StatusBadRequest, "DIGEST_INVALID", "digest does not match")
			return
		}
		tag := ref
		if _, err := digest.Parse(ref); err == nil {
			tag = ""
		}
		f.putManifest(repo, tag, r.Header.Get("Content-Type"), data)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Location", "/v2/"+repo+"/manifests/"+d.String())
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (f *fakeRegistry) serveBlob(w http.ResponseWriter, r *http.Request, repo, dgst string) {
	d, err := digest.Parse(dgst)
	if err != nil {
		writeRegistryError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest")
		return
	}
	data, ok := f.blob(repo, d)
	if !ok {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("Docker-Content-Digest", d.String())
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(data)
	}
}

func (f *fakeRegistry) startUpload(w http.ResponseWriter, r *http.Request, repo string) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	if mount, from := q.Get("mount"), q.Get("from"); mount != "" && from != "" && !f.refuseMount {
		if data, ok := f.blobs[from+"@"+mount]; ok {
			f.blobs[repo+"@"+mount] = data
			w.Header().Set("Location", "/v2/"+repo+"/blobs/"+mount)
			w.Header().Set("Docker-Content-Digest", mount)
			w.WriteHeader(http.StatusCreated)
			return
		}
	}
	f.nextID++
	id := "upload-" + strconv.Itoa(f.nextID)
	f.uploads[id] = repo
	w.Header().Set("Location", "/v2/"+repo+"/blobs/uploads/"+id+f.locationQuery)
	w.Header().Set("Docker-Upload-UUID", id)
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakeRegistry) finishUpload(w http.ResponseWriter, r *http.Request, repo, id string) {
	if r.Method != http.MethodPut {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	f.mu.Lock()
	upRepo, ok := f.uploads[id]
	f.mu.Unlock()
	if !ok || upRepo != repo {
		writeRegistryError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
		return
	}
	want, err := digest.Parse(r.URL.Query().Get("digest"))
	if err != nil {
		writeRegistryError(w, http.StatusBadRequest, "DIGEST_INVALID", "missing or invalid digest")
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeRegistryError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "reading body failed")
		return
	}
	if digest.FromBytes(data) != want {
		writeRegistryError(w, http.StatusBadRequest, "DIGEST_INVALID", "digest does not match content")
		return
	}
	f.mu.Lock()
	f.blobs[repo+"@"+want.String()] = data
	delete(f.uploads, id)
	f.mu.Unlock()
	w.Header().Set("Location", "/v2/"+repo+"/blobs/"+want.String())
	w.Header().Set("Docker-Content-Digest", want.String())
	w.WriteHeader(http.StatusCreated)
}

func (f *fakeRegistry) serveTags(w http.ResponseWriter, r *http.Request, repo string) {
	f.mu.Lock()
	var tags []string
	for k := range f.tags {
		if name, tag, ok := strings.Cut(k, ":"); ok && name == repo {
			tags = append(tags, tag)
		}
	}
	pageSize := f.tagPageSize
	f.mu.Unlock()
	sort.Strings(tags)
	if last := r.URL.Query().Get("last"); last != "" {
		i := sort.SearchStrings(tags, last)
		if i < len(tags) && tags[i] == last {
			i++
		}
		tags = tags[i:]
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && n > 0 {
		pageSize = n
	}
	if pageSize > 0 && len(tags) > pageSize {
		tags = tags[:pageSize]
		q := url.Values{"n": {strconv.Itoa(pageSize)}, "last": {tags[len(tags)-1]}}
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, repo, q.Encode()))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": tags})
}

// --- content builders ---

// layerDesc describes data as a layer titled title (no title when empty).
func layerDesc(mediaType, title string, data []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if title != "" {
		d.Annotations = map[string]string{AnnotationTitle: title}
	}
	return d
}

// imageManifest encodes an OCI manifest with an empty config and layers.
func imageManifest(t *testing.T, layers ...ocispec.Descriptor) []byte {
	t.Helper()
	if layers == nil {
		layers = []ocispec.Descriptor{}
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.DescriptorEmptyJSON,
		Layers:    layers,
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// pushArtifact stores blobs and a manifest listing them under tag.
func (f *fakeRegistry) pushArtifact(t *testing.T, repo, tag string, layers []ocispec.Descriptor, contents [][]byte) ocispec.Descriptor {
	t.Helper()
	for i, c := range contents {
		f.putBlob(repo, layers[i].MediaType, c)
	}
	f.putBlob(repo, ocispec.MediaTypeEmptyJSON, []byte("{}"))
	return f.putManifest(repo, tag, ocispec.MediaTypeImageManifest, imageManifest(t, layers...))
}

func imageVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }

func parseQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("parsing query %q: %v", raw, err)
	}
	return q
}
