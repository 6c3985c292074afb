package oci

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestResolve(t *testing.T) {
	ctx := context.Background()
	body := imageManifest(t, layerDesc(ocispec.MediaTypeImageLayer, "a.txt", []byte("a")))
	want := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(body), Size: int64(len(body))}
	other := digest.FromString("something else")

	tests := []struct {
		name      string
		ref       string
		setup     func(f *fakeRegistry)
		wantErr   []error // every one must match with errors.Is
		wantGETs  int     // GET requests on the manifest endpoint
		wantHEADs int
	}{
		{name: "HEAD with digest header", ref: "v1", wantHEADs: 1},
		{name: "HEAD by digest", ref: want.Digest.String(), wantHEADs: 1},
		{
			name:      "HEAD without digest header falls back to GET",
			ref:       "v1",
			setup:     func(f *fakeRegistry) { f.noHeadDigest = true },
			wantHEADs: 1, wantGETs: 1,
		},
		{
			name: "HEAD not allowed falls back to GET",
			ref:  "v1",
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method != http.MethodHead {
						return false
					}
					w.WriteHeader(http.StatusMethodNotAllowed)
					return true
				})
			},
			wantHEADs: 1, wantGETs: 1,
		},
		{
			name: "no digest header at all: sha256 of the GET body",
			ref:  "v1",
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					if r.Method == http.MethodGet {
						_, _ = w.Write(body)
					}
					return true
				})
			},
			wantHEADs: 1, wantGETs: 1,
		},
		{
			name: "HEAD with generic content type falls back to GET",
			ref:  "v1",
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method != http.MethodHead {
						return false
					}
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.Header().Set("Docker-Content-Digest", want.Digest.String())
					return true
				})
			},
			wantHEADs: 1, wantGETs: 1,
		},
		{
			name: "digest reference answered with another digest",
			ref:  want.Digest.String(),
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.Header().Set("Docker-Content-Digest", other.String())
					return true
				})
			},
			wantErr:   []error{ErrDigestMismatch},
			wantHEADs: 1,
		},
		{
			name: "invalid digest header",
			ref:  "v1",
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("z", 64))
					return true
				})
			},
			wantErr:   []error{digest.ErrDigestInvalidFormat},
			wantHEADs: 1,
		},
		{name: "unknown tag", ref: "nope", wantErr: []error{ErrManifestUnknown, ErrNotFound}, wantHEADs: 1},
		{name: "unknown digest", ref: other.String(), wantErr: []error{ErrManifestUnknown, ErrNotFound}, wantHEADs: 1},
		{
			name: "GET fallback with tampered body and digest header",
			ref:  "v1",
			setup: func(f *fakeRegistry) {
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method == http.MethodHead {
						w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
						return true
					}
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Header().Set("Docker-Content-Digest", want.Digest.String())
					_, _ = w.Write(append([]byte(" "), body...))
					return true
				})
			},
			wantErr:   []error{ErrDigestMismatch},
			wantHEADs: 1, wantGETs: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			f.putManifest(testRepo, "v1", ocispec.MediaTypeImageManifest, body)
			if tt.setup != nil {
				tt.setup(f)
			}
			got, err := f.repo(t).Resolve(ctx, tt.ref)
			switch {
			case len(tt.wantErr) > 0:
				if err == nil {
					t.Fatalf("Resolve(%q) = %v, want an error", tt.ref, got)
				}
				for _, we := range tt.wantErr {
					if !errors.Is(err, we) {
						t.Errorf("Resolve(%q) error %q does not match %v", tt.ref, err, we)
					}
				}
			case err != nil:
				t.Fatalf("Resolve(%q): %v", tt.ref, err)
			case !reflect.DeepEqual(got, want):
				t.Errorf("Resolve(%q) = %+v, want %+v", tt.ref, got, want)
			}
			if n := len(f.reqs(http.MethodHead, "/manifests/")); n != tt.wantHEADs {
				t.Errorf("HEAD requests = %d, want %d", n, tt.wantHEADs)
			}
			if n := len(f.reqs(http.MethodGet, "/manifests/")); n != tt.wantGETs {
				t.Errorf("GET requests = %d, want %d", n, tt.wantGETs)
			}
		})
	}
}

