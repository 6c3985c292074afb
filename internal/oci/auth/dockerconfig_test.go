package auth

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseDockerConfigForms(t *testing.T) {
	userPass := Credential{Username: "alice", Password: "pw-1"}
	tests := []struct {
		name   string
		config string
		lookup map[string]Credential // host → expected credential
	}{
		{
			name:   "dockerconfigjson auth field",
			config: `{"auths":{"registry.example.com":{"auth":"` + b64("alice:pw-1") + `"}}}`,
			lookup: map[string]Credential{"registry.example.com": userPass, "REGISTRY.example.com": userPass, "other.example.com": {}},
		},
		{
			name:   "dockercfg (legacy top-level map)",
			config: `{"registry.example.com":{"auth":"` + b64("alice:pw-1") + `","email":"a@example.com"}}`,
			lookup: map[string]Credential{"registry.example.com": userPass},
		},
		{
			name:   "username and password fields",
			config: `{"auths":{"r.example.com":{"username":"alice","password":"pw-1"}}}`,
			lookup: map[string]Credential{"r.example.com": userPass},
		},
		{
			name:   "auth overrides username/password",
			config: `{"auths":{"r.example.com":{"auth":"` + b64("alice:pw-1") + `","username":"bob","password":"other"}}}`,
			lookup: map[string]Credential{"r.example.com": userPass},
		},
		{
			name:   "password containing a colon",
			config: `{"auths":{"r.example.com":{"auth":"` + b64("alice:p:w") + `"}}}`,
			lookup: map[string]Credential{"r.example.com": {Username: "alice", Password: "p:w"}},
		},
		{
			name:   "auth without padding",
			config: `{"auths":{"r.example.com":{"auth":"` + strings.TrimRight(b64("alice:pw-12"), "=") + `"}}}`,
			lookup: map[string]Credential{"r.example.com": {Username: "alice", Password: "pw-12"}},
		},
		{
			name:   "identity and registry tokens",
			config: `{"auths":{"acr.example.io":{"auth":"` + b64("00000000-0000-0000-0000-000000000000:") + `","identitytoken":"id-tok"},"reg.example.io":{"registrytoken":"reg-tok"}}}`,
			lookup: map[string]Credential{
				"acr.example.io": {Username: "00000000-0000-0000-0000-000000000000", IdentityToken: "id-tok"},
				"reg.example.io": {RegistryToken: "reg-tok"},
			},
		},
		{
			name: "key forms: scheme, path, port",
			config: `{"auths":{
				"https://a.example.com/v1/":{"auth":"` + b64("a:1") + `"},
				"http://b.example.com":{"auth":"` + b64("b:2") + `"},
				"c.example.com/v2/":{"auth":"` + b64("c:3") + `"},
				"d.example.com:5000":{"auth":"` + b64("d:4") + `"},
				"HTTPS://E.example.com":{"auth":"` + b64("e:5") + `"}}}`,
			lookup: map[string]Credential{
				"a.example.com":      {Username: "a", Password: "1"},
				"b.example.com":      {Username: "b", Password: "2"},
				"c.example.com":      {Username: "c", Password: "3"},
				"d.example.com:5000": {Username: "d", Password: "4"},
				"d.example.com":      {},
				"e.example.com":      {Username: "e", Password: "5"},
			},
		},
		{
			name:   "empty entries are skipped, null entries too",
			config: `{"auths":{"x.example.com":{},"y.example.com":null,"z.example.com":{"auth":""}}}`,
			lookup: map[string]Credential{"x.example.com": {}, "y.example.com": {}, "z.example.com": {}},
		},
		{
			name:   "config.json without inline credentials",
			config: `{"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud"}}`,
			lookup: map[string]Credential{"gcr.io": {}, "credHelpers": {}},
		},
		{
			name:   "auths null",
			config: `{"auths":null}`,
			lookup: map[string]Credential{"x": {}},
		},
		{
			name:   "first duplicate wins within one document",
			config: `{"auths":{"r.example.com":{"auth":"` + b64("first:1") + `"},"https://r.example.com/v1/":{"auth":"` + b64("second:2") + `"}}}`,
			lookup: map[string]Credential{"r.example.com": {Username: "first", Password: "1"}},
		},
		{
			name:   "exact key beats wildcard, wildcard matches one label",
			config: `{"auths":{"*.azurecr.io":{"auth":"` + b64("glob:1") + `"},"mine.azurecr.io":{"auth":"` + b64("exact:2") + `"}}}`,
			lookup: map[string]Credential{
				"mine.azurecr.io":    {Username: "exact", Password: "2"},
				"other.azurecr.io":   {Username: "glob", Password: "1"},
				"a.b.azurecr.io":     {},
				"azurecr.io":         {},
				"other.azurecr.io:5": {},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseDockerConfig([]byte(tt.config))
			if err != nil {
				t.Fatalf("ParseDockerConfig: %v", err)
			}
			for host, want := range tt.lookup {
				if got := s.Lookup(host); got != want {
					t.Errorf("Lookup(%q) = %v, want %v", host, got, want)
				}
			}
		})
	}
}

