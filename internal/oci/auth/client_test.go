package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisync/ocisync/internal/oci/errdef"
)

// get sends one request through c and returns the status, the body and
// the error.
func doReq(t *testing.T, c *Client, ctx context.Context, method, rawURL string, body io.Reader) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func pullCtx(repo string) context.Context {
	return WithScopes(context.Background(), RepositoryScope(repo, ActionPull))
}

func TestBasicFlow(t *testing.T) {
	tests := []struct {
		name       string
		cred       Credential
		wantStatus []int // for two consecutive requests
		wantHits   []int // registry hits after each request
	}{
		{"right credentials: challenge once, then up front", Credential{Username: "alice", Password: "pw"}, []int{200, 200}, []int{2, 3}},
		{"no credentials: the 401 is returned", Credential{}, []int{401, 401}, []int{1, 2}},
		{"identity token only is no Basic credential", Credential{Username: "alice", IdentityToken: "x"}, []int{401, 401}, []int{1, 2}},
		{"wrong credentials: one retry, then up front and no loop", Credential{Username: "alice", Password: "wrong"}, []int{401, 401}, []int{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newRegistry(t, false)
			reg.set(func(r *registry) { r.basicUser, r.basicPass = "alice", "pw" })
			c := &Client{Credential: StaticCredential(reg.host(), tt.cred)}
			for i := range tt.wantStatus {
				status, _, err := doReq(t, c, context.Background(), http.MethodGet, reg.url("foo"), nil)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				hits, _ := reg.counts()
				if status != tt.wantStatus[i] || hits != tt.wantHits[i] {
					t.Fatalf("request %d: status %d, registry hits %d; want %d, %d", i, status, hits, tt.wantStatus[i], tt.wantHits[i])
				}
			}
			if tt.wantStatus[0] == 200 {
				want := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw"))
				if got := reg.lastAuthz(); got != want {
					t.Fatalf("Authorization = %q, want %q", got, want)
				}
			}
		})
	}
}

