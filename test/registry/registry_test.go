package registrytest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeT records Fatalf instead of failing, to test the harness's own
// failure messages.
type fakeT struct {
	dir   string
	fatal string
}

type fatalStop struct{}

func (f *fakeT) Helper()                   {}
func (f *fakeT) Cleanup(func())            {}
func (f *fakeT) TempDir() string           { return f.dir }
func (f *fakeT) Logf(string, ...any)       {}
func (f *fakeT) Fatalf(s string, a ...any) { f.fatal = fmt.Sprintf(s, a...); panic(fatalStop{}) }

func catchFatal(f *fakeT, fn func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatalStop); !ok {
				panic(r)
			}
			msg = f.fatal
		}
	}()
	fn()
	return ""
}

func TestBinaryFromEnvFailsWithInstructions(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(notExec, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, value, want string
	}{
		{"unset", "", "run make test"},
		{"relative", "bin/registry", "run make test"},
		{"missing", filepath.Join(dir, "nope"), "run make test"},
		{"directory", dir, "not an executable file"},
		{"not executable", notExec, "not an executable file"},
	}
	const name = "OCISYNC_TEST_HARNESS_PROBE"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(name, tt.value)
			f := &fakeT{dir: t.TempDir()}
			msg := catchFatal(f, func() { BinaryFromEnv(f, name) })
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, name) {
				t.Errorf("message %q: want it to name %s and say %q", msg, name, tt.want)
			}
		})
	}
}

var harnessUsers = []User{
	{Name: "writer", Password: "writer-pw-123"},
	{Name: "reader", Password: "reader-pw-456", Actions: []string{"pull"}},
}

// TestStart proves each registry mode is wired as intended by talking HTTP
// to it directly: the challenge, accepted and refused credentials, and
// that tokens from the harness's issuer (and only those) are honoured.
func TestStart(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"none plain", Options{}},
		{"none tls", Options{TLS: true}},
		{"htpasswd tls", Options{Auth: AuthHtpasswd, TLS: true, Users: harnessUsers}},
		{"token tls", Options{Auth: AuthToken, TLS: true, Users: harnessUsers}},
		{"token plain", Options{Auth: AuthToken, Users: harnessUsers}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := Start(t, tt.opts)
			c := r.Client()
			do := func(path string, set func(*http.Request)) (*http.Response, string) {
				t.Helper()
				req, err := http.NewRequest(http.MethodGet, r.URL+path, nil)
				if err != nil {
					t.Fatal(err)
				}
				if set != nil {
					set(req)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp, string(b)
			}
			basic := func(u, p string) func(*http.Request) { return func(q *http.Request) { q.SetBasicAuth(u, p) } }
			bearer := func(tok string) func(*http.Request) {
				return func(q *http.Request) { q.Header.Set("Authorization", "Bearer "+tok) }
			}
			expect := func(what string, resp *http.Response, body string, status int) {
				t.Helper()
				if resp.StatusCode != status {
					t.Errorf("%s: status %d, want %d; body %s", what, resp.StatusCode, status, body)
				}
			}

			if tt.opts.TLS {
				if !strings.HasPrefix(r.URL, "https://") || r.CAFile == "" {
					t.Fatalf("URL %q CAFile %q: want https and a CA file", r.URL, r.CAFile)
				}
				_, err := http.Get(r.URL + "/v2/")
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Errorf("GET without trusting the test CA: err %v, want a certificate error", err)
				}
			}

			switch tt.opts.Auth {
			case "":
				resp, body := do("/v2/", nil)
				expect("anonymous /v2/", resp, body, 200)
			case AuthHtpasswd:
				resp, body := do("/v2/", nil)
				expect("anonymous /v2/", resp, body, 401)
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
					t.Errorf("challenge %q, want Basic", got)
				}
				resp, body = do("/v2/", basic("writer", "writer-pw-123"))
				expect("writer /v2/", resp, body, 200)
				resp, body = do("/v2/", basic("writer", "wrong"))
				expect("wrong password /v2/", resp, body, 401)
			case AuthToken:
				resp, body := do("/v2/", nil)
				expect("anonymous /v2/", resp, body, 401)
				want := fmt.Sprintf("Bearer realm=%q,service=%q", r.Tokens.Realm, r.Tokens.Service)
				if got := resp.Header.Get("WWW-Authenticate"); got != want {
					t.Errorf("challenge %q, want %q", got, want)
				}
				resp, body = do("/v2/app/tags/list", bearer(r.Tokens.Mint(t, "writer", "repository:app:pull")))
				expect("pull token on app (authorized, repository unknown)", resp, body, 404)
				resp, body = do("/v2/app/tags/list", bearer(r.Tokens.Mint(t, "writer", "repository:other:pull")))
				expect("token for another repository", resp, body, 401)
				if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
					t.Errorf("challenge %q, want insufficient_scope", got)
				}
				forger := NewTokenIssuer(t, TokenOptions{})
				resp, body = do("/v2/app/tags/list", bearer(forger.Mint(t, "writer", "repository:app:pull")))
				expect("token signed by an untrusted key", resp, body, 401)
			}
		})
	}
}

