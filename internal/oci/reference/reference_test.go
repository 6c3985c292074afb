package reference

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ocisync/ocisync/internal/oci/errdef"
)

const (
	sha256Empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	sha512Empty = "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
	hub         = DockerHubRegistry
)

type validCase struct {
	in         string
	want       Reference
	wantString string // "" means same as in
	wantLocal  bool
}

// validCases is shared with the fuzz seed corpus.
var validCases = []validCase{
	// Docker Hub forms.
	{in: "alpine", want: Reference{Registry: hub, Repository: "library/alpine"}, wantString: "docker.io/library/alpine"},
	{in: "alpine:3.20", want: Reference{Registry: hub, Repository: "library/alpine", Tag: "3.20"}, wantString: "docker.io/library/alpine:3.20"},
	{in: "library/alpine", want: Reference{Registry: hub, Repository: "library/alpine"}, wantString: "docker.io/library/alpine"},
	{in: "docker.io/alpine", want: Reference{Registry: hub, Repository: "library/alpine"}, wantString: "docker.io/library/alpine"},
	{in: "docker.io/library/alpine:latest", want: Reference{Registry: hub, Repository: "library/alpine", Tag: "latest"}},
	{in: "index.docker.io/alpine", want: Reference{Registry: hub, Repository: "library/alpine"}, wantString: "docker.io/library/alpine"},
	{in: "registry-1.docker.io/alpine", want: Reference{Registry: hub, Repository: "library/alpine"}, wantString: "docker.io/library/alpine"},
	{in: "DOCKER.IO/alpine", want: Reference{Registry: hub, Repository: "library/alpine"}, wantString: "docker.io/library/alpine"},
	{in: "bitnami/redis:7", want: Reference{Registry: hub, Repository: "bitnami/redis", Tag: "7"}, wantString: "docker.io/bitnami/redis:7"},
	{in: "docker.io/org/team/app", want: Reference{Registry: hub, Repository: "org/team/app"}},
	{in: "alpine@" + sha256Empty, want: Reference{Registry: hub, Repository: "library/alpine", Digest: sha256Empty}, wantString: "docker.io/library/alpine@" + sha256Empty},
	// "localhost:5000" without a path is repository "localhost" with tag "5000", as in Docker.
	{in: "localhost:5000", want: Reference{Registry: hub, Repository: "library/localhost", Tag: "5000"}, wantString: "docker.io/library/localhost:5000"},
	// A dotted single component is a Docker Hub repository too.
	{in: "ghcr.io", want: Reference{Registry: hub, Repository: "library/ghcr.io"}, wantString: "docker.io/library/ghcr.io"},
	// docker.io with a port is some other registry.
	{in: "docker.io:443/alpine", want: Reference{Registry: "docker.io:443", Repository: "alpine"}},

	// Other registries.
	{in: "ghcr.io/org/app:1.0", want: Reference{Registry: "ghcr.io", Repository: "org/app", Tag: "1.0"}},
	{in: "ghcr.io/org/team/sub/app", want: Reference{Registry: "ghcr.io", Repository: "org/team/sub/app"}},
	{in: "ghcr.io/app", want: Reference{Registry: "ghcr.io", Repository: "app"}},
	{in: "registry.example.com:5000/org/app:v1", want: Reference{Registry: "registry.example.com:5000", Repository: "org/app", Tag: "v1"}},
	{in: "my-registry.local:65535/a", want: Reference{Registry: "my-registry.local:65535", Repository: "a"}},
	{in: "Registry.Example.COM/org/app", want: Reference{Registry: "registry.example.com", Repository: "org/app"}, wantString: "registry.example.com/org/app"},
	{in: "xn--bcher-kva.example/app", want: Reference{Registry: "xn--bcher-kva.example", Repository: "app"}},
	{in: "ghcr.io/org/app:1.0@" + sha256Empty, want: Reference{Registry: "ghcr.io", Repository: "org/app", Tag: "1.0", Digest: sha256Empty}},
	{in: "ghcr.io/org/app@" + sha512Empty, want: Reference{Registry: "ghcr.io", Repository: "org/app", Digest: sha512Empty}},
	{in: "ghcr.io:5000/org/app:tag@" + sha512Empty, want: Reference{Registry: "ghcr.io:5000", Repository: "org/app", Tag: "tag", Digest: sha512Empty}},
	{in: "example.com/a.b/c_d/e__f/g-h/i---j/0", want: Reference{Registry: "example.com", Repository: "a.b/c_d/e__f/g-h/i---j/0"}},

	// Tags at the edges of the grammar.
	{in: "example.com/app:_", want: Reference{Registry: "example.com", Repository: "app", Tag: "_"}},
	{in: "example.com/app:V1.2-rc_3", want: Reference{Registry: "example.com", Repository: "app", Tag: "V1.2-rc_3"}},
	{in: "example.com/app:" + strings.Repeat("t", 128), want: Reference{Registry: "example.com", Repository: "app", Tag: strings.Repeat("t", 128)}},

	// Local registries.
	{in: "localhost/app", want: Reference{Registry: "localhost", Repository: "app"}, wantLocal: true},
	{in: "LocalHost/app", want: Reference{Registry: "localhost", Repository: "app"}, wantString: "localhost/app", wantLocal: true},
	{in: "localhost:5000/app:dev", want: Reference{Registry: "localhost:5000", Repository: "app", Tag: "dev"}, wantLocal: true},
	{in: "127.0.0.1/app", want: Reference{Registry: "127.0.0.1", Repository: "app"}, wantLocal: true},
	{in: "127.0.0.1:5000/org/app", want: Reference{Registry: "127.0.0.1:5000", Repository: "org/app"}, wantLocal: true},
	{in: "127.10.0.1:5000/app", want: Reference{Registry: "127.10.0.1:5000", Repository: "app"}, wantLocal: true},
	{in: "10.0.0.1:5000/app", want: Reference{Registry: "10.0.0.1:5000", Repository: "app"}},
	{in: "[::1]/app", want: Reference{Registry: "[::1]", Repository: "app"}, wantLocal: true},
	{in: "[::1]:5000/app:1", want: Reference{Registry: "[::1]:5000", Repository: "app", Tag: "1"}, wantLocal: true},
	{in: "[2001:DB8::1]:5000/app", want: Reference{Registry: "[2001:db8::1]:5000", Repository: "app"}, wantString: "[2001:db8::1]:5000/app"},
	{in: "[::ffff:7f00:1]:5000/app", want: Reference{Registry: "[::ffff:7f00:1]:5000", Repository: "app"}, wantLocal: true},
	{in: "localhost.example.com/app", want: Reference{Registry: "localhost.example.com", Repository: "app"}},

	// Length limits: the name may be 255 characters, counted as printed.
	{in: "example.com/" + strings.Repeat("a", 243), want: Reference{Registry: "example.com", Repository: strings.Repeat("a", 243)}},
	{in: strings.Repeat("a", 237), want: Reference{Registry: hub, Repository: "library/" + strings.Repeat("a", 237)}, wantString: "docker.io/library/" + strings.Repeat("a", 237)},
}