func TestBearerFlows(t *testing.T) {
	tests := []struct {
		name       string
		cred       Credential
		clientID   string
		setup      func(ts *tokenServer, reg *registry)
		wantGets   int
		wantPosts  int
		wantStatus int
		wantErr    error
		check      func(t *testing.T, ts *tokenServer, reg *registry)
	}{
		{
			name:     "anonymous token",
			setup:    func(ts *tokenServer, _ *registry) { ts.anonOK = true },
			wantGets: 1, wantStatus: 200,
			check: func(t *testing.T, ts *tokenServer, _ *registry) {
				q := ts.lastQuery()
				if q.Get("service") != "fake-registry" || !reflect.DeepEqual(q["scope"], []string{"repository:foo:pull"}) {
					t.Errorf("token query = %v", q)
				}
				if ts.authz[0] != "" {
					t.Errorf("anonymous token request carried Authorization %q", ts.authz[0])
				}
			},
		},
		{
			name:     "token with Basic credentials, access_token preferred",
			cred:     Credential{Username: "alice", Password: "pw"},
			setup:    func(ts *tokenServer, _ *registry) { ts.user, ts.pass, ts.useAccess = "alice", "pw", true },
			wantGets: 1, wantStatus: 200,
			check: func(t *testing.T, ts *tokenServer, _ *registry) {
				if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw")); ts.authz[0] != want {
					t.Errorf("token request Authorization = %q, want %q", ts.authz[0], want)
				}
			},
		},
		{
			name:     "wrong Basic credentials at the token server",
			cred:     Credential{Username: "alice", Password: "nope"},
			setup:    func(ts *tokenServer, _ *registry) { ts.user, ts.pass = "alice", "pw" },
			wantGets: 1, wantErr: errdef.ErrUnauthorized,
		},
		{
			name: "token server denies",
			setup: func(ts *tokenServer, _ *registry) {
				ts.status, ts.body = 403, `{"errors":[{"code":"DENIED","message":"no"}]}`
			},
			wantGets: 1, wantErr: errdef.ErrDenied,
		},
		{
			name:       "registry token used directly",
			cred:       Credential{RegistryToken: "static-reg-token"},
			setup:      func(_ *tokenServer, reg *registry) { reg.staticToken = "static-reg-token" },
			wantStatus: 200,
			check: func(t *testing.T, _ *tokenServer, reg *registry) {
				if got := reg.lastAuthz(); got != "Bearer static-reg-token" {
					t.Errorf("Authorization = %q", got)
				}
			},
		},
		{
			name:       "registry token rejected: 401 returned after one try",
			cred:       Credential{RegistryToken: "stale"},
			setup:      func(_ *tokenServer, reg *registry) { reg.staticToken = "fresh" },
			wantStatus: 401,
		},
		{
			name:      "identity token: OAuth2 POST",
			cred:      Credential{Username: "00000000-0000-0000-0000-000000000000", IdentityToken: "refresh-xyz"},
			setup:     func(ts *tokenServer, _ *registry) { ts.refreshToken = "refresh-xyz" },
			wantPosts: 1, wantStatus: 200,
			check: func(t *testing.T, ts *tokenServer, _ *registry) {
				f := ts.forms[0]
				want := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"refresh-xyz"}, "client_id": {"ocisync"},
					"service": {"fake-registry"}, "scope": {"repository:foo:pull"}}
				if !reflect.DeepEqual(f, want) {
					t.Errorf("form = %v, want %v", f, want)
				}
			},
		},
		{
			name:      "identity token with custom client id",
			cred:      Credential{IdentityToken: "refresh-xyz"},
			clientID:  "my-operator",
			setup:     func(ts *tokenServer, _ *registry) { ts.refreshToken = "refresh-xyz" },
			wantPosts: 1, wantStatus: 200,
			check: func(t *testing.T, ts *tokenServer, _ *registry) {
				if got := ts.forms[0].Get("client_id"); got != "my-operator" {
					t.Errorf("client_id = %q", got)
				}
			},
		},
		{
			name:     "identity token: POST 404 falls back to GET with Basic",
			cred:     Credential{Username: "alice", Password: "pw", IdentityToken: "refresh-xyz"},
			setup:    func(ts *tokenServer, _ *registry) { ts.postStatus, ts.user, ts.pass = 404, "alice", "pw" },
			wantGets: 1, wantPosts: 1, wantStatus: 200,
		},
		{
			name:     "identity token: POST 405 falls back to anonymous GET",
			cred:     Credential{Username: "alice", IdentityToken: "refresh-xyz"},
			setup:    func(ts *tokenServer, _ *registry) { ts.postStatus, ts.anonOK = 405, true },
			wantGets: 1, wantPosts: 1, wantStatus: 200,
		},
		{
			name:      "identity token rejected",
			cred:      Credential{IdentityToken: "refresh-bad"},
			setup:     func(ts *tokenServer, _ *registry) { ts.refreshToken = "refresh-xyz" },
			wantPosts: 1, wantErr: errdef.ErrUnauthorized,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t)
			reg := newRegistry(t, false)
			reg.ts = ts
			ts.set(func(ts *tokenServer) { reg.set(func(reg *registry) { tt.setup(ts, reg) }) })
			c := &Client{Credential: StaticCredential(reg.host(), tt.cred), ClientID: tt.clientID}
			status, body, err := doReq(t, c, pullCtx("foo"), http.MethodGet, reg.url("foo"), nil)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil || status != tt.wantStatus {
				t.Fatalf("status %d, err %v; want %d", status, err, tt.wantStatus)
			}
			if status == 200 && body != "ok:foo" {
				t.Errorf("body = %q", body)
			}
			gets, posts := ts.counts()
			if gets != tt.wantGets || posts != tt.wantPosts {
				t.Errorf("token server GETs %d, POSTs %d; want %d, %d", gets, posts, tt.wantGets, tt.wantPosts)
			}
			if tt.check != nil {
				tt.check(t, ts, reg)
			}
		})
	}
}