// TestStartCleanupStopsRegistry checks Cleanup leaves no registry behind.
func TestStartCleanupStopsRegistry(t *testing.T) {
	var url string
	var logFile string
	if !t.Run("run", func(t *testing.T) {
		r := Start(t, Options{})
		url, logFile = r.URL, r.LogFile
	}) {
		return
	}
	resp, err := http.Get(url + "/v2/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("registry at %s still answers after its test ended (log %s)", url, logFile)
	}
	var opErr interface{ Timeout() bool }
	if errors.As(err, &opErr) && opErr.Timeout() {
		t.Fatalf("GET %s timed out instead of being refused: %v", url, err)
	}
}

// TestStopAndRestart checks that Stop takes the registry down and Restart
// brings it back on the same address with the same storage and
// configuration: a blob pushed before is still there, and so is the auth.
func TestStopAndRestart(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		// stop stops the registry before Restart; otherwise Restart
		// stops the running registry itself.
		stop bool
	}{
		{"stopped plain", Options{}, true},
		{"running plain", Options{}, false},
		{"stopped htpasswd tls", Options{Auth: AuthHtpasswd, TLS: true, Users: harnessUsers}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := Start(t, tt.opts)
			c := r.Client()
			// do sends a request to path (or to a URL the registry
			// returned) and returns the status and Location.
			do := func(method, path string, body string) (int, string, error) {
				t.Helper()
				if !strings.HasPrefix(path, "http") {
					path = r.URL + path
				}
				req, err := http.NewRequest(method, path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/octet-stream")
				if tt.opts.Auth == AuthHtpasswd {
					req.SetBasicAuth("writer", r.Password(t, "writer"))
				}
				resp, err := c.Do(req)
				if err != nil {
					return 0, "", err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode, resp.Header.Get("Location"), nil
			}
			const blob = "kept across restarts\n"
			dgst := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(blob)))
			code, loc, err := do(http.MethodPost, "/v2/app/blobs/uploads/", "")
			if err != nil || code != http.StatusAccepted {
				t.Fatalf("start a blob upload: status %d, err %v; want 202", code, err)
			}
			sep := "?"
			if strings.Contains(loc, "?") {
				sep = "&"
			}
			if code, _, err := do(http.MethodPut, loc+sep+"digest="+dgst, blob); err != nil || code != http.StatusCreated {
				t.Fatalf("finish the blob upload: status %d, err %v; want 201", code, err)
			}
			host, url := r.Host, r.URL

			if tt.stop {
				r.Stop(t)
				// A pooled connection would see the stop as an EOF, or not
				// at all until its next read: dial anew, and find the port
				// closed.
				c.CloseIdleConnections()
				if code, _, err := do(http.MethodGet, "/v2/", ""); err == nil {
					t.Fatalf("GET /v2/ after Stop answered %d, want the connection refused", code)
				} else if !strings.Contains(err.Error(), "connection refused") {
					t.Fatalf("GET /v2/ after Stop: %v, want the connection refused", err)
				}
				r.Stop(t) // stopping twice is harmless
			}
			r.Restart(t)
			if r.Host != host || r.URL != url {
				t.Fatalf("after Restart the registry is at %s (%s), want %s (%s)", r.Host, r.URL, host, url)
			}
			if code, _, err := do(http.MethodHead, "/v2/app/blobs/"+dgst, ""); err != nil || code != http.StatusOK {
				t.Errorf("HEAD of the blob pushed before the restart: status %d, err %v; want 200 (the same storage)", code, err)
			}
			if tt.opts.Auth == AuthHtpasswd {
				resp, err := c.Get(r.URL + "/v2/")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("anonymous GET /v2/ after Restart: status %d, want 401 (the same configuration)", resp.StatusCode)
				}
			}
			log, err := os.ReadFile(r.LogFile)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(log), "listening on"); n != 2 {
				t.Errorf("the log tells of %d starts, want 2: a restart appends to it\n%s", n, log)
			}
		})
	}
}