func TestResolveTooLarge(t *testing.T) {
	f := newFakeRegistry(t)
	body := imageManifest(t)
	f.putManifest(testRepo, "v1", ocispec.MediaTypeImageManifest, body)
	_, err := f.repo(t, withMaxManifest(int64(len(body)-1))).Resolve(context.Background(), "v1")
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Resolve of a manifest over the limit: err = %v, want ErrTooLarge", err)
	}
}

func TestManifestAcceptHeader(t *testing.T) {
	f := newFakeRegistry(t)
	f.putManifest(testRepo, "v1", ocispec.MediaTypeImageManifest, imageManifest(t))
	r := f.repo(t)
	if _, err := r.Resolve(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.FetchManifest(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}
	reqs := f.reqs("", "/manifests/")
	if len(reqs) != 2 {
		t.Fatalf("got %d manifest requests, want 2", len(reqs))
	}
	for _, req := range reqs {
		var accepted []string
		for _, v := range req.Header.Values("Accept") {
			for _, mt := range strings.Split(v, ",") {
				accepted = append(accepted, strings.TrimSpace(mt))
			}
		}
		for _, mt := range []string{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList} {
			if !contains(accepted, mt) {
				t.Errorf("%s Accept %q lacks %s", req.Method, accepted, mt)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestFetchManifest(t *testing.T) {
	ctx := context.Background()
	body := imageManifest(t, layerDesc(ocispec.MediaTypeImageLayer, "a.txt", []byte("a")))
	d := digest.FromBytes(body)
	tampered := append([]byte(nil), body...)
	tampered[len(tampered)-2] = ' ' // same length, other bytes
	dockerBody := []byte(`{"schemaVersion":2,"mediaType":"` + MediaTypeDockerManifest + `","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + digest.FromString("c").String() + `","size":1},"layers":[]}`)
	noTypeBody := []byte(`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"` + digest.FromString("c").String() + `","size":1},"layers":[]}`)

	// serve answers every manifest request with the given headers and body.
	serve := func(contentType, dgstHeader string, data []byte, chunked bool) func(f *fakeRegistry) {
		return func(f *fakeRegistry) {
			f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
				if contentType != "" {
					w.Header().Set("Content-Type", contentType)
				}
				if dgstHeader != "" {
					w.Header().Set("Docker-Content-Digest", dgstHeader)
				}
				if !chunked {
					w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				}
				w.WriteHeader(http.StatusOK)
				if chunked {
					// Flush before writing so net/http cannot compute a
					// Content-Length: the client sees a chunked body.
					w.(http.Flusher).Flush()
				}
				_, _ = w.Write(data)
				return true
			})
		}
	}

	tests := []struct {
		name     string
		ref      string
		max      int64
		setup    func(f *fakeRegistry)
		wantErr  error
		wantMT   string
		wantDesc digest.Digest
	}{
		{name: "by tag", ref: "v1", wantMT: ocispec.MediaTypeImageManifest, wantDesc: d},
		{name: "by digest", ref: d.String(), wantMT: ocispec.MediaTypeImageManifest, wantDesc: d},
		{name: "tag without digest header gets computed digest", ref: "v1", setup: serve(ocispec.MediaTypeImageManifest, "", body, false), wantMT: ocispec.MediaTypeImageManifest, wantDesc: d},
		{name: "tampered body by digest", ref: d.String(), setup: serve(ocispec.MediaTypeImageManifest, "", tampered, false), wantErr: ErrDigestMismatch},
		{name: "tampered body by digest with honest-looking header", ref: d.String(), setup: serve(ocispec.MediaTypeImageManifest, d.String(), tampered, false), wantErr: ErrDigestMismatch},
		{name: "tampered body by tag against header", ref: "v1", setup: serve(ocispec.MediaTypeImageManifest, d.String(), tampered, false), wantErr: ErrDigestMismatch},
		{name: "header disagrees with digest asked for", ref: d.String(), setup: serve(ocispec.MediaTypeImageManifest, digest.FromString("x").String(), body, false), wantErr: ErrDigestMismatch},
		{name: "invalid digest header for tag", ref: "v1", setup: serve(ocispec.MediaTypeImageManifest, "sha256:"+strings.Repeat("z", 64), body, false), wantErr: digest.ErrDigestInvalidFormat},
		{name: "oversize by Content-Length", ref: "v1", max: int64(len(body) - 1), wantErr: ErrTooLarge},
		{name: "oversize chunked", ref: "v1", max: int64(len(body) - 1), setup: serve(ocispec.MediaTypeImageManifest, "", body, true), wantErr: ErrTooLarge},
		{name: "exactly at the limit", ref: "v1", max: int64(len(body)), wantMT: ocispec.MediaTypeImageManifest, wantDesc: d},
		{name: "chunked within limit", ref: "v1", setup: serve(ocispec.MediaTypeImageManifest, "", body, true), wantMT: ocispec.MediaTypeImageManifest, wantDesc: d},
		{name: "content type with parameters", ref: "v1", setup: serve(ocispec.MediaTypeImageManifest+"; charset=utf-8", "", body, false), wantMT: ocispec.MediaTypeImageManifest, wantDesc: d},
		{name: "content type in upper case", ref: "v1", setup: serve(strings.ToUpper(ocispec.MediaTypeImageManifest), "", body, false), wantMT: ocispec.MediaTypeImageManifest, wantDesc: d},
		{name: "generic content type uses embedded mediaType", ref: "v1", setup: serve("application/json", "", body, false), wantMT: ocispec.MediaTypeImageManifest, wantDesc: d},
		{name: "no content type uses embedded docker mediaType", ref: "v1", setup: serve("", "", dockerBody, false), wantMT: MediaTypeDockerManifest, wantDesc: digest.FromBytes(dockerBody)},
		{name: "docker schema2", ref: "v1", setup: serve(MediaTypeDockerManifest, "", dockerBody, false), wantMT: MediaTypeDockerManifest, wantDesc: digest.FromBytes(dockerBody)},
		{name: "generic type and no embedded type", ref: "v1", setup: serve("application/json", "", noTypeBody, false), wantErr: ErrUnsupported},
		{name: "schema1", ref: "v1", setup: serve("application/vnd.docker.distribution.manifest.v1+prettyjws", "", []byte(`{"schemaVersion":1}`), false), wantErr: ErrUnsupported},
		{name: "not JSON", ref: "v1", setup: serve("text/html", "", []byte("<html>hi</html>"), false), wantErr: ErrUnsupported},
		{name: "unknown tag", ref: "nope", wantErr: ErrManifestUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			f.putManifest(testRepo, "v1", ocispec.MediaTypeImageManifest, body)
			if tt.setup != nil {
				tt.setup(f)
			}
			var mods []func(*Options)
			if tt.max > 0 {
				mods = append(mods, withMaxManifest(tt.max))
			}
			desc, data, err := f.repo(t, mods...).FetchManifest(ctx, tt.ref)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("FetchManifest(%q) err = %v, want %v", tt.ref, err, tt.wantErr)
				}
				if data != nil {
					t.Errorf("FetchManifest(%q) returned %d bytes along with an error", tt.ref, len(data))
				}
				return
			}
			if err != nil {
				t.Fatalf("FetchManifest(%q): %v", tt.ref, err)
			}
			if desc.MediaType != tt.wantMT || desc.Digest != tt.wantDesc || desc.Size != int64(len(data)) {
				t.Errorf("descriptor = %+v, want media type %s, digest %s, size %d", desc, tt.wantMT, tt.wantDesc, len(data))
			}
			if digest.FromBytes(data) != desc.Digest {
				t.Errorf("returned bytes do not match the returned digest")
			}
		})
	}
}

func TestFetchManifestDescriptor(t *testing.T) {
	ctx := context.Background()
	body := imageManifest(t)
	good := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(body), Size: int64(len(body))}
	tests := []struct {
		name    string
		desc    ocispec.Descriptor
		max     int64
		wantErr error
		wantAny bool // some error, no particular sentinel
	}{
		{name: "good", desc: good},
		{name: "no media type in descriptor", desc: ocispec.Descriptor{Digest: good.Digest, Size: good.Size}},
		{name: "wrong size", desc: ocispec.Descriptor{MediaType: good.MediaType, Digest: good.Digest, Size: good.Size + 1}, wantErr: ErrSizeMismatch},
		{name: "other media type", desc: ocispec.Descriptor{MediaType: MediaTypeDockerManifest, Digest: good.Digest, Size: good.Size}, wantAny: true},
		{name: "invalid digest", desc: ocispec.Descriptor{MediaType: good.MediaType, Digest: digest.Digest("sha256:" + strings.Repeat("x", 64)), Size: good.Size}, wantErr: digest.ErrDigestInvalidFormat},
		{name: "over the limit", desc: good, max: good.Size - 1, wantErr: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			f.putManifest(testRepo, "", ocispec.MediaTypeImageManifest, body)
			var mods []func(*Options)
			if tt.max > 0 {
				mods = append(mods, withMaxManifest(tt.max))
			}
			data, err := f.repo(t, mods...).FetchManifestDescriptor(ctx, tt.desc)
			switch {
			case tt.wantErr != nil || tt.wantAny:
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if data != nil {
					t.Errorf("bytes returned along with an error")
				}
			case err != nil:
				t.Fatal(err)
			case string(data) != string(body):
				t.Errorf("got %q, want %q", data, body)
			}
		})
	}
}

