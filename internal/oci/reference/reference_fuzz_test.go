package reference

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/ocisync/ocisync/internal/oci/errdef"
)

// FuzzParse checks that Parse never panics, that every error wraps
// ErrInvalidReference, and that every accepted reference prints without
// whitespace and parses back to itself.
func FuzzParse(f *testing.F) {
	for _, tc := range validCases {
		f.Add(tc.in)
	}
	for _, tc := range invalidCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, errdef.ErrInvalidReference) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalidReference", s, err)
			}
			return
		}
		str := r.String()
		if strings.IndexFunc(str, unicode.IsSpace) >= 0 {
			t.Fatalf("Parse(%q).String() = %q contains whitespace", s, str)
		}
		again, err := Parse(str)
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, str, err)
		}
		if again != r {
			t.Fatalf("Parse(%q) = %#v, but Parse(String()=%q) = %#v", s, r, str, again)
		}
		if again.String() != str {
			t.Fatalf("String() not stable: %q then %q", str, again.String())
		}
		if r.Registry == "" || r.Repository == "" {
			t.Fatalf("Parse(%q) = %#v: registry and repository must be set", s, r)
		}
	})
}
