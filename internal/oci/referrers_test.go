package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	sigType   = "application/vnd.dev.sigstore.bundle.v0.3+json"
	otherType = "application/vnd.example.sbom"
)

// referrerIndex is an image index of descriptors of the given artifact
// types, each its own digest.
func referrerIndex(t *testing.T, types ...string) []byte {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	for i, at := range types {
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, ArtifactType: at, Size: 100,
			Digest: digest.FromString(fmt.Sprint(at, i)),
		})
	}
	data, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// serveReferrers makes f answer the referrers API for subject with pages
// of the given artifact types, linked by rel="next", ignoring any filter.
func serveReferrers(f *fakeRegistry, subject digest.Digest, pages [][]string, link func(page int) string) {
	f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/referrers/"+subject.String()) {
			return false
		}
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page+1 < len(pages) {
			w.Header().Set("Link", link(page+1))
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
		_, _ = w.Write(referrerIndex(f.t, pages[page]...))
		return true
	})
}

func TestReferrersAPI(t *testing.T) {
	subject := digest.FromString("subject")
	next := func(p int) string { return fmt.Sprintf(`</v2/test/repo/referrers/%s?page=%d>; rel="next"`, subject, p) }
	tests := []struct {
		name          string
		pages         [][]string
		artifactType  string
		max           int
		want          int
		wantTruncated bool
	}{
		{"one page, filtered here", [][]string{{sigType, otherType, sigType}}, sigType, 0, 2, false},
		{"no filter", [][]string{{sigType, otherType}}, "", 0, 2, false},
		{"three pages", [][]string{{sigType}, {otherType, sigType}, {sigType}}, sigType, 0, 3, false},
		{"none", [][]string{{}}, sigType, 0, 0, false},
		{"stops at the bound", [][]string{{sigType, sigType}, {sigType, sigType}, {sigType}}, sigType, 3, 3, true},
		{"bound met exactly", [][]string{{sigType, sigType}, {sigType}}, sigType, 3, 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			serveReferrers(f, subject, tc.pages, next)
			got, err := f.repo(t).Referrers(context.Background(), subject, tc.artifactType, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Descriptors) != tc.want || got.Truncated != tc.wantTruncated || got.TagSchema {
				t.Errorf("got %d descriptors, truncated %v, tag schema %v; want %d, %v, false", len(got.Descriptors), got.Truncated, got.TagSchema, tc.want, tc.wantTruncated)
			}
			for _, d := range got.Descriptors {
				if tc.artifactType != "" && d.ArtifactType != tc.artifactType {
					t.Errorf("a referrer of type %q passed the filter %q", d.ArtifactType, tc.artifactType)
				}
			}
			if tc.artifactType != "" {
				first := f.reqs(http.MethodGet, "/referrers/")[0]
				if !strings.Contains(first.RawQuery, "artifactType=") {
					t.Errorf("the first request %q does not ask the registry to filter", first.RawQuery)
				}
			}
			if tc.max > 0 && tc.wantTruncated {
				// It stopped reading pages once the bound was passed.
				if n := len(f.reqs(http.MethodGet, "/referrers/")); n != 2 {
					t.Errorf("read %d pages, want 2", n)
				}
			}
		})
	}
}

