package auth

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for TokenCache.SetClock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// tokenServer is a distribution token server that also speaks the OAuth2
// refresh_token grant.
type tokenServer struct {
	srv *httptest.Server

	mu sync.Mutex
	// configuration
	user, pass   string // GET with Basic must carry these
	anonOK       bool   // GET without Basic gets a token
	refreshToken string // POST must carry this refresh_token
	postStatus   int    // non-zero: POST answers this status
	expiresIn    string // raw JSON for expires_in; "" omits it
	status       int    // non-zero: every request answers this status with body
	body         string
	useAccess    bool // GET answers access_token instead of token
	block        chan struct{}
	// observations
	gets, posts int
	queries     []url.Values
	forms       []url.Values
	authz       []string
	agents      []string
	issued      map[string][]string // token → granted scopes
	seq         int
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{issued: map[string][]string{}}
	ts.srv = httptest.NewServer(ts)
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) realm() string { return ts.srv.URL + "/token" }

func (ts *tokenServer) set(f func(ts *tokenServer)) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f(ts)
}

func (ts *tokenServer) counts() (gets, posts int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.gets, ts.posts
}

func (ts *tokenServer) lastQuery() url.Values {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.queries) == 0 {
		return nil
	}
	return ts.queries[len(ts.queries)-1]
}

func (ts *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ts.mu.Lock()
	block := ts.block
	ts.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}

	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.authz = append(ts.authz, r.Header.Get("Authorization"))
	ts.agents = append(ts.agents, r.Header.Get("User-Agent"))
	if r.Method == http.MethodPost {
		ts.posts++
	} else {
		ts.gets++
	}
	if ts.status != 0 {
		w.WriteHeader(ts.status)
		_, _ = io.WriteString(w, ts.body)
		return
	}
	var scopes []string
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		ts.queries = append(ts.queries, q)
		u, p, ok := r.BasicAuth()
		if ok && (u != ts.user || p != ts.pass) || !ok && !ts.anonOK {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`)
			return
		}
		scopes = q["scope"]
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		ts.forms = append(ts.forms, r.PostForm)
		if ts.postStatus != 0 {
			w.WriteHeader(ts.postStatus)
			return
		}
		if r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("refresh_token") != ts.refreshToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		scopes = strings.Fields(r.PostForm.Get("scope"))
	}
	ts.seq++
	tok := fmt.Sprintf("issued-token-%d", ts.seq)
	ts.issued[tok] = scopes
	resp := map[string]any{}
	if r.Method == http.MethodPost || ts.useAccess {
		resp["access_token"] = tok
	} else {
		resp["token"] = tok
	}
	if ts.expiresIn != "" {
		resp["expires_in"] = json.RawMessage(ts.expiresIn)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// grants reports whether tok was issued with pull access to repo.
func (ts *tokenServer) grants(tok, repo, action string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	scopes, ok := ts.issued[tok]
	if !ok {
		return false
	}
	for _, s := range CleanScopes(scopes) {
		prefix := "repository:" + repo + ":"
		if !strings.HasPrefix(s, prefix) {
			continue
		}
		for _, a := range strings.Split(strings.TrimPrefix(s, prefix), ",") {
			if a == action || a == "*" {
				return true
			}
		}
	}
	return false
}

// registry is a fake registry answering /v2/<repo>/manifests/<ref> (GET,
// HEAD, PUT) with Basic or Bearer auth.
type registry struct {
	srv *httptest.Server

	mu sync.Mutex
	// configuration
	basicUser, basicPass string       // Basic mode when basicUser != ""
	ts                   *tokenServer // Bearer mode
	realm                string       // overrides ts.realm()
	extraScope           string       // added to the challenge scope (e.g. "aws")
	staticToken          string       // accepted as a bearer token
	revoked              map[string]bool
	rejectAll            bool
	challenge            string // overrides the WWW-Authenticate header
	// observations
	hits, unauthorized int
	authz              []string
	bodies             []string
}

func newRegistry(t *testing.T, tls bool) *registry {
	reg := &registry{revoked: map[string]bool{}}
	if tls {
		reg.srv = httptest.NewTLSServer(reg)
	} else {
		reg.srv = httptest.NewServer(reg)
	}
	t.Cleanup(reg.srv.Close)
	return reg
}

func (reg *registry) set(f func(reg *registry)) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	f(reg)
}

func (reg *registry) counts() (hits, unauthorized int) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return reg.hits, reg.unauthorized
}

func (reg *registry) lastAuthz() string {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return reg.authz[len(reg.authz)-1]
}

func (reg *registry) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(reg.srv.URL, "http://"), "https://")
}

func (reg *registry) url(repo string) string {
	return reg.srv.URL + "/v2/" + repo + "/manifests/latest"
}

func (reg *registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	repo, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/")
	action := ActionPull
	if r.Method == http.MethodPut {
		action = ActionPush
	}

	reg.mu.Lock()
	reg.hits++
	authz := r.Header.Get("Authorization")
	reg.authz = append(reg.authz, authz)
	ok := false
	if !reg.rejectAll {
		if reg.basicUser != "" {
			u, p, has := r.BasicAuth()
			ok = has && u == reg.basicUser && p == reg.basicPass
		} else if tok, has := strings.CutPrefix(authz, "Bearer "); has && !reg.revoked[tok] {
			ok = (reg.staticToken != "" && tok == reg.staticToken) || (reg.ts != nil && reg.ts.grants(tok, repo, action))
		}
	}
	if !ok {
		reg.unauthorized++
		switch {
		case reg.challenge != "":
			w.Header().Set("WWW-Authenticate", reg.challenge)
		case reg.basicUser != "":
			w.Header().Set("WWW-Authenticate", `Basic realm="fake registry"`)
		default:
			realm := reg.realm
			if realm == "" && reg.ts != nil {
				realm = reg.ts.realm()
			}
			scope := "repository:" + repo + ":" + action
			if reg.extraScope != "" {
				scope += " " + reg.extraScope
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="fake-registry",scope=%q`, realm, scope))
		}
		reg.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	reg.bodies = append(reg.bodies, string(body))
	reg.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "ok:"+repo)
}