func TestDecodeManifest(t *testing.T) {
	cfg := `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digest.FromString("c").String() + `","size":1}`
	layer := func(dg string, size int) string {
		return `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + dg + `","size":` + strconv.Itoa(size) + `}`
	}
	good := layer(digest.FromString("l").String(), 1)
	man := func(schema int, mt string, layers ...string) string {
		s := `{"schemaVersion":` + strconv.Itoa(schema)
		if mt != "" {
			s += `,"mediaType":"` + mt + `"`
		}
		return s + `,"config":` + cfg + `,"layers":[` + strings.Join(layers, ",") + `]}`
	}
	tests := []struct {
		name   string
		mt     string
		data   string
		wantOK bool
		wantMT string
	}{
		{name: "OCI", mt: ocispec.MediaTypeImageManifest, data: man(2, ocispec.MediaTypeImageManifest, good), wantOK: true, wantMT: ocispec.MediaTypeImageManifest},
		{name: "OCI without mediaType field", mt: ocispec.MediaTypeImageManifest, data: man(2, "", good), wantOK: true, wantMT: ocispec.MediaTypeImageManifest},
		{name: "Docker schema2", mt: MediaTypeDockerManifest, data: man(2, MediaTypeDockerManifest, good), wantOK: true, wantMT: MediaTypeDockerManifest},
		{name: "with subject and artifactType", mt: ocispec.MediaTypeImageManifest, data: strings.TrimSuffix(man(2, ocispec.MediaTypeImageManifest), "}") + `,"artifactType":"a/b","subject":` + layer(digest.FromString("s").String(), 3) + `}`, wantOK: true, wantMT: ocispec.MediaTypeImageManifest},
		{name: "schemaVersion 1", mt: ocispec.MediaTypeImageManifest, data: man(1, "", good)},
		{name: "schemaVersion 3", mt: ocispec.MediaTypeImageManifest, data: man(3, "", good)},
		{name: "schemaVersion missing", mt: ocispec.MediaTypeImageManifest, data: `{"config":` + cfg + `,"layers":[]}`},
		{name: "mediaType contradicts served type", mt: ocispec.MediaTypeImageManifest, data: man(2, MediaTypeDockerManifest, good)},
		{name: "docker served, OCI embedded", mt: MediaTypeDockerManifest, data: man(2, ocispec.MediaTypeImageManifest, good)},
		{name: "index media type", mt: ocispec.MediaTypeImageIndex, data: man(2, "", good)},
		{name: "invalid layer digest", mt: ocispec.MediaTypeImageManifest, data: man(2, "", layer("sha256:abc", 1))},
		{name: "layer digest with unknown algorithm", mt: ocispec.MediaTypeImageManifest, data: man(2, "", layer("md5:d41d8cd98f00b204e9800998ecf8427e", 1))},
		{name: "negative size", mt: ocispec.MediaTypeImageManifest, data: man(2, "", layer(digest.FromString("l").String(), -1))},
		{name: "layer without mediaType", mt: ocispec.MediaTypeImageManifest, data: man(2, "", `{"digest":"`+digest.FromString("l").String()+`","size":1}`)},
		{name: "config missing", mt: ocispec.MediaTypeImageManifest, data: `{"schemaVersion":2,"layers":[]}`},
		{name: "invalid subject", mt: ocispec.MediaTypeImageManifest, data: strings.TrimSuffix(man(2, ""), "}") + `,"subject":{"mediaType":"a/b","digest":"nope","size":1}}`},
		{name: "trailing data", mt: ocispec.MediaTypeImageManifest, data: man(2, "", good) + `{}`},
		{name: "trailing garbage", mt: ocispec.MediaTypeImageManifest, data: man(2, "", good) + ` x`},
		{name: "trailing whitespace is fine", mt: ocispec.MediaTypeImageManifest, data: man(2, "", good) + " \n", wantOK: true, wantMT: ocispec.MediaTypeImageManifest},
		{name: "not JSON", mt: ocispec.MediaTypeImageManifest, data: `<html>`},
		{name: "array", mt: ocispec.MediaTypeImageManifest, data: `[]`},
		{name: "empty", mt: ocispec.MediaTypeImageManifest, data: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeManifest(tt.mt, []byte(tt.data))
			if !tt.wantOK {
				if err == nil {
					t.Fatalf("DecodeManifest accepted %s", tt.data)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeManifest: %v", err)
			}
			if m.MediaType != tt.wantMT {
				t.Errorf("MediaType = %q, want %q", m.MediaType, tt.wantMT)
			}
		})
	}
}