func TestTokenCaching(t *testing.T) {
	tests := []struct {
		name         string
		ctx          func() context.Context
		wantUnauth   int // registry 401s over two requests
		wantGetsLast int
	}{
		{"with scope hints the second request sends the token up front", func() context.Context { return pullCtx("foo") }, 1, 1},
		{"without hints the second request is challenged but the token comes from the cache", context.Background, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t)
			ts.anonOK = true
			reg := newRegistry(t, false)
			reg.ts = ts
			c := &Client{Cache: NewTokenCache()}
			for i := 0; i < 2; i++ {
				if status, _, err := doReq(t, c, tt.ctx(), http.MethodGet, reg.url("foo"), nil); err != nil || status != 200 {
					t.Fatalf("request %d: %d %v", i, status, err)
				}
			}
			_, unauth := reg.counts()
			gets, _ := ts.counts()
			if unauth != tt.wantUnauth || gets != tt.wantGetsLast {
				t.Fatalf("registry 401s %d, token fetches %d; want %d, %d", unauth, gets, tt.wantUnauth, tt.wantGetsLast)
			}
		})
	}

	t.Run("a cache shared by two clients with different credentials keeps tokens apart", func(t *testing.T) {
		ts := newTokenServer(t)
		ts.user, ts.pass, ts.anonOK = "alice", "pw", true
		reg := newRegistry(t, false)
		reg.ts = ts
		cache := NewTokenCache()
		alice := &Client{Cache: cache, Credential: StaticCredential(reg.host(), Credential{Username: "alice", Password: "pw"})}
		anon := &Client{Cache: cache}
		for _, c := range []*Client{alice, anon, alice, anon} {
			if status, _, err := doReq(t, c, pullCtx("foo"), http.MethodGet, reg.url("foo"), nil); err != nil || status != 200 {
				t.Fatalf("%d %v", status, err)
			}
		}
		if gets, _ := ts.counts(); gets != 2 {
			t.Fatalf("token fetches = %d, want 2 (one per credential)", gets)
		}
		if ts.authz[0] == ts.authz[1] {
			t.Fatalf("both token requests carried %q", ts.authz[0])
		}
	})
}

func TestTokenExpiry(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn string
		stillGood time.Duration // advancing this much keeps the token
		expired   time.Duration // advancing this much (in total) refetches
	}{
		{"default 60s when expires_in is absent", "", 50 * time.Second, 61 * time.Second},
		{"expires_in 300", "300", 250 * time.Second, 301 * time.Second},
		{"expires_in as a string", `"300"`, 250 * time.Second, 301 * time.Second},
		{"expires_in zero means the default", "0", 50 * time.Second, 61 * time.Second},
		{"margin: a token is not used in its last seconds", "600", 580 * time.Second, 595 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t)
			ts.anonOK, ts.expiresIn = true, tt.expiresIn
			reg := newRegistry(t, false)
			reg.ts = ts
			clock := newFakeClock()
			cache := NewTokenCache()
			cache.SetClock(clock.Now)
			c := &Client{Cache: cache}
			get := func() {
				t.Helper()
				if status, _, err := doReq(t, c, pullCtx("foo"), http.MethodGet, reg.url("foo"), nil); err != nil || status != 200 {
					t.Fatalf("%d %v", status, err)
				}
			}
			get()
			clock.Advance(tt.stillGood)
			get()
			if gets, _ := ts.counts(); gets != 1 {
				t.Fatalf("after %v: %d token fetches, want 1", tt.stillGood, gets)
			}
			clock.Advance(tt.expired - tt.stillGood)
			get()
			if gets, _ := ts.counts(); gets != 2 {
				t.Fatalf("after %v: %d token fetches, want 2", tt.expired, gets)
			}
			// The expired token was replaced before the request: the
			// registry challenged only the very first request.
			if _, unauth := reg.counts(); unauth != 1 {
				t.Fatalf("registry 401s = %d, want 1", unauth)
			}
		})
	}
}