func TestReferrersAPIRefusals(t *testing.T) {
	subject := digest.FromString("subject")
	t.Run("a page over the manifest limit", func(t *testing.T) {
		f := newFakeRegistry(t)
		serveReferrers(f, subject, [][]string{{sigType, sigType, sigType, sigType}}, nil)
		_, err := f.repo(t, withMaxManifest(200)).Referrers(context.Background(), subject, sigType, 0)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("a next link to another origin", func(t *testing.T) {
		f := newFakeRegistry(t)
		serveReferrers(f, subject, [][]string{{sigType}, {sigType}}, func(int) string { return `<https://elsewhere.example/v2/x?page=1>; rel="next"` })
		_, err := f.repo(t).Referrers(context.Background(), subject, sigType, 0)
		if err == nil || !strings.Contains(err.Error(), "another origin") {
			t.Errorf("err = %v, want a refusal of the other origin", err)
		}
	})
	t.Run("links that loop", func(t *testing.T) {
		f := newFakeRegistry(t)
		f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.Contains(r.URL.Path, "/referrers/") {
				return false
			}
			w.Header().Set("Link", `</v2/test/repo/referrers/`+subject.String()+`?again=1>; rel="next"`)
			w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
			_, _ = w.Write(referrerIndex(t, otherType))
			return true
		})
		got, err := f.repo(t).Referrers(context.Background(), subject, sigType, 10)
		if err != nil || !got.Truncated || len(got.Descriptors) != 0 {
			t.Errorf("got %+v, %v; want nothing found, truncated, no error", got, err)
		}
		if n := len(f.reqs(http.MethodGet, "/referrers/")); n != maxReferrerPages {
			t.Errorf("read %d pages, want the bound %d", n, maxReferrerPages)
		}
	})
	t.Run("an invalid subject", func(t *testing.T) {
		f := newFakeRegistry(t)
		if _, err := f.repo(t).Referrers(context.Background(), digest.Digest("sha256:nothex"), sigType, 0); err == nil {
			t.Error("no error for an invalid subject digest")
		}
	})
	t.Run("a server error", func(t *testing.T) {
		f := newFakeRegistry(t)
		f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.Contains(r.URL.Path, "/referrers/") {
				return false
			}
			writeRegistryError(w, http.StatusInternalServerError, "UNKNOWN", "boom")
			return true
		})
		if _, err := f.repo(t).Referrers(context.Background(), subject, sigType, 0); err == nil {
			t.Error("no error for a 500 from the referrers API")
		}
	})
}

// The fake registry has no referrers API (it answers 404), as
// Distribution v3 has none: the tag schema is read instead.
func TestReferrersTagSchema(t *testing.T) {
	subject := digest.FromString("subject")
	t.Run("an index under the tag", func(t *testing.T) {
		f := newFakeRegistry(t)
		f.putManifest(testRepo, ReferrersTag(subject), ocispec.MediaTypeImageIndex, referrerIndex(t, sigType, otherType, sigType))
		got, err := f.repo(t).Referrers(context.Background(), subject, sigType, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Descriptors) != 2 || !got.TagSchema || got.Truncated {
			t.Errorf("got %+v; want 2 from the tag schema", got)
		}
		if n := len(f.reqs(http.MethodGet, "/manifests/"+ReferrersTag(subject))); n != 1 {
			t.Errorf("%d GETs of the tag, want 1", n)
		}
	})
	t.Run("no tag: no referrers, no error", func(t *testing.T) {
		f := newFakeRegistry(t)
		got, err := f.repo(t).Referrers(context.Background(), subject, sigType, 0)
		if err != nil || len(got.Descriptors) != 0 || !got.TagSchema {
			t.Errorf("got %+v, %v; want none from the tag schema", got, err)
		}
	})
	t.Run("the bound", func(t *testing.T) {
		f := newFakeRegistry(t)
		f.putManifest(testRepo, ReferrersTag(subject), ocispec.MediaTypeImageIndex, referrerIndex(t, sigType, sigType, sigType))
		got, err := f.repo(t).Referrers(context.Background(), subject, sigType, 2)
		if err != nil || len(got.Descriptors) != 2 || !got.Truncated {
			t.Errorf("got %+v, %v; want 2, truncated", got, err)
		}
	})
	t.Run("a manifest, not an index, under the tag", func(t *testing.T) {
		f := newFakeRegistry(t)
		f.putManifest(testRepo, ReferrersTag(subject), ocispec.MediaTypeImageManifest, imageManifest(t))
		if _, err := f.repo(t).Referrers(context.Background(), subject, sigType, 0); err == nil || !strings.Contains(err.Error(), "not an image index") {
			t.Errorf("err = %v, want one saying the tag holds no index", err)
		}
	})
}

func TestDescribeReferrers(t *testing.T) {
	d := ocispec.Descriptor{}
	for _, tc := range []struct {
		in   Referrers
		want string
	}{
		{Referrers{}, "no signature (referrers API)"},
		{Referrers{Descriptors: []ocispec.Descriptor{d}, TagSchema: true}, "1 signature (referrers tag schema)"},
		{Referrers{Descriptors: []ocispec.Descriptor{d, d}, Truncated: true}, "2 signatures, the first of more (referrers API)"},
	} {
		if got := DescribeReferrers(tc.in, "signature"); got != tc.want {
			t.Errorf("DescribeReferrers(%+v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