func TestDecodeIndex(t *testing.T) {
	entry := func(dg string, size int, platform string) string {
		s := `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + dg + `","size":` + strconv.Itoa(size)
		if platform != "" {
			s += `,"platform":` + platform
		}
		return s + "}"
	}
	good := entry(digest.FromString("m").String(), 10, `{"os":"linux","architecture":"amd64"}`)
	idx := func(schema int, mt string, entries ...string) string {
		s := `{"schemaVersion":` + strconv.Itoa(schema)
		if mt != "" {
			s += `,"mediaType":"` + mt + `"`
		}
		return s + `,"manifests":[` + strings.Join(entries, ",") + `]}`
	}
	tests := []struct {
		name   string
		mt     string
		data   string
		wantOK bool
		wantN  int
	}{
		{name: "OCI index", mt: ocispec.MediaTypeImageIndex, data: idx(2, ocispec.MediaTypeImageIndex, good, good), wantOK: true, wantN: 2},
		{name: "OCI index without mediaType", mt: ocispec.MediaTypeImageIndex, data: idx(2, "", good), wantOK: true, wantN: 1},
		{name: "Docker manifest list", mt: MediaTypeDockerManifestList, data: idx(2, MediaTypeDockerManifestList, good), wantOK: true, wantN: 1},
		{name: "empty list", mt: ocispec.MediaTypeImageIndex, data: idx(2, ""), wantOK: true},
		{name: "manifest media type", mt: ocispec.MediaTypeImageManifest, data: idx(2, "", good)},
		{name: "schemaVersion 1", mt: ocispec.MediaTypeImageIndex, data: idx(1, "", good)},
		{name: "mediaType contradicts", mt: ocispec.MediaTypeImageIndex, data: idx(2, MediaTypeDockerManifestList, good)},
		{name: "invalid entry digest", mt: ocispec.MediaTypeImageIndex, data: idx(2, "", entry("sha256:12", 1, ""))},
		{name: "negative entry size", mt: ocispec.MediaTypeImageIndex, data: idx(2, "", entry(digest.FromString("m").String(), -5, ""))},
		{name: "trailing data", mt: ocispec.MediaTypeImageIndex, data: idx(2, "", good) + "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeIndex(tt.mt, []byte(tt.data))
			if !tt.wantOK {
				if err == nil {
					t.Fatalf("DecodeIndex accepted %s", tt.data)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeIndex: %v", err)
			}
			if len(got.Manifests) != tt.wantN || got.MediaType != tt.mt {
				t.Errorf("got %d manifests and media type %q, want %d and %q", len(got.Manifests), got.MediaType, tt.wantN, tt.mt)
			}
		})
	}
}