func TestRejectedToken(t *testing.T) {
	t.Run("cached token rejected: one refetch, then success", func(t *testing.T) {
		ts := newTokenServer(t)
		ts.anonOK = true
		reg := newRegistry(t, false)
		reg.ts = ts
		c := &Client{}
		if status, _, err := doReq(t, c, pullCtx("foo"), http.MethodGet, reg.url("foo"), nil); err != nil || status != 200 {
			t.Fatalf("%d %v", status, err)
		}
		reg.set(func(r *registry) { r.revoked["issued-token-1"] = true })
		status, _, err := doReq(t, c, pullCtx("foo"), http.MethodGet, reg.url("foo"), nil)
		if err != nil || status != 200 {
			t.Fatalf("%d %v", status, err)
		}
		gets, _ := ts.counts()
		hits, _ := reg.counts()
		if gets != 2 || hits != 4 { // 401+200, then 401 (revoked) + 200
			t.Fatalf("token fetches %d, registry hits %d; want 2, 4", gets, hits)
		}
		if got := reg.lastAuthz(); got != "Bearer issued-token-2" {
			t.Fatalf("last Authorization = %q", got)
		}
	})

	t.Run("fresh token rejected too: give up with the 401, no loop", func(t *testing.T) {
		ts := newTokenServer(t)
		ts.anonOK = true
		reg := newRegistry(t, false)
		reg.ts = ts
		c := &Client{}
		if status, _, err := doReq(t, c, pullCtx("foo"), http.MethodGet, reg.url("foo"), nil); err != nil || status != 200 {
			t.Fatalf("%d %v", status, err)
		}
		reg.set(func(r *registry) { r.rejectAll = true })
		status, _, err := doReq(t, c, pullCtx("foo"), http.MethodGet, reg.url("foo"), nil)
		if err != nil || status != 401 {
			t.Fatalf("status %d, err %v; want the 401", status, err)
		}
		gets, _ := ts.counts()
		hits, _ := reg.counts()
		if gets != 2 || hits != 4 { // cached token → 401 → fresh token → 401 → stop
			t.Fatalf("token fetches %d, registry hits %d; want 2, 4", gets, hits)
		}
	})

	t.Run("first request whose fresh token is rejected: one fetch, two sends", func(t *testing.T) {
		ts := newTokenServer(t)
		ts.anonOK = true
		reg := newRegistry(t, false)
		reg.ts = ts
		reg.rejectAll = true
		status, _, err := doReq(t, &Client{}, context.Background(), http.MethodGet, reg.url("foo"), nil)
		gets, _ := ts.counts()
		hits, _ := reg.counts()
		if err != nil || status != 401 || gets != 1 || hits != 2 {
			t.Fatalf("status %d err %v token fetches %d registry hits %d; want 401, nil, 1, 2", status, err, gets, hits)
		}
	})
}

func TestScopeMerging(t *testing.T) {
	ts := newTokenServer(t)
	ts.anonOK = true
	reg := newRegistry(t, false)
	reg.ts = ts
	reg.extraScope = "aws"
	c := &Client{}
	ctx := WithScopes(context.Background(), RepositoryScope("foo", ActionPush), RepositoryScope("bar", ActionPull))
	ctx = WithScopesForHost(ctx, "elsewhere.example.com", RepositoryScope("secret-repo", ActionPull))
	for i := 0; i < 2; i++ {
		if status, _, err := doReq(t, c, ctx, http.MethodGet, reg.url("foo"), nil); err != nil || status != 200 {
			t.Fatalf("%d %v", status, err)
		}
	}
	want := []string{"aws", "repository:bar:pull", "repository:foo:pull,push"}
	if got := ts.lastQuery()["scope"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("token scopes = %q, want %q", got, want)
	}
	// The second request found the token through its hints although the
	// registry added "aws" and pull: no second challenge, no second fetch.
	gets, _ := ts.counts()
	_, unauth := reg.counts()
	if gets != 1 || unauth != 1 {
		t.Fatalf("token fetches %d, registry 401s %d; want 1, 1", gets, unauth)
	}
}

