package oci

import (
	"net/url"
	"path/filepath"
	"testing"

	"github.com/ocisync/ocisync/internal/oci/transport"
)

// FuzzNextLink feeds Link headers of a tag list page to nextLink: it never
// panics, and a next page it returns is an absolute URL on the registry's
// own origin, so pagination cannot send credentials elsewhere.
func FuzzNextLink(f *testing.F) {
	for _, s := range []string{
		`</v2/a/tags/list?n=2&last=b>; rel="next"`,
		`<https://r.example.com/v2/a/tags/list?last=b>; rel=next`,
		`<https://evil.example.com/v2/a/tags/list>; rel="next"`,
		`<//evil.example.com/x>; rel="next"`,
		`<http://r.example.com/v2/a/tags/list>; rel="next"`,
		`<a,b>; rel="prev next", </c>; title="x,y"; rel="next"`,
		`<>; rel="next"`, `<%zz>; rel="next"`, `<`, `>`, `"`, `;rel=next`, ``,
		`</x>; rel="nextx"`, `</x>; REL = "NEXT"`, `<javascript:alert(1)>; rel="next"`,
		`<https://r.example.com:443/v2/x>; rel="next"`, `<https://r.example.com:444/v2/x>; rel="next"`,
	} {
		f.Add(s, "")
		f.Add(s, `</v2/a/tags/list?last=z>; rel="next"`)
	}
	base, err := url.Parse("https://r.example.com/v2/a/tags/list?n=2")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v1, v2 string) {
		next, err := nextLink(base, []string{v1, v2})
		if err != nil {
			if next != "" {
				t.Fatalf("error %v with a next link %q", err, next)
			}
			return
		}
		if next == "" {
			return
		}
		u, err := url.Parse(next)
		if err != nil {
			t.Fatalf("the next link %q does not parse: %v", next, err)
		}
		if !u.IsAbs() || !transport.SameOrigin(u, base) {
			t.Fatalf("the next link %q leaves the registry's origin", next)
		}
	})
}

// FuzzParsePlatform checks that ParsePlatform never panics and that what it
// accepts renders back to the same string.
func FuzzParsePlatform(f *testing.F) {
	for _, s := range []string{"linux/amd64", "linux/arm/v7", "linux", "a/b/c/d", "/amd64", "linux/ amd64", "linux//v7", "", "windows/amd64/10.0.17763"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePlatform(s)
		if err != nil {
			return
		}
		if p.OS == "" || p.Architecture == "" {
			t.Fatalf("ParsePlatform(%q) = %+v without os or architecture", s, p)
		}
		if got := p.String(); got != s {
			t.Fatalf("ParsePlatform(%q).String() = %q", s, got)
		}
	})
}

// FuzzValidateTitle checks that a layer title ValidateTitle accepts names
// a path inside the output folder, never the folder itself or its parent.
func FuzzValidateTitle(f *testing.F) {
	for _, s := range []string{"a.txt", "dir/file", "../x", "/etc/passwd", ".", "a/..", "a/../../b", "", "a\x00b", `..\x`, "C:x", "./a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, title string) {
		local, err := ValidateTitle(title)
		if err != nil {
			return
		}
		if local == "" || local == "." || !filepath.IsLocal(local) {
			t.Fatalf("ValidateTitle(%q) = %q, which is not inside the output folder", title, local)
		}
	})
}
