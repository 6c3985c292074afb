package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestErrorBodies checks that error statuses and distribution error bodies
// surface as the sentinels on every kind of call, and that what a registry
// sends is not echoed beyond the short, parsed messages.
func TestErrorBodies(t *testing.T) {
	blob := ocispec.Descriptor{Digest: digest.FromString("b"), Size: 1}
	calls := []struct {
		name string
		call func(r *Repository) error
	}{
		{"FetchManifest", func(r *Repository) error { _, _, err := r.FetchManifest(context.Background(), "v1"); return err }},
		{"Resolve", func(r *Repository) error { _, err := r.Resolve(context.Background(), "v1"); return err }},
		{"FetchBlob", func(r *Repository) error {
			rc, err := r.FetchBlob(context.Background(), blob, 0)
			if err == nil {
				rc.Close()
			}
			return err
		}},
		{"Tags", func(r *Repository) error { _, err := r.Tags(context.Background()); return err }},
		{"PushManifest", func(r *Repository) error {
			_, err := r.PushManifest(context.Background(), "v1", ocispec.MediaTypeImageManifest, imageManifest(t))
			return err
		}},
	}
	errBody := func(code, msg string) string {
		b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
		return string(b)
	}
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        error
		msg         string // the error text must contain this (for non-HEAD calls)
		mustNotHave []string
	}{
		{name: "401 UNAUTHORIZED", status: 401, body: errBody("UNAUTHORIZED", "authentication required"), want: ErrUnauthorized, msg: "UNAUTHORIZED: authentication required"},
		{name: "403 DENIED", status: 403, body: errBody("DENIED", "requested access to the resource is denied"), want: ErrDenied, msg: "DENIED: requested access"},
		{name: "404 NAME_UNKNOWN", status: 404, body: errBody("NAME_UNKNOWN", "repository name not known to registry"), want: ErrNotFound, msg: "NAME_UNKNOWN"},
		{name: "429 TOOMANYREQUESTS", status: 429, body: errBody("TOOMANYREQUESTS", "slow down"), want: ErrTooManyRequests, msg: "TOOMANYREQUESTS: slow down"},
		{name: "401 without body", status: 401, want: ErrUnauthorized},
		{name: "403 without body", status: 403, want: ErrDenied},
		{name: "429 without body", status: 429, want: ErrTooManyRequests},
		{
			name: "403 HTML page", status: 403, contentType: "text/html",
			body: "<!DOCTYPE html><html>" + strings.Repeat("<div>SECRET-PAGE-CONTENT</div>", 5000) + "</html>",
			want: ErrDenied, mustNotHave: []string{"html", "SECRET-PAGE-CONTENT", "DOCTYPE"},
		},
		{
			name: "404 huge JSON", status: 404,
			body: errBody("NAME_UNKNOWN", strings.Repeat("SECRET-JSON ", 10000)),
			want: ErrNotFound, mustNotHave: []string{"SECRET-JSON"},
		},
	}
	for _, tt := range tests {
		for _, c := range calls {
			t.Run(tt.name+"/"+c.name, func(t *testing.T) {
				f := newFakeRegistry(t)
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if tt.contentType != "" {
						w.Header().Set("Content-Type", tt.contentType)
					} else if tt.body != "" {
						w.Header().Set("Content-Type", "application/json")
					}
					w.WriteHeader(tt.status)
					fmt.Fprint(w, tt.body)
					return true
				})
				err := c.call(f.repo(t))
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				if len(err.Error()) > 1024 {
					t.Errorf("error is %d characters long: %.200q...", len(err.Error()), err.Error())
				}
				if tt.msg != "" && c.name != "Resolve" && !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("error %q does not carry the registry's message %q", err, tt.msg)
				}
				for _, s := range tt.mustNotHave {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error echoes the response body (%q): %.300q", s, err.Error())
					}
				}
				if !strings.Contains(err.Error(), f.host) {
					t.Errorf("error %q does not name the registry", err)
				}
			})
		}
	}
}

func TestManifest404Sentinels(t *testing.T) {
	f := newFakeRegistry(t)
	r := f.repo(t)
	_, _, err := r.FetchManifest(context.Background(), "missing")
	if !errors.Is(err, ErrManifestUnknown) || !errors.Is(err, ErrNotFound) || errors.Is(err, ErrBlobUnknown) {
		t.Errorf("FetchManifest of a missing tag: %v", err)
	}
	want := "GET http://" + f.host + "/v2/test/repo/manifests/missing: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if !strings.Contains(err.Error(), "check that the repository and the tag or digest exist") {
		t.Errorf("error %q does not say what to check", err)
	}
	_, err = r.FetchBlob(context.Background(), ocispec.Descriptor{Digest: digest.FromString("x"), Size: 1}, 0)
	if !errors.Is(err, ErrBlobUnknown) || !errors.Is(err, ErrNotFound) || errors.Is(err, ErrManifestUnknown) {
		t.Errorf("FetchBlob of a missing blob: %v", err)
	}
}

// TestSecretsNotInErrors drives failures with a Basic credential, a bearer
// token and secret-bearing upload URLs and checks none of the secrets shows
// up in any error text.
func TestSecretsNotInErrors(t *testing.T) {
	const (
		password = "pw-SECRET-1234"
		token    = "tok-SECRET-5678"
		state    = "state-SECRET-9012"
	)
	secrets := []string{password, token, state}
	check := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s succeeded, want an error", what)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), s) {
				t.Errorf("%s: error text contains a secret: %v", what, err)
			}
		}
	}

	t.Run("basic", func(t *testing.T) {
		f := newFakeRegistry(t)
		f.user, f.pass = "alice", "another-password"
		r := f.repo(t, f.withCredential("alice", password))
		_, _, err := r.FetchManifest(context.Background(), "v1")
		check(t, "FetchManifest with a wrong password", err)
		if !errors.Is(err, ErrUnauthorized) {
			t.Errorf("err = %v, want ErrUnauthorized", err)
		}
	})

	t.Run("bearer", func(t *testing.T) {
		f := newFakeRegistry(t)
		f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/token" {
				if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != password {
					writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "bad credentials")
					return true
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, token)
				return true
			}
			if r.Header.Get("Authorization") != "Bearer "+token {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="fake",scope="repository:test/repo:pull"`, f.host))
				writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
				return true
			}
			// Authenticated, and still refused.
			writeRegistryError(w, http.StatusForbidden, "DENIED", "no access to this repository")
			return true
		})
		r := f.repo(t, f.withCredential("alice", password))
		_, _, err := r.FetchManifest(context.Background(), "v1")
		check(t, "FetchManifest denied after a token", err)
		if !errors.Is(err, ErrDenied) {
			t.Errorf("err = %v, want ErrDenied", err)
		}
		if got := f.reqs("", "/token"); len(got) == 0 {
			t.Errorf("the token endpoint was never asked; the test does not exercise tokens")
		}
	})

	t.Run("upload location", func(t *testing.T) {
		f := newFakeRegistry(t)
		f.locationQuery = "?_state=" + state
		f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
				writeRegistryError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "upload failed")
				return true
			}
			return false
		})
		content := []byte("data")
		err := f.repo(t).PushBlob(context.Background(), ocispec.Descriptor{Digest: digest.FromBytes(content), Size: 4}, strings.NewReader("data"))
		check(t, "PushBlob with a failing PUT", err)
		if !strings.Contains(err.Error(), "BLOB_UPLOAD_INVALID") {
			t.Errorf("error %q lacks the registry's code", err)
		}
	})
}