func TestChallengeProblems(t *testing.T) {
	tests := []struct {
		name       string
		challenge  string
		wantStatus int
		wantErr    string
	}{
		{"malformed header", `Bearer realm="https://t/token`, 0, "cannot be parsed"},
		{"bearer without realm", `Bearer service="x"`, 0, "without a realm"},
		{"unknown scheme only", `Negotiate abc==`, 401, ""},
		{"realm with user info", `Bearer realm="http://u:pw@127.0.0.1:1/token"`, 0, "user information"},
		{"realm not http", `Bearer realm="file:///etc/passwd"`, 0, "absolute http or https URL"},
		{"relative realm", `Bearer realm="/token"`, 0, "absolute http or https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newRegistry(t, false)
			reg.challenge = tt.challenge
			status, _, err := doReq(t, &Client{}, context.Background(), http.MethodGet, reg.url("foo"), nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errdef.ErrUnauthorized) {
					t.Fatalf("err = %v; want ErrUnauthorized containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw@") {
					t.Fatalf("error shows the realm's user info: %v", err)
				}
				return
			}
			if err != nil || status != tt.wantStatus {
				t.Fatalf("status %d err %v; want %d", status, err, tt.wantStatus)
			}
		})
	}

	t.Run("401 without WWW-Authenticate is returned", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }))
		defer srv.Close()
		status, _, err := doReq(t, &Client{}, context.Background(), http.MethodGet, srv.URL+"/v2/", nil)
		if err != nil || status != 401 {
			t.Fatalf("%d %v", status, err)
		}
	})
}

func TestValidateRealm(t *testing.T) {
	remoteTLS := &url.URL{Scheme: "https", Host: "registry.example.com"}
	remotePlain := &url.URL{Scheme: "http", Host: "registry.example.com:5000"}
	localTLS := &url.URL{Scheme: "https", Host: "127.0.0.1:5000"}
	tests := []struct {
		realm    string
		registry *url.URL
		wantErr  string
	}{
		{"https://auth.example.com/token", remoteTLS, ""},
		{"https://auth.example.com/token?account=x#frag", remoteTLS, ""},
		{"HTTPS://Auth.Example.com/token", remoteTLS, ""},
		{"http://auth.example.com/token", remoteTLS, "plain http"},
		{"http://auth.example.com/token", remotePlain, ""},
		{"ftp://auth.example.com/token", remoteTLS, "absolute http or https"},
		{"/token", remoteTLS, "absolute http or https"},
		{"https:///token", remoteTLS, "with a host"},
		{"https:opaque", remoteTLS, "with a host"},
		{"https://user:hunter2@auth.example.com/token", remoteTLS, "user information"},
		{"https://169.254.169.254/latest/meta-data", remoteTLS, "link-local"},
		{"https://[fe80::1]/token", remoteTLS, "link-local"},
		{"https://0.0.0.0/token", remoteTLS, "unspecified"},
		{"https://224.0.0.1/token", remoteTLS, "multicast"},
		{"https://127.0.0.1:8443/token", remoteTLS, "loopback"},
		{"https://localhost/token", remoteTLS, "loopback"},
		{"https://[::1]/token", remoteTLS, "loopback"},
		{"https://127.0.0.1:8443/token", localTLS, ""},
		{"https://localhost:8443/token", localTLS, ""},
		{"https://10.1.2.3/token", remoteTLS, ""},
		{"https://registry.example.com/token", remoteTLS, ""},
		{"https://auth.example.com/%zz", remoteTLS, "not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.realm+" from "+tt.registry.String(), func(t *testing.T) {
			u, err := validateRealm(tt.realm, tt.registry)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if u.Fragment != "" || u.Scheme != "https" && u.Scheme != "http" {
					t.Fatalf("validated URL %v", u)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errdef.ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "account=") {
				t.Fatalf("error leaks realm secrets: %v", err)
			}
		})
	}
}

