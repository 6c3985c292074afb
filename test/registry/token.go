package registrytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// User is an account known to the registry (htpasswd mode) or to the token
// issuer (token mode).
type User struct {
	Name     string
	Password string
	// Actions are what the token issuer grants this user on any
	// repository, e.g. {"pull"} for a read-only user; nil grants pull and
	// push. htpasswd mode has no per-user rights: every user can do all.
	Actions []string
}

// TokenOptions configures a TokenIssuer.
type TokenOptions struct {
	Users []User
	// AllowAnonymous lets requests without credentials get a token granting
	// AnonymousActions; when false such requests get 401 (login required).
	AllowAnonymous   bool
	AnonymousActions []string
	// PKI serves the issuer over HTTPS with PKI's server certificate; nil
	// serves plain HTTP.
	PKI *PKI
	// Service is the audience the registry expects; empty means
	// DefaultService.
	Service string
	// ExpiresIn is the token lifetime; zero means five minutes.
	ExpiresIn time.Duration
}

// Defaults of the token issuer.
const (
	DefaultService = "ocisync-test-registry"
	tokenIssuerID  = "ocisync-test-token-issuer"
)

// TokenRequest records one request the issuer answered.
type TokenRequest struct {
	Method    string   // GET (distribution token flow) or POST (OAuth2)
	GrantType string   // "" for GET, else the OAuth2 grant_type
	User      string   // authenticated user, "" when anonymous or refused
	Scopes    []string // requested scopes, as sent
	Status    int      // HTTP status the issuer answered
}

// TokenIssuer is a small authorization server implementing the distribution
// token flow (GET realm?service=&scope= with optional Basic auth) and the
// OAuth2 POST flow (password and refresh_token grants). It signs ES256 JWTs
// with a key identified by "kid", which the registry trusts through the
// JWKS file.
type TokenIssuer struct {
	// Realm is the URL clients are sent to by the registry's challenge.
	Realm string
	// Service is the token audience; Issuer the "iss" claim.
	Service, Issuer string
	// JWKSFile holds the public signing key for the registry's config.
	JWKSFile string

	opts    TokenOptions
	users   map[string]User
	refresh map[string]string // refresh token -> user name
	key     *ecdsa.PrivateKey
	kid     string

	mu       sync.Mutex
	requests []TokenRequest
}

// NewTokenIssuer starts a token issuer on 127.0.0.1 and stops it in
// t.Cleanup.
func NewTokenIssuer(t T, opts TokenOptions) *TokenIssuer {
	t.Helper()
	if opts.Service == "" {
		opts.Service = DefaultService
	}
	if opts.ExpiresIn == 0 {
		opts.ExpiresIn = 5 * time.Minute
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate token signing key: %v", err)
	}
	ti := &TokenIssuer{
		Service: opts.Service,
		Issuer:  tokenIssuerID,
		opts:    opts,
		users:   map[string]User{},
		refresh: map[string]string{},
		key:     key,
		kid:     "ocisync-test-" + randomHex(t, 8),
	}
	for _, u := range opts.Users {
		ti.users[u.Name] = u
		ti.refresh["refresh-"+randomHex(t, 16)] = u.Name
	}

	dir := t.TempDir()
	ti.JWKSFile = filepath.Join(dir, "jwks.json")
	jwk, err := ti.publicJWK()
	if err != nil {
		t.Fatalf("encode token signing key: %v", err)
	}
	jwks, err := json.Marshal(map[string]any{"keys": []any{jwk}})
	if err != nil {
		t.Fatalf("encode JWKS: %v", err)
	}
	if err := os.WriteFile(ti.JWKSFile, jwks, 0o600); err != nil {
		t.Fatalf("write %s: %v", ti.JWKSFile, err)
	}

	srv := httptest.NewUnstartedServer(http.HandlerFunc(ti.serveHTTP))
	if opts.PKI != nil {
		srv.TLS = opts.PKI.ServerConfig()
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	ti.Realm = srv.URL + "/token"
	return ti
}

// RefreshToken returns the identity token (OAuth2 refresh token) the
// issuer accepts for user, as docker stores in "identitytoken".
func (ti *TokenIssuer) RefreshToken(user string) string {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.refreshTokenLocked(user)
}

func (ti *TokenIssuer) refreshTokenLocked(user string) string {
	for tok, name := range ti.refresh {
		if name == user {
			return tok
		}
	}
	return ""
}

// Requests returns a copy of every request answered so far.
func (ti *TokenIssuer) Requests() []TokenRequest {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return slices.Clone(ti.requests)
}

// Count returns how many token requests were answered so far, granted or
// not.
func (ti *TokenIssuer) Count() int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return len(ti.requests)
}

