package auth

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	p := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		header  string
		want    []Challenge
		wantErr string
	}{
		{name: "empty", header: "", want: nil},
		{name: "only separators", header: " , ,", want: nil},
		{name: "basic realm", header: `Basic realm="Registry Realm"`,
			want: []Challenge{{Scheme: "basic", Params: p("realm", "Registry Realm")}}},
		{name: "bare scheme", header: "Basic",
			want: []Challenge{{Scheme: "basic", Params: p()}}},
		{name: "bearer realm service scope",
			header: `Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push"`,
			want: []Challenge{{Scheme: "bearer", Params: p(
				"realm", "https://auth.example.com/token",
				"service", "registry.example.com",
				"scope", "repository:team/app:pull,push")}}},
		{name: "mixed case scheme and names",
			header: `BeArEr REALM="https://a/t", Service=svc`,
			want:   []Challenge{{Scheme: "bearer", Params: p("realm", "https://a/t", "service", "svc")}}},
		{name: "unquoted values including non-token characters",
			header: `Bearer realm=https://auth.example.com/token?x=1,service=reg.example.com`,
			want:   []Challenge{{Scheme: "bearer", Params: p("realm", "https://auth.example.com/token?x=1", "service", "reg.example.com")}}},
		{name: "escaped quote, backslash and comma inside quotes",
			header: `Bearer realm="a\"b\\c,d", error="insufficient_scope"`,
			want:   []Challenge{{Scheme: "bearer", Params: p("realm", `a"b\c,d`, "error", "insufficient_scope")}}},
		{name: "whitespace around equals and commas",
			header: "Bearer realm = \"r\" ,\tservice\t=\ts , scope=\"x\"",
			want:   []Challenge{{Scheme: "bearer", Params: p("realm", "r", "service", "s", "scope", "x")}}},
		{name: "empty quoted value", header: `Basic realm=""`,
			want: []Challenge{{Scheme: "basic", Params: p("realm", "")}}},
		{name: "multiple challenges in one header",
			header: `Basic realm="basic realm, with comma", Bearer realm="https://t/token",service="s", Negotiate`,
			want: []Challenge{
				{Scheme: "basic", Params: p("realm", "basic realm, with comma")},
				{Scheme: "bearer", Params: p("realm", "https://t/token", "service", "s")},
				{Scheme: "negotiate", Params: p()},
			}},
		{name: "token68 then another challenge",
			header: `Negotiate YIIB+/xA==, Basic realm="r"`,
			want: []Challenge{
				{Scheme: "negotiate", Token68: "YIIB+/xA==", Params: p()},
				{Scheme: "basic", Params: p("realm", "r")},
			}},
		{name: "token68 that looks like a parameter name with padding", header: "Foo abc=",
			want: []Challenge{{Scheme: "foo", Token68: "abc=", Params: p()}}},
		{name: "scheme without params followed by another", header: "Basic, Bearer realm=x",
			want: []Challenge{{Scheme: "basic", Params: p()}, {Scheme: "bearer", Params: p("realm", "x")}}},
		{name: "empty list elements between params", header: `Bearer ,, realm="r",,service="s",`,
			want: []Challenge{{Scheme: "bearer", Params: p("realm", "r", "service", "s")}}},
		{name: "header lines joined", header: `Bearer realm="r1", Basic realm="r2"`,
			want: []Challenge{{Scheme: "bearer", Params: p("realm", "r1")}, {Scheme: "basic", Params: p("realm", "r2")}}},
		{name: "non-ASCII in quoted string", header: "Basic realm=\"caf\xc3\xa9\"",
			want: []Challenge{{Scheme: "basic", Params: p("realm", "caf\u00e9")}}},

		{name: "unterminated quoted string", header: `Bearer realm="https://t/token`, wantErr: "unterminated quoted string"},
		{name: "unterminated after escape", header: `Bearer realm="abc\`, wantErr: "unterminated quoted string"},
		{name: "name= alone is a token68 per RFC 7235", header: `Bearer realm=`, want: []Challenge{{Scheme: "bearer", Token68: "realm=", Params: p()}}},
		{name: "missing value before comma", header: `Bearer service="s", realm=, scope="x"`, wantErr: `parameter "realm" has no value`},
		{name: "duplicate parameter", header: `Bearer realm="a", REALM="b"`, wantErr: `appears twice`},
		{name: "two params without comma", header: `Bearer realm="a" service="b"`, wantErr: "expected ','"},
		{name: "leading equals", header: `=x`, wantErr: "expected an auth scheme"},
		{name: "quote directly after scheme", header: `Basic"x"`, wantErr: "after auth scheme"},
		{name: "junk after scheme", header: `Bearer "x"`, wantErr: "expected a parameter name"},
		{name: "control character in quoted string", header: "Basic realm=\"a\x01b\"", wantErr: "control character"},
		{name: "control character in token value", header: "Basic realm=a\x01b", wantErr: "control character"},
		{name: "token without equals right after scheme params start", header: `Bearer realm="a", service`,
			want: []Challenge{{Scheme: "bearer", Params: p("realm", "a")}, {Scheme: "service", Params: p()}}},
		{name: "param name not followed by equals before comma", header: `Bearer foo bar, baz`, wantErr: `expected '=' after parameter name "foo"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseChallenges(tt.header)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseChallenges(%q) = %v, %v; want error containing %q", tt.header, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseChallenges(%q): %v", tt.header, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseChallenges(%q)\n got %#v\nwant %#v", tt.header, got, tt.want)
			}
		})
	}
}

