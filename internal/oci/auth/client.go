package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ocisync/ocisync/internal/oci/errdef"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

// DefaultClientID is the OAuth2 client_id sent when Client.ClientID is empty.
const DefaultClientID = "ocisync"

// Client sends registry requests with authentication. It is safe for
// concurrent use; do not change its fields once it is in use.
type Client struct {
	// HTTP is the underlying client (the transport package adds retries
	// and a redirect policy); nil means http.DefaultClient.
	HTTP *http.Client
	// Credential looks up the credential for a registry host; nil means
	// anonymous.
	Credential CredentialFunc
	// Cache is shared between clients; nil gives this client a private one.
	Cache *TokenCache
	// UserAgent is set on requests that have none, and on token requests.
	UserAgent string
	// ClientID is the OAuth2 client_id; empty means DefaultClientID.
	ClientID string

	once    sync.Once
	private *TokenCache
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) cache() *TokenCache {
	if c.Cache != nil {
		return c.Cache
	}
	c.once.Do(func() { c.private = NewTokenCache() })
	return c.private
}

func (c *Client) clientID() string {
	if c.ClientID != "" {
		return c.ClientID
	}
	return DefaultClientID
}

// maxAttempts bounds the sends of one Do: anonymous (or with a cached
// token), then with a cached token, then with a freshly fetched one.
const maxAttempts = 3

// authKind says what authorization a request carried.
type authKind int

const (
	authNone authKind = iota
	authBasic
	authRegistryToken
	authBearer
)

// sentAuth is the authorization one attempt carried.
type sentAuth struct {
	kind  authKind
	token string // the bearer token, for authBearer
	fresh bool   // the bearer token was fetched for this Do (or just now by another one)
}

func (a sentAuth) header(cred Credential) string {
	switch a.kind {
	case authBasic:
		r := http.Request{Header: http.Header{}}
		r.SetBasicAuth(cred.Username, cred.Password)
		return r.Header.Get("Authorization")
	case authRegistryToken:
		return "Bearer " + cred.RegistryToken
	case authBearer:
		return "Bearer " + a.token
	}
	return ""
}

// request is the state of one Do.
type request struct {
	req        *http.Request
	host       string // lowercased req.URL.Host: the cache key
	cred       Credential
	credID     string
	hints      []string // scope hints from the context
	hintKey    string
	cache      *TokenCache
	replayable bool
}

// Do sends req with authentication and returns the registry's response.
//
// When the cache knows the host uses Basic, or holds a valid bearer token
// for the request's scope hints (see WithScopes), the authorization is
// sent up front; when the host's token has expired, a new one is fetched
// before the request. On a 401 the WWW-Authenticate challenge decides:
// Basic is answered with the username and password; Bearer with a token
// for the challenge's scopes plus the hints, fetched from the challenge's
// realm (or the credential's RegistryToken). The request is then retried
// once. A cached token the registry rejects is dropped and replaced by a
// freshly fetched one once. When nothing more can be tried (no credential
// for Basic, a fresh token rejected, an unknown scheme, a body that cannot
// be replayed because req.GetBody is nil), the 401 response is returned
// as is for the caller to report.
//
// A request that already has an Authorization header is sent unchanged.
// Authorization set here is removed from redirects that leave the
// registry's origin. Errors from token servers wrap errdef.ErrUnauthorized
// (401, unusable responses) or errdef.ErrDenied (403), name the realm
// without its query string and never contain a secret.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		return nil, errors.New("auth: request has no URL")
	}
	if req.Header.Get("Authorization") != "" {
		return c.send(req, req.Body, "")
	}
	ctx := req.Context()
	r := &request{
		req:        req,
		host:       strings.ToLower(req.URL.Host),
		cache:      c.cache(),
		replayable: req.Body == nil || req.Body == http.NoBody || req.GetBody != nil,
	}
	if c.Credential != nil {
		cred, err := c.Credential(ctx, req.URL.Host)
		if err != nil {
			return nil, fmt.Errorf("looking up credentials for %s: %w", req.URL.Host, err)
		}
		r.cred = cred
	}
	r.credID = r.cache.credentialID(r.cred)
	r.hints = ScopesForHost(ctx, req.URL.Host)
	r.hintKey = strings.Join(r.hints, " ")

	sent, err := c.upfront(r)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req, req.Body, sent.header(r.cred))
	if err != nil {
		return nil, err
	}
	for attempt := 1; attempt < maxAttempts; attempt++ {
		if resp.StatusCode != http.StatusUnauthorized || !r.replayable {
			return resp, nil
		}
		// A 401 from another origin (after a redirect) is not a challenge
		// to answer with this registry's credentials.
		if resp.Request != nil && resp.Request.URL != nil && !transport.SameOrigin(resp.Request.URL, req.URL) {
			return resp, nil
		}
		next, giveUp, err := c.answer(r, resp, sent)
		if err != nil {
			drain(resp.Body)
			return nil, err
		}
		if giveUp {
			return resp, nil
		}
		drain(resp.Body)
		body := req.Body
		if req.GetBody != nil && body != nil && body != http.NoBody {
			if body, err = req.GetBody(); err != nil {
				return nil, fmt.Errorf("replaying the body of %s %s: %w", req.Method, errdef.RedactURL(req.URL.String()), err)
			}
		}
		if resp, err = c.send(req, body, next.header(r.cred)); err != nil {
			return nil, err
		}
		sent = next
	}
	return resp, nil
}