func TestParseValid(t *testing.T) {
	for _, tc := range validCases {
		t.Run(shortName(tc.in), func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("Parse(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
			wantString := tc.wantString
			if wantString == "" {
				wantString = tc.in
			}
			if s := got.String(); s != wantString {
				t.Errorf("String() = %q, want %q", s, wantString)
			}
			again, err := Parse(got.String())
			if err != nil || again != got {
				t.Errorf("Parse(String()) = %#v, %v; want %#v", again, err, got)
			}
			if got.IsLocal() != tc.wantLocal {
				t.Errorf("IsLocal() = %v, want %v", got.IsLocal(), tc.wantLocal)
			}
			if got.IsDockerHub() != (tc.want.Registry == hub) {
				t.Errorf("IsDockerHub() = %v", got.IsDockerHub())
			}
		})
	}
}

type invalidCase struct {
	in   string
	frag string // must appear in the error message
}

// invalidCases is shared with the fuzz seed corpus.
var invalidCases = []invalidCase{
	{"", "reference is empty"},
	{" alpine", `whitespace ' ' at offset 0`},
	{"alpine ", `whitespace ' ' at offset 6`},
	{"alp\tine", `whitespace '\t' at offset 3`},
	{"alpine\n", "whitespace"},
	{"alp\x00ine", `control character '\x00' at offset 3`},
	{"alpïne", `non-ASCII character 'ï' at offset 3`},
	{"alp\xffine", "invalid UTF-8 byte 0xff at offset 3"},
	{"https://ghcr.io/org/app", `URL scheme ("https://")`},
	{"oci://ghcr.io/org/app", "URL scheme"},
	{"/alpine", "must not start with '/'"},
	{"ghcr.io/app/", "must not end with '/'"},
	{"alpine/", "must not end with '/'"},
	{"ghcr.io//app", `empty path component ("//") at offset 7`},
	{"ghcr.io/org//app", `("//") at offset 11`},
	{"alpine:", "tag after ':' at offset 6 is empty"},
	{"ghcr.io/app:@" + sha256Empty, "tag after ':' at offset 11 is empty"},
	{"alpine@", "'@' at offset 6 must be followed by a digest"},
	{"alpine:3@", "must be followed by a digest"},
	{":latest", "repository name is missing"},
	{"@" + sha256Empty, "repository name is missing"},
	{"ghcr.io/", "must not end with '/'"},

	// Repository grammar.
	{"Alpine", "repository names must be lowercase"},
	{"ghcr.io/Org/app", `repository names must be lowercase: "Org/app" has 'O' at offset 8`},
	{"ghcr.io/org/App:1", "repository names must be lowercase"},
	{"MyOrg/app", "repository names must be lowercase"},
	{"ghcr.io/org/a!pp", `invalid character '!' at offset 13`},
	{"ghcr.io/-app", `path component "-app" must start with a lowercase letter or digit`},
	{"ghcr.io/app-", `path component "app-" must end with a lowercase letter or digit`},
	{"ghcr.io/.app", "must start with a lowercase letter or digit"},
	{"ghcr.io/a..b", `invalid separator ".." at offset 9`},
	{"ghcr.io/a___b", `invalid separator "___"`},
	{"ghcr.io/a._b", `invalid separator "._"`},
	{"ghcr.io/a-_b", `invalid separator "-_"`},
	{"ghcr.io/org/_", "must start with a lowercase letter or digit"},
	{"a]b/c", `invalid character ']'`},

	// Tags.
	{"alpine:.x", `tag ".x" must start with a letter, digit or '_'`},
	{"alpine:-x", "must start with a letter, digit or '_'"},
	{"alpine:x!y", `tag "x!y": invalid character '!' at offset 8`},
	{"alpine:x+y", "invalid character '+'"},
	{"example.com/app:" + strings.Repeat("t", 129), "is 129 characters long; the maximum is 128"},
	{"alpine:3:4", `repository "alpine:3": unexpected ':' at offset 6`},
	{"ghcr.io/org:1/app", "unexpected ':' at offset 11"},

	// Digests.
	{"alpine@sha256", `digest "sha256" must have the form algorithm:hex`},
	{"alpine@:abc", "has no algorithm before ':'"},
	{"alpine@sha256:", "has no hex after ':'"},
	{"alpine@md5:d41d8cd98f00b204e9800998ecf8427e", `digest algorithm "md5" is not supported; use sha256 or sha512`},
	{"alpine@sha384:" + strings.Repeat("a", 96), `digest algorithm "sha384" is not supported`},
	{"alpine@sha256:abc", "has 3 hex digits; sha256 needs 64"},
	{"alpine@sha512:" + sha256Empty[7:], "has 64 hex digits; sha512 needs 128"},
	{"alpine@sha256:" + strings.ToUpper(sha256Empty[7:]), "hex must be lowercase, found 'E' at offset 14"},
	{"alpine@sha256:" + strings.Repeat("g", 64), "invalid character 'g' at offset 14"},
	{"alpine@" + sha256Empty + "@" + sha256Empty, "'@' may appear only once"},
	{"alpine@latest", `digest "latest" must have the form algorithm:hex`},

	// Registries.
	{"ghcr.io:/app", "port after ':' is empty"},
	{"ghcr.io:abc/app", `port "abc" is not a number`},
	{"ghcr.io:65536/app", `port "65536" is out of range 1-65535`},
	{"ghcr.io:0/app", `port "0" is out of range`},
	{"ghcr.io:99999999999999999999999/app", "out of range"},
	{"ghcr.io:05000/app", "must not have a leading zero"},
	{"ghcr..io/app", "empty label"},
	{".ghcr.io/app", "empty label"},
	{"ghcr.io./app", "empty label"},
	{"-ghcr.io/app", `host label "-ghcr" must not start or end with '-'`},
	{"ghcr-.io/app", "must not start or end with '-'"},
	{"gh_cr.io/app", `invalid character '_' in host name`},
	{":5000/app", "host name is empty"},
	{strings.Repeat("a", 64) + ".com/app", "is 64 characters long; the maximum is 63"},
	{"::1/app", "IPv6 addresses must be in brackets"},
	{"[::1/app", "missing ']'"},
	{"[::1]x/app", `unexpected "x" after ']'`},
	{"[]/app", "empty IPv6 address"},
	{"[::g]/app", `invalid character 'g' in IPv6 address`},
	{"[fe80::1%eth0]/app", "zone identifiers"},
	{"[::ffff:127.0.0.1]/app", `invalid character '.' in IPv6 address`},
	{"[1:2:3]/app", "is not a valid IPv6 address"},
	{"[::1]:99999/app", "out of range"},
	{"[::1]:5000", "must be followed by /repository"},
	{"[::1]", "must be followed by /repository"},

	// Lengths counted on the printed name.
	{"example.com/" + strings.Repeat("a", 244), "is 256 characters long; the maximum is 255"},
	{strings.Repeat("a", 238), "is 256 characters long; the maximum is 255"},

	// Credentials are refused and never echoed.
	{"user:hunter2@ghcr.io/org/app", "references cannot carry credentials"},
	{"user@ghcr.io/org/app", "references cannot carry credentials"},
	{"user:hunter2@ghcr.io", "references cannot carry credentials"},
	{"https://user:hunter2@ghcr.io/org/app", "URL scheme"},
	{"ghcr.io/org/app@x/y", "references cannot carry credentials"},
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range invalidCases {
		t.Run(shortName(tc.in), func(t *testing.T) {
			got, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %#v, want error containing %q", tc.in, got, tc.frag)
			}
			if !errors.Is(err, errdef.ErrInvalidReference) {
				t.Errorf("error %v does not wrap errdef.ErrInvalidReference", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.frag) {
				t.Errorf("error %q does not contain %q", msg, tc.frag)
			}
			if !strings.HasPrefix(msg, "invalid reference \"") {
				t.Errorf("error %q does not start with `invalid reference \"`", msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q leaks the password", msg)
			}
			if got != (Reference{}) {
				t.Errorf("Parse returned non-zero %#v with an error", got)
			}
		})
	}
}

func TestErrorQuotesInputAndTruncates(t *testing.T) {
	_, err := Parse("ghcr.io/Org/app")
	if want := `invalid reference "ghcr.io/Org/app": repository names must be lowercase`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error = %v, want prefix %q", err, want)
	}
	long := "ghcr.io/" + strings.Repeat("A", 10000)
	_, err = Parse(long)
	if err == nil || len(err.Error()) > 2*maxQuoted {
		t.Fatalf("error for a 10000-character input is %d characters long, want a truncated message", len(err.Error()))
	}
	if !strings.Contains(err.Error(), "(10008 characters)") {
		t.Errorf("truncated error %q does not give the input length", err)
	}
}

