package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestTagsPagination(t *testing.T) {
	all := []string{"a", "b", "c", "d", "e", "f", "g"}
	for _, size := range []int{0, 1, 2, 3, 7, 8} {
		t.Run(fmt.Sprintf("page size %d", size), func(t *testing.T) {
			f := newFakeRegistry(t)
			for _, tag := range all {
				f.putManifest(testRepo, tag, ocispec.MediaTypeImageManifest, imageManifest(t))
			}
			f.tagPageSize = size
			got, err := f.repo(t).Tags(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, all) {
				t.Errorf("Tags = %q, want %q", got, all)
			}
			pages := 1
			if size > 0 {
				pages = (len(all) + size - 1) / size
			}
			if n := len(f.reqs(http.MethodGet, "/tags/list")); n != pages {
				t.Errorf("fetched %d pages, want %d", n, pages)
			}
		})
	}
}

// TestTagsLinkForms serves three fixed pages whose Link headers take the
// forms registries use.
func TestTagsLinkForms(t *testing.T) {
	tests := []struct {
		name    string
		link    func(base string, page int) []string // Link values on page (0, 1); page 2 has none
		want    []string
		wantErr string
	}{
		{
			name: "relative path",
			link: func(_ string, p int) []string {
				return []string{fmt.Sprintf(`</v2/test/repo/tags/list?page=%d>; rel="next"`, p+1)}
			},
			want: []string{"t0", "t1", "t2"},
		},
		{
			name: "relative query only",
			link: func(_ string, p int) []string { return []string{fmt.Sprintf(`<?page=%d>; rel="next"`, p+1)} },
			want: []string{"t0", "t1", "t2"},
		},
		{
			name: "absolute same origin",
			link: func(base string, p int) []string {
				return []string{fmt.Sprintf(`<%s/v2/test/repo/tags/list?page=%d>; rel="next"`, base, p+1)}
			},
			want: []string{"t0", "t1", "t2"},
		},
		{
			name: "next among other rels in one value",
			link: func(_ string, p int) []string {
				return []string{fmt.Sprintf(`</v2/test/repo/tags/list?page=0>; rel="first", </v2/test/repo/tags/list?page=%d,x>; rel="next"; title="a, b"`, p+1)}
			},
			want: []string{"t0", "t1", "t2"},
		},
		{
			name: "next in a space-separated rel list, several header values",
			link: func(_ string, p int) []string {
				return []string{`</v2/test/repo/tags/list?page=0>; rel=prev`, fmt.Sprintf(`</v2/test/repo/tags/list?page=%d>; REL="last next"`, p+1)}
			},
			want: []string{"t0", "t1", "t2"},
		},
		{
			name: "only other rels ends the listing",
			link: func(_ string, p int) []string { return []string{`</v2/test/repo/tags/list?page=1>; rel="prev"`} },
			want: []string{"t0"},
		},
		{
			name: "rel=nextpage is not next",
			link: func(_ string, p int) []string { return []string{`</v2/test/repo/tags/list?page=1>; rel="nextpage"`} },
			want: []string{"t0"},
		},
		{
			name: "cross-origin next link",
			link: func(_ string, p int) []string {
				return []string{`<http://evil.example/v2/test/repo/tags/list?page=1>; rel="next"`}
			},
			wantErr: "another origin",
		},
		{
			name: "scheme change",
			link: func(base string, p int) []string {
				return []string{`<` + strings.Replace(base, "http://", "https://", 1) + `/v2/test/repo/tags/list?page=1>; rel="next"`}
			},
			wantErr: "another origin",
		},
		{
			name:    "protocol-relative to another host",
			link:    func(_ string, p int) []string { return []string{`<//evil.example/v2/x?page=1>; rel="next"`} },
			wantErr: "another origin",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			base := "http://" + f.host
			f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
				page := 0
				fmt.Sscanf(r.URL.Query().Get("page"), "%d", &page)
				if page < 2 {
					for _, v := range tt.link(base, page) {
						w.Header().Add("Link", v)
					}
				}
				fmt.Fprintf(w, `{"name":"test/repo","tags":["t%d"]}`, page)
				return true
			})
			got, err := f.repo(t).Tags(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Tags = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "page=1") {
					t.Errorf("error %q echoes the link's query string", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Tags = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTagsErrors(t *testing.T) {
	tests := []struct {
		name    string
		max     int64
		handler func(w http.ResponseWriter, r *http.Request)
		wantErr error
		wantMsg string
	}{
		{
			name:    "malformed body",
			handler: func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"tags":["a",`) },
			wantMsg: "invalid response",
		},
		{
			name:    "tags of the wrong type",
			handler: func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"tags":"a"}`) },
			wantMsg: "invalid response",
		},
		{
			name: "oversize page",
			max:  64,
			handler: func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `{"tags":["%s"]}`, strings.Repeat("x", 100))
			},
			wantErr: ErrTooLarge,
		},
		{
			name: "unknown repository",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeRegistryError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
			},
			wantErr: ErrNotFound,
		},
		{
			name: "denied",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeRegistryError(w, http.StatusForbidden, "DENIED", "requested access to the resource is denied")
			},
			wantErr: ErrDenied,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool { tt.handler(w, r); return true })
			var mods []func(*Options)
			if tt.max > 0 {
				mods = append(mods, withMaxManifest(tt.max))
			}
			got, err := f.repo(t, mods...).Tags(context.Background())
			if err == nil {
				t.Fatalf("Tags = %q, want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q does not match %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), testRepo) {
				t.Errorf("error %q should name the repository and say %q", err, tt.wantMsg)
			}
		})
	}
}

func TestNextLink(t *testing.T) {
	base, _ := url.Parse("https://reg.example:5000/v2/a/tags/list?n=2")
	tests := []struct {
		values  []string
		want    string
		wantErr bool
	}{
		{values: nil, want: ""},
		{values: []string{`</v2/a/tags/list?n=2&last=b>; rel="next"`}, want: "https://reg.example:5000/v2/a/tags/list?n=2&last=b"},
		{values: []string{`<https://reg.example:5000/x>;rel=next`}, want: "https://reg.example:5000/x"},
		{values: []string{`<https://reg.example/x>; rel="next"`}, wantErr: true},        // other port
		{values: []string{`<https://other.example:5000/x>; rel="next"`}, wantErr: true}, // other host
		{values: []string{`<http://reg.example:5000/x>; rel="next"`}, wantErr: true},    // other scheme
		{values: []string{`junk; rel="next"`}, want: ""},
		{values: []string{` </x>; rel="next"`}, want: "https://reg.example:5000/x"},
		{values: []string{`</a>; rel="prev", </b>; rel="next"`}, want: "https://reg.example:5000/b"},
		{values: []string{`</a>; title="rel=next"`}, want: ""},
		{values: []string{`<%zz>; rel="next"`}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := nextLink(base, tt.values)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("nextLink(%q) = %q, %v; want %q, error %v", tt.values, got, err, tt.want, tt.wantErr)
		}
	}
}
