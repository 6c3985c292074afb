package auth

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// fuzzPassword is the secret planted in fuzzed documents: whatever the
// parsers make of hostile input, no error may echo it.
const fuzzPassword = "Fuzz-S3cret-pw"

// FuzzParseDockerConfig feeds pull Secret contents to ParseDockerConfig:
// it never panics, errors never echo a credential, and every registry the
// store lists finds a credential.
func FuzzParseDockerConfig(f *testing.F) {
	auth := base64.StdEncoding.EncodeToString([]byte("u:" + fuzzPassword))
	for _, s := range []string{
		`{"auths":{"r.example.com":{"auth":"` + auth + `"}}}`,
		`{"auths":{"https://r.example.com/v1/":{"username":"u","password":"` + fuzzPassword + `"}}}`,
		`{"r.example.com:5000":{"auth":"` + auth + `","email":"e"}}`,
		`{"auths":{"*.example.com":{"identitytoken":"` + fuzzPassword + `"}}}`,
		`{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}`,                   // no colon
		`{"auths":{"r":{"auth":"%%%` + fuzzPassword + `"}}}`,        // not base64
		`{"auths":{"r":{"auth":["nested",{"junk":true}]}}}`,         // wrong type
		`{"auths":{"r":{"username":{"a":"` + fuzzPassword + `"}}}}`, // nested junk
		`{"auths":null}`, `{"auths":{}}`, `{"credsStore":"desktop"}`, `{"auths":[1,2]}`,
		`{"auths":{"r":{}},"auths":{"s":{}}}`, `{"a":1} trailing`, `[]`, `null`, ``, `{`,
		`{"auths":{"[::1]:5000":{"auth":"` + auth + `"},"*.*.x":{"auth":"` + auth + `"},"":{"auth":"` + auth + `"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseDockerConfig(data)
		if err != nil {
			if s != nil {
				t.Fatalf("error %v with a non-nil store", err)
			}
			if strings.Contains(err.Error(), fuzzPassword) {
				t.Fatalf("the error echoes the password: %v", err)
			}
			return
		}
		for _, host := range s.Registries() {
			if strings.HasPrefix(host, "*") {
				continue
			}
			if s.Lookup(host).IsEmpty() {
				t.Fatalf("Registries lists %q but Lookup finds no credential", host)
			}
		}
		_ = s.Lookup("r.example.com")
		_ = s.Lookup("docker.io")
	})
}

// FuzzReadTokenResponse feeds token server answers to readTokenResponse:
// it never panics, a token it returns is non-empty, the lifetime stays
// within [0, maxTokenLifetime], and errors never echo the credential.
func FuzzReadTokenResponse(f *testing.F) {
	for _, s := range []string{
		`{"token":"abc","expires_in":300}`,
		`{"access_token":"abc","expires_in":"60"}`,
		`{"token":"","access_token":""}`,
		`{"token":"abc","expires_in":-5}`,
		`{"token":"abc","expires_in":1e308}`,
		`{"token":"abc","expires_in":"NaN"}`,
		`{"token":"abc","expires_in":{"x":1}}`,
		`{"token":123}`,
		`<html>login</html>`,
		`{"errors":[{"code":"UNAUTHORIZED","message":"bad password ` + fuzzPassword + `"}]}`,
		``, `null`,
	} {
		for _, status := range []int{200, 401, 403, 500} {
			f.Add([]byte(s), status, false)
			f.Add([]byte(s), status, true)
		}
	}
	realm, _ := url.Parse("https://auth.example.com/token?secret=x")
	f.Fuzz(func(t *testing.T, body []byte, status int, oauth2 bool) {
		if status < 100 || status > 999 {
			status = 200
		}
		req := &tokenRequest{
			registry: "r.example.com",
			realm:    realm,
			scopes:   []string{"repository:a:pull"},
			cred:     Credential{Username: "u", Password: fuzzPassword, IdentityToken: fuzzPassword},
		}
		resp := &http.Response{
			StatusCode: status,
			Body:       io.NopCloser(bytes.NewReader(body)),
			Header:     http.Header{},
			Request:    &http.Request{Method: http.MethodGet, URL: realm},
		}
		token, life, err := (&Client{}).readTokenResponse(resp, req, oauth2)
		if err != nil {
			if token != "" || life != 0 {
				t.Fatalf("error %v with token %q, lifetime %v", err, token, life)
			}
			if strings.Contains(err.Error(), fuzzPassword) {
				t.Fatalf("the error echoes the credential: %v", err)
			}
			return
		}
		if token == "" {
			t.Fatal("no error and no token")
		}
		if life < 0 || life > maxTokenLifetime {
			t.Fatalf("lifetime %v outside [0, %v]", life, maxTokenLifetime)
		}
	})
}