func TestDockerHubKeys(t *testing.T) {
	keys := []string{"https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io", "https://registry-1.docker.io", "index.docker.io:443"}
	hosts := []string{"registry-1.docker.io", "docker.io", "index.docker.io", "Registry-1.Docker.IO", "registry-1.docker.io:443"}
	want := Credential{Username: "hubuser", Password: "hubpass"}
	for _, key := range keys {
		cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, key, b64("hubuser:hubpass"))
		s, err := ParseDockerConfig([]byte(cfg))
		if err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		for _, h := range hosts {
			if got := s.Lookup(h); got != want {
				t.Errorf("key %q: Lookup(%q) = %v, want %v", key, h, got, want)
			}
		}
		if got := s.Lookup("docker.example.com"); !got.IsEmpty() {
			t.Errorf("key %q: Lookup(docker.example.com) = %v, want empty", key, got)
		}
	}
}

func TestParseDockerConfigErrors(t *testing.T) {
	const secret = "SUPERSECRET-7f3a"
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{"empty", "  ", "empty"},
		{"not JSON", `{"auths": {"r": {"auth": "` + secret + `"`, "malformed JSON"},
		{"syntax error quotes no input", `{"auths": {"r": {"auth": ` + secret + `}}}`, "malformed JSON at byte offset"},
		{"top-level array", `["` + secret + `"]`, "expected a JSON object"},
		{"trailing data", `{"auths":{}} {"x":1}`, "unexpected data after"},
		{"malformed base64", `{"auths":{"r.example.com":{"auth":"` + secret + `!!"}}}`, `registry "r.example.com": field "auth" is not valid base64`},
		{"base64 without colon", `{"auths":{"r.example.com":{"auth":"` + b64(secret) + `"}}}`, `decodes to a value without ':'`},
		{"wrong field type", `{"auths":{"r.example.com":{"password":123}}}`, `field "password" must be a JSON string`},
		{"legacy value not object", `{"r.example.com":"` + secret + `"}`, `registry "r.example.com": the value is not a JSON object`},
		{"auths not object", `{"auths":"` + secret + `"}`, `"auths": expected a JSON object`},
		{"empty key", `{"auths":{"https://":{"auth":"` + b64("a:b") + `"}}}`, "names no host"},
		{"bad wildcard", `{"auths":{"[.example.com":{"auth":"` + b64("a:b") + `"}}}`, "not a valid wildcard pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDockerConfig([]byte(tt.config))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
			for _, leak := range []string{secret, b64(secret), "7f3a"} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("error %q leaks the value %q", err, leak)
				}
			}
		})
	}
}

func TestStoreMergeFirstWins(t *testing.T) {
	a, err := ParseDockerConfig([]byte(`{"auths":{"shared.example.com":{"auth":"` + b64("a:1") + `"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseDockerConfig([]byte(`{"shared.example.com":{"auth":"` + b64("b:2") + `"},"only-b.example.com":{"auth":"` + b64("b:3") + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	a.Merge(b)
	a.Merge(nil)
	a.Merge(a) // self-merge must not deadlock and changes nothing visible
	fn := a.CredentialFunc()
	for host, want := range map[string]Credential{
		"shared.example.com": {Username: "a", Password: "1"},
		"only-b.example.com": {Username: "b", Password: "3"},
		"none.example.com":   {},
	} {
		got, err := fn(context.Background(), host)
		if err != nil || got != want {
			t.Errorf("credential for %q = %v, %v; want %v", host, got, err, want)
		}
	}
	if got, want := a.Registries(), []string{"only-b.example.com", "shared.example.com"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Registries() = %v, want %v", got, want)
	}
	var zero Store
	if got := zero.Lookup("x"); !got.IsEmpty() {
		t.Errorf("zero Store Lookup = %v", got)
	}
}

func TestLoadDockerConfigFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "config.json")
	if err := os.WriteFile(good, []byte(`{"auths":{"r.example.com":{"auth":"`+b64("u:p")+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadDockerConfigFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Lookup("r.example.com"); got != (Credential{Username: "u", Password: "p"}) {
		t.Fatalf("Lookup = %v", got)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"auths":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDockerConfigFile(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("error for malformed file = %v, want one naming %s", err, bad)
	}
	if _, err := LoadDockerConfigFile(filepath.Join(dir, "missing.json")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("error for missing file = %v, want a not-exist error", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		next := u.Unwrap()
		if next == nil {
			return err
		}
		err = next
	}
}

func TestStaticCredentialAndString(t *testing.T) {
	cred := Credential{Username: "u", Password: "SECRETPW", IdentityToken: "SECRETID", RegistryToken: "SECRETRT"}
	fn := StaticCredential("docker.io", cred)
	for host, want := range map[string]Credential{"registry-1.docker.io": cred, "DOCKER.IO": cred, "ghcr.io": {}} {
		if got, _ := fn(context.Background(), host); got != want {
			t.Errorf("StaticCredential for %q = %v, want %v", host, got, want)
		}
	}
	for _, s := range []string{cred.String(), fmt.Sprintf("%v", cred), fmt.Sprintf("%+v", cred), fmt.Sprintf("%#v", cred), fmt.Sprint(&cred)} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("formatted credential %q shows a secret", s)
		}
		if !strings.Contains(s, `"u"`) {
			t.Errorf("formatted credential %q lacks the username", s)
		}
	}
	if !(Credential{}).IsEmpty() || cred.IsEmpty() || (Credential{RegistryToken: "x"}).IsEmpty() {
		t.Error("IsEmpty is wrong")
	}
}