func TestArtifactType(t *testing.T) {
	if got := ArtifactType(&Manifest{ArtifactType: "a/b", Config: ocispec.DescriptorEmptyJSON}); got != "a/b" {
		t.Errorf("with artifactType: %q", got)
	}
	if got := ArtifactType(&Manifest{Config: ocispec.Descriptor{MediaType: MediaTypeUnknownConfig}}); got != MediaTypeUnknownConfig {
		t.Errorf("without artifactType: %q", got)
	}
}

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in      string
		want    Platform
		wantErr bool
	}{
		{in: "linux/amd64", want: Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/arm/v7", want: Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{in: "windows/amd64", want: Platform{OS: "windows", Architecture: "amd64"}},
		{in: "linux", wantErr: true},
		{in: "", wantErr: true},
		{in: "linux/", wantErr: true},
		{in: "/amd64", wantErr: true},
		{in: "linux/arm/", wantErr: true},
		{in: "linux/arm/v7/extra", wantErr: true},
		{in: "linux/ amd64", wantErr: true},
		{in: "linux//amd64", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParsePlatform(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParsePlatform(%q) = %v, want an error", tt.in, got)
			} else if !strings.Contains(err.Error(), "os/arch") {
				t.Errorf("ParsePlatform(%q) error %q does not say the expected form", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func TestSelectPlatform(t *testing.T) {
	entry := func(name, os, arch, variant string) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(name), Size: 1}
		if os != "" {
			d.Platform = &ocispec.Platform{OS: os, Architecture: arch, Variant: variant}
		}
		return d
	}
	amd := entry("amd", "linux", "amd64", "")
	armv6 := entry("armv6", "linux", "arm", "v6")
	armv7 := entry("armv7", "linux", "arm", "v7")
	none := entry("none", "", "", "")
	p := func(s string) *Platform {
		pl, err := ParsePlatform(s)
		if err != nil {
			t.Fatal(err)
		}
		return &pl
	}
	tests := []struct {
		name        string
		entries     []ocispec.Descriptor
		want        *Platform
		wantDigest  digest.Digest
		errContains []string
	}{
		{name: "single entry, no platform", entries: []ocispec.Descriptor{amd}, wantDigest: amd.Digest},
		{name: "single entry without platform field", entries: []ocispec.Descriptor{none}, wantDigest: none.Digest},
		{name: "several, no platform", entries: []ocispec.Descriptor{amd, armv7, none}, errContains: []string{"3 manifests", "linux/amd64", "linux/arm/v7", "unknown", "platform"}},
		{name: "empty index, no platform", entries: nil, errContains: []string{"0 manifests"}},
		{name: "exact match", entries: []ocispec.Descriptor{amd, armv7}, want: p("linux/amd64"), wantDigest: amd.Digest},
		{name: "variant match", entries: []ocispec.Descriptor{armv6, armv7}, want: p("linux/arm/v7"), wantDigest: armv7.Digest},
		{name: "variant match, other order", entries: []ocispec.Descriptor{armv7, armv6}, want: p("linux/arm/v6"), wantDigest: armv6.Digest},
		{name: "no variant asked takes the first", entries: []ocispec.Descriptor{armv6, armv7}, want: p("linux/arm"), wantDigest: armv6.Digest},
		{name: "variant asked, none offered", entries: []ocispec.Descriptor{amd, armv6}, want: p("linux/arm/v8"), errContains: []string{"linux/arm/v8", "linux/amd64", "linux/arm/v6"}},
		{name: "no match", entries: []ocispec.Descriptor{amd, none}, want: p("windows/amd64"), errContains: []string{"windows/amd64", "linux/amd64", "unknown"}},
		{name: "single entry of another platform", entries: []ocispec.Descriptor{amd}, want: p("linux/arm64"), errContains: []string{"linux/arm64", "linux/amd64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SelectPlatform(&Index{Manifests: tt.entries}, tt.want)
			if tt.errContains != nil {
				if err == nil {
					t.Fatalf("SelectPlatform = %v, want an error", got.Digest)
				}
				if !errors.Is(err, ErrPlatformMismatch) {
					t.Errorf("error %q does not wrap ErrPlatformMismatch", err)
				}
				for _, s := range tt.errContains {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != tt.wantDigest {
				t.Errorf("selected %s, want %s", got.Digest, tt.wantDigest)
			}
		})
	}
}

func TestFetchTargetThroughIndex(t *testing.T) {
	ctx := context.Background()
	f := newFakeRegistry(t)
	amdBody := imageManifest(t, layerDesc(ocispec.MediaTypeImageLayer, "amd.txt", []byte("amd")))
	armBody := imageManifest(t, layerDesc(ocispec.MediaTypeImageLayer, "arm.txt", []byte("arm")))
	amd := f.putManifest(testRepo, "", ocispec.MediaTypeImageManifest, amdBody)
	arm := f.putManifest(testRepo, "", ocispec.MediaTypeImageManifest, armBody)
	amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	nested := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("n"), Size: 1, Platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"}}
	idxBody, err := json.Marshal(Index{Versioned: imageVersioned(), MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{amd, arm, nested}})
	if err != nil {
		t.Fatal(err)
	}
	root := f.putManifest(testRepo, "multi", ocispec.MediaTypeImageIndex, idxBody)
	r := f.repo(t)

	got, err := r.FetchTarget(ctx, "multi", &Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Root.Digest != root.Digest || got.Descriptor.Digest != arm.Digest || got.Manifest.Layers[0].Annotations[AnnotationTitle] != "arm.txt" {
		t.Errorf("FetchTarget = root %s, manifest %s; want %s, %s", got.Root.Digest, got.Descriptor.Digest, root.Digest, arm.Digest)
	}
	if _, err := r.FetchTarget(ctx, "multi", nil); err == nil || !strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("FetchTarget of an index without a platform: err = %v, want one listing the platforms", err)
	}
	if _, err := r.FetchTarget(ctx, "multi", &Platform{OS: "linux", Architecture: "s390x"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("FetchTarget of a nested index: err = %v, want ErrUnsupported", err)
	}
	// A plain manifest is its own target.
	got, err = r.FetchTarget(ctx, amd.Digest.String(), &Platform{OS: "windows", Architecture: "amd64"})
	if err != nil || got.Root.Digest != amd.Digest || got.Descriptor.Digest != amd.Digest {
		t.Errorf("FetchTarget of a manifest = %+v, %v", got, err)
	}
}
