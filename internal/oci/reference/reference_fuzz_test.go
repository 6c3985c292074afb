package reference

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/ocisync/ocisync/internal/oci/errdef"
)

// grammarRegexp is the Docker/distribution reference grammar written as one
// regular expression, independent of Parse's hand-written scanner, for a
// differential check.
var grammarRegexp = func() *regexp.Regexp {
	domainComponent := `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domain := `(?:` + domainComponent + `(?:\.` + domainComponent + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
	component := `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	name := `(?:` + domain + `/)?` + component + `(?:/` + component + `)*`
	tag := `[\w][\w.-]{0,127}`
	dgst := `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
	return regexp.MustCompile(`^` + name + `(?::` + tag + `)?(?:@` + dgst + `)?$`)
}()

// stricterThanGrammar lists the error fragments for rules Parse enforces on
// top of the grammar (port range, label and name lengths, real IPv6
// addresses, supported digests, and uppercase first components, which the
// grammar would read as a host but Docker's rule reads as a repository).
var stricterThanGrammar = []string{
	"out of range", "leading zero", "the maximum is 63", "the maximum is 255",
	"not a valid IPv6 address", "not supported", "hex digits;", "hex must be lowercase",
	"repository names must be lowercase",
}

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
		matches := grammarRegexp.MatchString(s)
		if err != nil {
			if !errors.Is(err, errdef.ErrInvalidReference) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalidReference", s, err)
			}
			// The grammar may match a dotted first component as a repository
			// path; Docker's rule makes it a registry, checked as a host.
			hostRule := strings.Contains(err.Error(), `: registry "`) && strings.Contains(s, "/") &&
				isRegistryComponent(s[:strings.IndexByte(s, '/')])
			if matches && !hostRule && !containsAny(err.Error(), stricterThanGrammar) {
				t.Fatalf("Parse(%q) rejected a reference the grammar accepts: %v", s, err)
			}
			return
		}
		if !matches {
			t.Fatalf("Parse(%q) = %#v accepted a reference the grammar rejects", s, r)
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

func containsAny(s string, frags []string) bool {
	for _, f := range frags {
		if strings.Contains(s, f) {
			return true
		}
	}
	return false
}