func TestQuoteInputRedactsCredentials(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"user:pw@ghcr.io/app", `"REDACTED@ghcr.io/app"`},
		{"https://user:pw@ghcr.io/app", `"https://REDACTED@ghcr.io/app"`},
		{"https://user:p@ss@ghcr.io/app", `"https://REDACTED@ghcr.io/app"`},
		{"user:pw@ghcr.io", `"REDACTED@ghcr.io"`},
		{"alpine@" + sha256Empty, `"alpine@` + sha256Empty + `"`},
		{"alpine@latest", `"alpine@latest"`},
		{"ghcr.io/app", `"ghcr.io/app"`},
	} {
		if got := quoteInput(tc.in); got != tc.want {
			t.Errorf("quoteInput(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestReference(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"alpine", ""},
		{"alpine:3", "3"},
		{"alpine@" + sha256Empty, sha256Empty},
		{"alpine:3@" + sha256Empty, sha256Empty},
	} {
		if got := MustParse(tc.in).Reference(); got != tc.want {
			t.Errorf("Parse(%q).Reference() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alpine:3@" + sha256Empty, "docker.io/library/alpine"},
		{"localhost:5000/a/b:c", "localhost:5000/a/b"},
		{"[::1]:5000/a@" + sha512Empty, "[::1]:5000/a"},
	} {
		if got := MustParse(tc.in).Name(); got != tc.want {
			t.Errorf("Parse(%q).Name() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestWithDefaultTag(t *testing.T) {
	for _, tc := range []struct{ in, wantTag string }{
		{"alpine", "latest"},
		{"alpine:3", "3"},
		{"alpine@" + sha256Empty, ""},
	} {
		r := MustParse(tc.in)
		got := r.WithDefaultTag()
		if got.Tag != tc.wantTag || got.Digest != r.Digest || got.Name() != r.Name() {
			t.Errorf("Parse(%q).WithDefaultTag() = %#v, want tag %q and the rest unchanged", tc.in, got, tc.wantTag)
		}
	}
}

func TestWithTag(t *testing.T) {
	base := MustParse("ghcr.io/org/app:old@" + sha256Empty)
	got, err := base.WithTag("new")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Reference{Registry: "ghcr.io", Repository: "org/app", Tag: "new", Digest: sha256Empty}); got != want {
		t.Errorf("WithTag = %#v, want %#v", got, want)
	}
	if base.Tag != "old" {
		t.Errorf("WithTag modified its receiver")
	}
	for _, bad := range []string{"", ".x", "a b", "a/b", strings.Repeat("x", 129)} {
		if _, err := base.WithTag(bad); !errors.Is(err, errdef.ErrInvalidReference) || !strings.Contains(err.Error(), "tag") {
			t.Errorf("WithTag(%q) error = %v, want an invalid-reference error about the tag", bad, err)
		}
	}
}

func TestWithDigest(t *testing.T) {
	base := MustParse("ghcr.io/org/app:v1")
	got, err := base.WithDigest(sha512Empty)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Reference{Registry: "ghcr.io", Repository: "org/app", Tag: "v1", Digest: sha512Empty}); got != want {
		t.Errorf("WithDigest = %#v, want %#v", got, want)
	}
	for _, tc := range []struct {
		d    digest.Digest
		frag string
	}{
		{"", "must have the form algorithm:hex"},
		{"sha256:abc", "has 3 hex digits"},
		{"md5:d41d8cd98f00b204e9800998ecf8427e", "not supported"},
	} {
		_, err := base.WithDigest(tc.d)
		if !errors.Is(err, errdef.ErrInvalidReference) || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("WithDigest(%q) error = %v, want one containing %q", tc.d, err, tc.frag)
		}
	}
}

func TestValidateTag(t *testing.T) {
	for _, tc := range []struct {
		tag  string
		frag string // "" means valid
	}{
		{"latest", ""},
		{"_", ""},
		{"A.b-C_9", ""},
		{strings.Repeat("x", 128), ""},
		{"", "tag is empty"},
		{strings.Repeat("x", 129), "maximum is 128"},
		{"-x", "must start with"},
		{"x@y", "invalid character '@' at offset 1"},
	} {
		err := ValidateTag(tc.tag)
		checkValidateErr(t, "ValidateTag", tc.tag, err, tc.frag)
	}
}

func TestValidateRepository(t *testing.T) {
	for _, tc := range []struct {
		repo string
		frag string
	}{
		{"a", ""},
		{"library/alpine", ""},
		{"a/b/c/d-e__f.g", ""},
		{strings.Repeat("a", 255), ""},
		{strings.Repeat("a", 256), "maximum is 255"},
		{"", "repository name is empty"},
		{"/a", "must not start with '/'"},
		{"a/", "must not end with '/'"},
		{"a//b", `empty path component ("//") at offset 2`},
		{"A", "must be lowercase"},
		{"a:b", "unexpected ':' at offset 1"},
		{"a--_b", "invalid separator"},
	} {
		err := ValidateRepository(tc.repo)
		checkValidateErr(t, "ValidateRepository", tc.repo, err, tc.frag)
	}
}

func checkValidateErr(t *testing.T, fn, in string, err error, frag string) {
	t.Helper()
	if frag == "" {
		if err != nil {
			t.Errorf("%s(%q) = %v, want nil", fn, shortName(in), err)
		}
		return
	}
	if !errors.Is(err, errdef.ErrInvalidReference) || !strings.Contains(err.Error(), frag) {
		t.Errorf("%s(%q) = %v, want an invalid-reference error containing %q", fn, shortName(in), err, frag)
	}
}

func TestIsLocalhost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LOCALHOST:5000", true},
		{"127.0.0.1", true},
		{"127.1.2.3:80", true},
		{"[::1]", true},
		{"[::1]:5000", true},
		{"::1", true},
		{"[::ffff:127.0.0.1]:1", true},
		{"foo.localhost", false},
		{"localhost.example.com", false},
		{"128.0.0.1", false},
		{"[::2]:5000", false},
		{"[::1", false},
		{"[::1]x", false},
		{"registry-1.docker.io", false},
		{"", false},
	} {
		if got := IsLocalhost(tc.host); got != tc.want {
			t.Errorf("IsLocalhost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParse(\"\") did not panic")
		}
	}()
	MustParse("")
}

func shortName(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