func TestPlainHTTPRealmRefusedForTLSRegistry(t *testing.T) {
	ts := newTokenServer(t) // plain http
	ts.anonOK = true
	reg := newRegistry(t, true)
	reg.ts = ts
	c := &Client{HTTP: reg.srv.Client(), Credential: StaticCredential(reg.host(), Credential{Username: "u", Password: "p"})}
	_, _, err := doReq(t, c, context.Background(), http.MethodGet, reg.url("foo"), nil)
	if !errors.Is(err, errdef.ErrUnauthorized) || !strings.Contains(err.Error(), "plain http") {
		t.Fatalf("err = %v, want a refusal of the plain-http realm", err)
	}
	if gets, posts := ts.counts(); gets+posts != 0 {
		t.Fatalf("token server contacted %d times", gets+posts)
	}

	// An https realm works.
	tlsTS := &tokenServer{issued: map[string][]string{}, user: "u", pass: "p"}
	tlsTS.srv = httptest.NewTLSServer(tlsTS)
	defer tlsTS.srv.Close()
	reg.set(func(r *registry) { r.ts = tlsTS })
	if status, _, err := doReq(t, c, context.Background(), http.MethodGet, reg.url("foo"), nil); err != nil || status != 200 {
		t.Fatalf("with an https realm: %d %v", status, err)
	}
}

func TestNoSecretsInErrors(t *testing.T) {
	const (
		user     = "user-3b1d"
		password = "PASSWORD-SECRET-91f2c"
		identity = "IDENTITY-SECRET-5e7a0"
	)
	echo := fmt.Sprintf(`{"errors":[{"code":"UNAUTHORIZED","message":"bad password %s or token %s"}]}`, password, identity)

	tests := []struct {
		name    string
		cred    Credential
		setup   func(ts *tokenServer, reg *registry)
		wantErr error
	}{
		{"401 echoing the password", Credential{Username: user, Password: password},
			func(ts *tokenServer, _ *registry) { ts.status, ts.body = 401, echo }, errdef.ErrUnauthorized},
		{"401 echoing the identity token", Credential{Username: user, IdentityToken: identity},
			func(ts *tokenServer, _ *registry) { ts.status, ts.body = 401, echo }, errdef.ErrUnauthorized},
		{"401 to the OAuth2 POST with every kind of secret", Credential{Username: user, Password: password, IdentityToken: identity},
			func(ts *tokenServer, _ *registry) { ts.status, ts.body = 401, echo }, errdef.ErrUnauthorized},
		{"403", Credential{Username: user, Password: password},
			func(ts *tokenServer, _ *registry) { ts.status, ts.body = 403, echo }, errdef.ErrDenied},
		{"500", Credential{Username: user, Password: password},
			func(ts *tokenServer, _ *registry) { ts.status, ts.body = 500, echo }, nil},
		{"HTML instead of JSON", Credential{Username: user, Password: password},
			func(ts *tokenServer, _ *registry) { ts.status, ts.body = 200, "<html>"+password+"</html>" }, errdef.ErrUnauthorized},
		{"JSON without a token", Credential{Username: user, Password: password},
			func(ts *tokenServer, _ *registry) { ts.status, ts.body = 200, `{"expires_in":30}` }, errdef.ErrUnauthorized},
		{"oversized response", Credential{Username: user, Password: password},
			func(ts *tokenServer, _ *registry) {
				ts.status, ts.body = 200, `{"token":"`+strings.Repeat("x", maxTokenResponseBytes)+`"}`
			}, errdef.ErrTooLarge},
		{"realm with a secret in the query", Credential{Username: user, Password: password},
			func(ts *tokenServer, reg *registry) {
				ts.status, ts.body = 401, echo
				reg.realm = ts.realm() + "?sig=" + password
			}, errdef.ErrUnauthorized},
		{"unreachable token server", Credential{Username: user, Password: password},
			func(ts *tokenServer, reg *registry) { reg.realm = "http://127.0.0.1:1/token?sig=" + password }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t)
			reg := newRegistry(t, false)
			reg.ts = ts
			ts.set(func(ts *tokenServer) { reg.set(func(reg *registry) { tt.setup(ts, reg) }) })
			c := &Client{Credential: StaticCredential(reg.host(), tt.cred)}
			_, _, err := doReq(t, c, pullCtx("foo"), http.MethodGet, reg.url("foo"), nil)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			// The server echoes secrets; those the client holds must not
			// reach the error.
			secrets := []string{"issued-token-"}
			for _, s := range []string{tt.cred.Password, tt.cred.IdentityToken, tt.cred.RegistryToken} {
				if s != "" {
					secrets = append(secrets, s)
				}
			}
			if tt.cred.Password != "" {
				secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(tt.cred.Username+":"+tt.cred.Password)))
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error %q contains secret %q", err, s)
				}
			}
			if !strings.Contains(err.Error(), "127.0.0.1") {
				t.Fatalf("error %q does not say which server failed", err)
			}
		})
	}
}

