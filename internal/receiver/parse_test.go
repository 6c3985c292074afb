package receiver

import (
	"errors"
	"reflect"
	"testing"
)

// parseCase is one row of a parser's table: a body and the changes it
// gives, none for a body of no interest; malformed says the body must be
// refused with an error wrapping ErrMalformed.
type parseCase struct {
	name      string
	body      string
	want      []Change
	malformed bool
}

// checkParse runs the cases through parse.
func checkParse(t *testing.T, parse func(body []byte) ([]Change, error), cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse([]byte(tc.body))
			if tc.malformed {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("got %+v, %v; want an error wrapping ErrMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want Change }{
		{Change{Host: "Reg.Example:5000", Repository: "team/app", Tag: "v1"}, Change{Host: "reg.example:5000", Repository: "team/app", Tag: "v1"}},
		{Change{Host: "docker.io", Repository: "nginx"}, Change{Host: "registry-1.docker.io", Repository: "library/nginx"}},
		{Change{Host: "index.docker.io", Repository: "acme/app"}, Change{Host: "registry-1.docker.io", Repository: "acme/app"}},
		{Change{Host: "registry-1.docker.io", Repository: "library/nginx"}, Change{Host: "registry-1.docker.io", Repository: "library/nginx"}},
		{Change{Host: "", Repository: "app"}, Change{Repository: "app"}},
		{Change{Repository: "a", Tag: "sha256:aa"}, Change{Repository: "a", Digest: "sha256:aa"}},
		{Change{Repository: "a", Tag: "sha256:aa", Digest: "sha256:bb"}, Change{Repository: "a", Digest: "sha256:bb"}},
	} {
		if got := normalize(tc.in); got != tc.want {
			t.Errorf("normalize(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestSplitImage(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want image
		ok   bool
	}{
		{"reg.example:5000/team/app:v1", image{"reg.example:5000", "team/app", "v1", ""}, true},
		{"europe-docker.pkg.dev/p/r/img@sha256:aa", image{"europe-docker.pkg.dev", "p/r/img", "", "sha256:aa"}, true},
		{"harbor/library/x:v1@sha256:aa", image{"harbor", "library/x", "v1", "sha256:aa"}, true},
		{"https://quay.example/ns/app", image{"quay.example", "ns/app", "", ""}, true},
		{"ghcr.io/o/p:", image{"ghcr.io", "o/p", "", ""}, true},
		{"app:v1", image{}, false},
		{"reg.example/", image{}, false},
		{"", image{}, false},
	} {
		got, ok := splitImage(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("splitImage(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestHostOfImage(t *testing.T) {
	for _, tc := range []struct{ ref, repo, want string }{
		{"harbor.example/team/app:v1", "team/app", "harbor.example"},
		{"Harbor:8443/Team/App@sha256:aa", "team/app", "Harbor:8443"},
		{"quay.io/acme/app", "acme/app", "quay.io"},
		{"team/app:v1", "team/app", ""},
		{"harbor.example/other/app:v1", "team/app", ""},
		{"", "team/app", ""},
	} {
		if got := hostOfImage(tc.ref, tc.repo); got != tc.want {
			t.Errorf("hostOfImage(%q, %q) = %q, want %q", tc.ref, tc.repo, got, tc.want)
		}
	}
}