// upfront chooses the authorization to send before any challenge, from
// what the cache knows about the host.
func (c *Client) upfront(r *request) (sentAuth, error) {
	info, ok := r.cache.host(r.host)
	if !ok {
		return sentAuth{}, nil
	}
	switch info.scheme {
	case schemeBasic:
		if r.cred.hasBasic() {
			return sentAuth{kind: authBasic}, nil
		}
	case schemeBearer:
		if r.cred.RegistryToken != "" {
			return sentAuth{kind: authRegistryToken}, nil
		}
		if r.hintKey == "" {
			// Without hints we cannot know the scope this request needs.
			return sentAuth{}, nil
		}
		scopes := r.hintKey
		if s, ok := r.cache.alias(r.host, r.credID, r.hintKey); ok {
			scopes = s
		}
		key := tokenKey{host: r.host, cred: r.credID, realm: info.realm, service: info.service, scopes: scopes}
		if tok, ok := r.cache.token(key); ok {
			return sentAuth{kind: authBearer, token: tok}, nil
		}
		// The token expired or was never fetched for these hints: fetch it
		// now with the challenge we saw before and save a 401 round trip.
		realm, err := validateRealm(info.realm, r.req.URL)
		if err != nil {
			return sentAuth{}, nil // let the registry challenge again; answer() reports it
		}
		tr := &tokenRequest{registry: r.host, realm: realm, service: info.service, scopes: strings.Fields(scopes), cred: r.cred}
		tok, _, err := r.cache.getOrFetch(r.req.Context(), key, "", func(ctx context.Context) (string, time.Duration, error) {
			return c.fetchToken(ctx, tr)
		})
		if err != nil {
			return sentAuth{}, err
		}
		// Not marked fresh: it was fetched for the hints only, and the
		// registry may want more; a 401 gets one refetch with its scopes.
		return sentAuth{kind: authBearer, token: tok}, nil
	}
	return sentAuth{}, nil
}

// answer decides how to retry after a 401. giveUp means the 401 is final.
func (c *Client) answer(r *request, resp *http.Response, sent sentAuth) (next sentAuth, giveUp bool, err error) {
	header := strings.Join(resp.Header.Values("Www-Authenticate"), ", ")
	if strings.TrimSpace(header) == "" {
		return sentAuth{}, true, nil
	}
	challenges, err := ParseChallenges(header)
	if err != nil {
		return sentAuth{}, false, fmt.Errorf("registry %s answered %s %s with 401 and a WWW-Authenticate header that cannot be parsed (%v): %w",
			r.host, r.req.Method, errdef.RedactURL(r.req.URL.String()), err, errdef.ErrUnauthorized)
	}
	var basic, bearer *Challenge
	for i := range challenges {
		switch challenges[i].Scheme {
		case schemeBasic:
			if basic == nil {
				basic = &challenges[i]
			}
		case schemeBearer:
			if bearer == nil {
				bearer = &challenges[i]
			}
		}
	}
	switch {
	case bearer != nil:
		return c.answerBearer(r, bearer, sent)
	case basic != nil:
		if sent.kind == authBasic || !r.cred.hasBasic() {
			return sentAuth{}, true, nil
		}
		r.cache.setHost(r.host, hostInfo{scheme: schemeBasic})
		return sentAuth{kind: authBasic}, false, nil
	}
	return sentAuth{}, true, nil // only schemes we do not speak
}