func TestChallengeStringRoundTrip(t *testing.T) {
	chs := []Challenge{
		{Scheme: "bearer", Params: map[string]string{"realm": `we "quote", \ and comma`, "service": "s"}},
		{Scheme: "negotiate", Token68: "abc+/==", Params: map[string]string{}},
		{Scheme: "basic", Params: map[string]string{}},
	}
	var parts []string
	for _, c := range chs {
		parts = append(parts, c.String())
	}
	header := strings.Join(parts, ", ")
	if want := `bearer realm="we \"quote\", \\ and comma", service="s", negotiate abc+/==, basic`; header != want {
		t.Fatalf("rendered %q, want %q", header, want)
	}
	got, err := ParseChallenges(header)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, chs) {
		t.Fatalf("round trip: got %#v, want %#v", got, chs)
	}
}

// FuzzParseChallenges checks that the parser never panics, that what it
// returns is normalised, and that rendering and re-parsing gives the same
// challenges.
func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		``, `Basic`, `Basic realm="r"`, `Bearer realm="https://a/t",service="s",scope="repository:x:pull"`,
		`Basic realm="a, b", Bearer realm=x, Negotiate abc==`, `Bearer realm="a\"b\\c"`, `bearer realm="unterminated`,
		`Foo abc=, Bar`, "Basic realm=\"a\tb\"", `Bearer ,, realm=x,,`, `x y=z w`, "Basic realm=\"\xff\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		chs, err := ParseChallenges(header)
		if err != nil {
			if chs != nil {
				t.Fatalf("error %v with non-nil result", err)
			}
			return
		}
		var parts []string
		for _, c := range chs {
			if c.Scheme == "" || c.Scheme != strings.ToLower(c.Scheme) {
				t.Fatalf("scheme %q is empty or not lowercase", c.Scheme)
			}
			for i := 0; i < len(c.Scheme); i++ {
				if !isTchar(c.Scheme[i]) {
					t.Fatalf("scheme %q has a non-token character", c.Scheme)
				}
			}
			if c.Params == nil {
				t.Fatal("nil Params")
			}
			if c.Token68 != "" && len(c.Params) > 0 {
				t.Fatalf("challenge has both token68 and params: %#v", c)
			}
			for k, v := range c.Params {
				if k == "" || k != strings.ToLower(k) {
					t.Fatalf("param name %q is empty or not lowercase", k)
				}
				for i := 0; i < len(v); i++ {
					if isCTL(v[i]) {
						t.Fatalf("param %q value %q has a control character", k, v)
					}
				}
			}
			parts = append(parts, c.String())
		}
		rendered := strings.Join(parts, ", ")
		again, err := ParseChallenges(rendered)
		if err != nil {
			t.Fatalf("re-parsing rendered %q (from %q): %v", rendered, header, err)
		}
		if len(again) != len(chs) {
			t.Fatalf("re-parsing %q gave %d challenges, want %d", rendered, len(again), len(chs))
		}
		for i := range chs {
			if again[i].Scheme != chs[i].Scheme || again[i].Token68 != chs[i].Token68 || !reflect.DeepEqual(again[i].Params, chs[i].Params) {
				t.Fatalf("round trip of %q via %q: got %#v, want %#v", header, rendered, again[i], chs[i])
			}
		}
	})
}