func TestRequestBodies(t *testing.T) {
	t.Run("replayable body is sent again after the challenge", func(t *testing.T) {
		ts := newTokenServer(t)
		ts.anonOK = true
		reg := newRegistry(t, false)
		reg.ts = ts
		status, _, err := doReq(t, &Client{}, context.Background(), http.MethodPut, reg.url("foo"), bytes.NewReader([]byte("manifest-body")))
		if err != nil || status != 200 {
			t.Fatalf("%d %v", status, err)
		}
		if got := reg.bodies; !reflect.DeepEqual(got, []string{"manifest-body"}) {
			t.Fatalf("bodies accepted = %q", got)
		}
		if q := ts.lastQuery(); q.Get("scope") != "repository:foo:push" {
			t.Fatalf("scope = %q", q.Get("scope"))
		}
	})
	t.Run("body without GetBody: the 401 is returned, nothing fetched", func(t *testing.T) {
		ts := newTokenServer(t)
		ts.anonOK = true
		reg := newRegistry(t, false)
		reg.ts = ts
		req, _ := http.NewRequest(http.MethodPut, reg.url("foo"), io.NopCloser(strings.NewReader("x")))
		req.GetBody = nil
		resp, err := (&Client{}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if gets, _ := ts.counts(); resp.StatusCode != 401 || gets != 0 {
			t.Fatalf("status %d, token fetches %d; want 401, 0", resp.StatusCode, gets)
		}
	})
}

func TestRedirects(t *testing.T) {
	var mu sync.Mutex
	var storageAuthz []string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageAuthz = append(storageAuthz, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Path == "/denied" {
			w.Header().Set("WWW-Authenticate", `Basic realm="storage"`)
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, "blob")
	}))
	defer storage.Close()

	regHits := 0
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		regHits++
		mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "p" {
			w.Header().Set("WWW-Authenticate", `Basic realm="reg"`)
			w.WriteHeader(401)
			return
		}
		switch r.URL.Path {
		case "/v2/foo/blobs/ok":
			http.Redirect(w, r, storage.URL+"/blob", http.StatusTemporaryRedirect)
		case "/v2/foo/blobs/denied":
			http.Redirect(w, r, storage.URL+"/denied", http.StatusTemporaryRedirect)
		}
	}))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")

	callerPolicyCalls := 0
	c := &Client{
		HTTP: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			callerPolicyCalls++
			return nil
		}},
		Credential: StaticCredential(host, Credential{Username: "u", Password: "p"}),
	}
	status, body, err := doReq(t, c, context.Background(), http.MethodGet, reg.URL+"/v2/foo/blobs/ok", nil)
	if err != nil || status != 200 || body != "blob" {
		t.Fatalf("%d %q %v", status, body, err)
	}
	if callerPolicyCalls == 0 {
		t.Fatal("the caller's CheckRedirect was not consulted")
	}
	status, _, err = doReq(t, c, context.Background(), http.MethodGet, reg.URL+"/v2/foo/blobs/denied", nil)
	if err != nil || status != 401 {
		t.Fatalf("401 from the storage host: %d %v; want the 401 returned as is", status, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range storageAuthz {
		if a != "" {
			t.Fatalf("storage host received Authorization %q", a)
		}
	}
	// ok: 401 + 200(redirect); denied: up-front Basic → redirect → storage 401, not retried.
	if regHits != 3 {
		t.Fatalf("registry hits = %d, want 3", regHits)
	}
}

func TestExistingAuthorizationAndUserAgent(t *testing.T) {
	ts := newTokenServer(t)
	ts.anonOK = true
	reg := newRegistry(t, false)
	reg.ts = ts
	var mu sync.Mutex
	var agents []string
	wrapped := reg.srv.Config.Handler
	reg.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.Header.Get("User-Agent"))
		mu.Unlock()
		wrapped.ServeHTTP(w, r)
	})
	c := &Client{UserAgent: "ocisync-test/1"}

	req, _ := http.NewRequest(http.MethodGet, reg.url("foo"), nil)
	req.Header.Set("Authorization", "Bearer caller-set")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gets, _ := ts.counts(); resp.StatusCode != 401 || gets != 0 || reg.lastAuthz() != "Bearer caller-set" {
		t.Fatalf("request with Authorization: status %d, token fetches %d, sent %q", resp.StatusCode, gets, reg.lastAuthz())
	}
	if status, _, err := doReq(t, c, context.Background(), http.MethodGet, reg.url("foo"), nil); err != nil || status != 200 {
		t.Fatalf("%d %v", status, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range append(agents, ts.agents...) {
		if a != "ocisync-test/1" {
			t.Fatalf("User-Agent %q, want ocisync-test/1 (registry %v, token server %v)", a, agents, ts.agents)
		}
	}
	if req.Header.Get("Authorization") != "Bearer caller-set" || len(req.Header) != 1 {
		t.Fatalf("caller's request was modified: %v", req.Header)
	}
}

func TestContextCancellation(t *testing.T) {
	ts := newTokenServer(t)
	ts.anonOK = true
	ts.block = make(chan struct{})
	defer close(ts.block)
	reg := newRegistry(t, false)
	reg.ts = ts
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := doReq(t, &Client{}, ctx, http.MethodGet, reg.url("foo"), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestCredentialFuncError(t *testing.T) {
	reg := newRegistry(t, false)
	boom := errors.New("secret backend down")
	c := &Client{Credential: func(context.Context, string) (Credential, error) { return Credential{}, boom }}
	_, _, err := doReq(t, c, context.Background(), http.MethodGet, reg.url("foo"), nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), reg.host()) {
		t.Fatalf("err = %v", err)
	}
}

func TestConcurrentSharedCache(t *testing.T) {
	ts := newTokenServer(t)
	ts.user, ts.pass, ts.anonOK = "alice", "pw", true
	reg := newRegistry(t, false)
	reg.ts = ts
	cache := NewTokenCache()
	clients := []*Client{
		{Cache: cache, Credential: StaticCredential(reg.host(), Credential{Username: "alice", Password: "pw"})},
		{Cache: cache},
	}
	const goroutines = 40
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for i := 0; i < goroutines; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := clients[i%2]
			for j := 0; j < 5; j++ {
				req, _ := http.NewRequestWithContext(pullCtx("foo"), http.MethodGet, reg.url("foo"), nil)
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if gets, _ := ts.counts(); gets != 2 {
		t.Fatalf("token fetches = %d, want 2 (one per credential, shared by all goroutines)", gets)
	}
}

func TestConcurrentStore(t *testing.T) {
	s, err := ParseDockerConfig([]byte(`{"auths":{"a.example.com":{"auth":"` + b64("a:1") + `"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func(i int) {
			defer wg.Done()
			other, _ := ParseDockerConfig([]byte(fmt.Sprintf(`{"auths":{"h%d.example.com":{"auth":%q}}}`, i, b64("x:y"))))
			s.Merge(other)
		}(i)
		go func() {
			defer wg.Done()
			if got := s.Lookup("a.example.com"); got.Username != "a" {
				t.Errorf("Lookup = %v", got)
			}
		}()
	}
	wg.Wait()
	if n := len(s.Registries()); n != 9 {
		t.Fatalf("registries = %d, want 9", n)
	}
}