// Mint signs a token for user (empty for anonymous) granting exactly the
// given scopes ("repository:name:pull,push"), bypassing the user's rights.
// Tests use it to talk to the registry directly.
func (ti *TokenIssuer) Mint(t T, user string, scopes ...string) string {
	t.Helper()
	tok, err := ti.sign(user, parseScopes(scopes, func(string) []string { return []string{"*"} }))
	if err != nil {
		t.Fatalf("sign test token: %v", err)
	}
	return tok
}

func (ti *TokenIssuer) record(r TokenRequest) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.requests = append(ti.requests, r)
}

func (ti *TokenIssuer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		ti.serveGet(w, r)
	case http.MethodPost:
		ti.servePost(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		ti.fail(w, TokenRequest{Method: r.Method}, http.StatusMethodNotAllowed, "unsupported", "use GET or POST")
	}
}

// serveGet is the distribution token flow.
func (ti *TokenIssuer) serveGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rec := TokenRequest{Method: http.MethodGet, Scopes: q["scope"]}
	if q.Get("service") != ti.Service {
		ti.fail(w, rec, http.StatusBadRequest, "invalid_request", "unknown service")
		return
	}
	name, pass, hasBasic := r.BasicAuth()
	var actions []string
	switch {
	case hasBasic:
		u, ok := ti.checkPassword(name, pass)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="ocisync-test"`)
			ti.fail(w, rec, http.StatusUnauthorized, "UNAUTHORIZED", "invalid username or password")
			return
		}
		rec.User, actions = u.Name, u.actions()
	case ti.opts.AllowAnonymous:
		actions = ti.opts.AnonymousActions
	default:
		w.Header().Set("WWW-Authenticate", `Basic realm="ocisync-test"`)
		ti.fail(w, rec, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	var scopes []string
	for _, s := range q["scope"] {
		scopes = append(scopes, strings.Fields(s)...)
	}
	tok, err := ti.sign(rec.User, parseScopes(scopes, func(string) []string { return actions }))
	if err != nil {
		ti.fail(w, rec, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	rec.Status = http.StatusOK
	ti.record(rec)
	writeJSON(w, http.StatusOK, map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(ti.opts.ExpiresIn.Seconds()),
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	})
}

// servePost is the OAuth2 flow docker uses with identity tokens.
func (ti *TokenIssuer) servePost(w http.ResponseWriter, r *http.Request) {
	rec := TokenRequest{Method: http.MethodPost}
	if err := r.ParseForm(); err != nil {
		ti.fail(w, rec, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	rec.GrantType = r.PostForm.Get("grant_type")
	if s := r.PostForm.Get("scope"); s != "" {
		rec.Scopes = []string{s}
	}
	if r.PostForm.Get("service") != ti.Service {
		ti.fail(w, rec, http.StatusBadRequest, "invalid_request", "unknown service")
		return
	}
	var u User
	switch rec.GrantType {
	case "password":
		var ok bool
		u, ok = ti.checkPassword(r.PostForm.Get("username"), r.PostForm.Get("password"))
		if !ok {
			ti.fail(w, rec, http.StatusUnauthorized, "invalid_grant", "invalid username or password")
			return
		}
	case "refresh_token":
		ti.mu.Lock()
		name, ok := ti.refresh[r.PostForm.Get("refresh_token")]
		ti.mu.Unlock()
		if !ok {
			ti.fail(w, rec, http.StatusUnauthorized, "invalid_grant", "unknown refresh token")
			return
		}
		ti.mu.Lock()
		u = ti.users[name]
		ti.mu.Unlock()
	default:
		ti.fail(w, rec, http.StatusBadRequest, "unsupported_grant_type", "use password or refresh_token")
		return
	}
	rec.User = u.Name
	actions := u.actions()
	tok, err := ti.sign(u.Name, parseScopes(strings.Fields(r.PostForm.Get("scope")), func(string) []string { return actions }))
	if err != nil {
		ti.fail(w, rec, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	rec.Status = http.StatusOK
	ti.record(rec)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  tok,
		"refresh_token": ti.RefreshToken(u.Name),
		"expires_in":    int(ti.opts.ExpiresIn.Seconds()),
		"scope":         r.PostForm.Get("scope"),
	})
}

// SetPassword makes password the only one the issuer accepts for user,
// adding the user (with pull and push) if unknown: a test of credentials
// that a cloud hands out and rotates accepts only the newest one.
func (ti *TokenIssuer) SetPassword(user, password string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	u := ti.users[user]
	u.Name, u.Password = user, password
	ti.users[user] = u
}

// SetRefreshToken makes token the only refresh token (identity token)
// the issuer accepts for user, adding the user (with pull and push) if
// unknown: a test of refresh tokens that a cloud hands out (the ACR
// exchange) accepts only the newest one.
func (ti *TokenIssuer) SetRefreshToken(user, token string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	for tok, name := range ti.refresh {
		if name == user {
			delete(ti.refresh, tok)
		}
	}
	ti.refresh[token] = user
	u := ti.users[user]
	u.Name = user
	ti.users[user] = u
}

func (ti *TokenIssuer) checkPassword(name, pass string) (User, bool) {
	ti.mu.Lock()
	u, ok := ti.users[name]
	ti.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(pass)) != 1 {
		return User{}, false
	}
	return u, true
}

func (ti *TokenIssuer) fail(w http.ResponseWriter, rec TokenRequest, status int, code, msg string) {
	rec.Status = status
	ti.record(rec)
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": msg,
		"errors":            []any{map[string]string{"code": code, "message": msg}},
	})
}

func (u User) actions() []string {
	if u.Actions == nil {
		return []string{"pull", "push"}
	}
	return u.Actions
}

// resourceActions is one entry of the "access" claim the registry reads.
type resourceActions struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// parseScopes turns "type:name:a,b" scopes into granted access: the
// requested actions that allowed(name) permits ("*" permits all). Only
// repository scopes are granted; a subset of the request is not an error.
func parseScopes(scopes []string, allowed func(repo string) []string) []resourceActions {
	var out []resourceActions
	for _, s := range scopes {
		typ, rest, ok := strings.Cut(s, ":")
		if !ok || typ != "repository" {
			continue
		}
		i := strings.LastIndex(rest, ":")
		if i < 0 {
			continue
		}
		name, want := rest[:i], strings.Split(rest[i+1:], ",")
		may := allowed(name)
		var granted []string
		for _, a := range want {
			if (slices.Contains(may, a) || slices.Contains(may, "*")) && !slices.Contains(granted, a) {
				granted = append(granted, a)
			}
		}
		if len(granted) > 0 {
			out = append(out, resourceActions{Type: typ, Name: name, Actions: granted})
		}
	}
	return out
}

// sign builds a compact JWS (ES256, "kid" header) with the claims
// distribution's token access controller verifies: iss, aud, exp, nbf
// (both with 60 s leeway), plus sub, iat, jti and access.
func (ti *TokenIssuer) sign(sub string, access []resourceActions) (string, error) {
	now := time.Now()
	if access == nil {
		access = []resourceActions{}
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	header, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": ti.kid})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(map[string]any{
		"iss":    ti.Issuer,
		"sub":    sub,
		"aud":    ti.Service,
		"exp":    now.Add(ti.opts.ExpiresIn).Unix(),
		"nbf":    now.Add(-10 * time.Second).Unix(),
		"iat":    now.Unix(),
		"jti":    hex.EncodeToString(jti),
		"access": access,
	})
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding
	signingInput := b64.EncodeToString(header) + "." + b64.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signingInput))
	r, s, err := ecdsa.Sign(rand.Reader, ti.key, digest[:])
	if err != nil {
		return "", err
	}
	// JWS ES256 signatures are R||S, each left-padded to 32 bytes.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signingInput + "." + b64.EncodeToString(sig), nil
}

func (ti *TokenIssuer) publicJWK() (map[string]string, error) {
	// Uncompressed point: 0x04 || X || Y, 32 bytes each for P-256.
	pt, err := ti.key.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	b64 := base64.RawURLEncoding
	return map[string]string{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": ti.kid,
		"x": b64.EncodeToString(pt[1:33]), "y": b64.EncodeToString(pt[33:65]),
	}, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(t T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("read random bytes: %v", err)
	}
	return hex.EncodeToString(b)
}

// String describes a request without any credential, for test logs.
func (r TokenRequest) String() string {
	return fmt.Sprintf("%s grant=%q user=%q scopes=%q -> %d", r.Method, r.GrantType, r.User, r.Scopes, r.Status)
}