func (c *Client) answerBearer(r *request, ch *Challenge, sent sentAuth) (sentAuth, bool, error) {
	realmStr := ch.Params["realm"]
	if realmStr == "" {
		return sentAuth{}, false, fmt.Errorf("registry %s sent a Bearer challenge without a realm, so there is no token server to ask: %w",
			r.host, errdef.ErrUnauthorized)
	}
	realm, err := validateRealm(realmStr, r.req.URL)
	if err != nil {
		return sentAuth{}, false, err
	}
	service := ch.Params["service"]
	r.cache.setHost(r.host, hostInfo{scheme: schemeBearer, realm: realmStr, service: service})

	if r.cred.RegistryToken != "" {
		if sent.kind == authRegistryToken {
			return sentAuth{}, true, nil
		}
		return sentAuth{kind: authRegistryToken}, false, nil
	}

	scopes := CleanScopes(append(strings.Fields(ch.Params["scope"]), r.hints...))
	key := tokenKey{host: r.host, cred: r.credID, realm: realmStr, service: service, scopes: strings.Join(scopes, " ")}
	avoid := ""
	if sent.kind == authBearer {
		if sent.fresh {
			return sentAuth{}, true, nil // a token fetched for this request was rejected: stop
		}
		r.cache.invalidate(r.host, r.credID, sent.token)
		avoid = sent.token
	}
	tr := &tokenRequest{registry: r.host, realm: realm, service: service, scopes: scopes, cred: r.cred}
	tok, fresh, err := r.cache.getOrFetch(r.req.Context(), key, avoid, func(ctx context.Context) (string, time.Duration, error) {
		return c.fetchToken(ctx, tr)
	})
	if err != nil {
		return sentAuth{}, false, err
	}
	if r.hintKey != "" && r.hintKey != key.scopes {
		r.cache.setAlias(r.host, r.credID, r.hintKey, key.scopes)
	}
	return sentAuth{kind: authBearer, token: tok, fresh: fresh}, false, nil
}

// send makes one attempt. The request is cloned so that the caller's is
// never modified; Authorization set here is stripped from redirects that
// leave the request's origin.
func (c *Client) send(req *http.Request, body io.ReadCloser, authorization string) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.Body = body
	if authorization != "" {
		out.Header.Set("Authorization", authorization)
	}
	if c.UserAgent != "" && out.Header.Get("User-Agent") == "" {
		out.Header.Set("User-Agent", c.UserAgent)
	}
	hc := c.httpClient()
	if authorization != "" {
		hc = guardRedirects(hc, out.URL)
	}
	resp, err := hc.Do(out)
	if err != nil {
		return nil, stripURLError(err)
	}
	return resp, nil
}

// guardRedirects returns a copy of hc whose redirect policy removes
// Authorization once a redirect chain leaves origin (scheme, host or
// port), then applies hc's own policy. net/http keeps the header across a
// port or scheme change and into subdomains; registries redirect blob
// downloads to storage hosts that must never see registry credentials.
func guardRedirects(hc *http.Client, origin *url.URL) *http.Client {
	cp := *hc
	prev := hc.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		crossed := !transport.SameOrigin(req.URL, origin)
		for _, hop := range via {
			crossed = crossed || !transport.SameOrigin(hop.URL, origin)
		}
		if crossed {
			req.Header.Del("Authorization")
		}
		if prev != nil {
			return prev(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cp
}
