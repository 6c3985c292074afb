package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"
)

const (
	// defaultTokenLifetime applies when a token response has no
	// expires_in: the distribution token spec's default.
	defaultTokenLifetime = 60 * time.Second
	// maxTokenLifetime caps what we believe of expires_in, so that a
	// revoked or rotated token is not kept for days; a 401 refreshes it
	// anyway.
	maxTokenLifetime = 24 * time.Hour
	// maxExpiryMargin is how much earlier than its stated expiry a token
	// stops being used, so that it does not expire in flight or through
	// clock skew. Short-lived tokens get a tenth of their lifetime.
	maxExpiryMargin = 10 * time.Second
	// defaultMaxEntries bounds each map of the cache; an operator talking
	// to many repositories must not grow it without end.
	defaultMaxEntries = 1024
)

const (
	schemeBasic  = "basic"
	schemeBearer = "bearer"
)

// TokenCache remembers, per registry host, which auth scheme the registry
// uses and its bearer challenge, and caches bearer tokens until they expire.
// It is safe for concurrent use and meant to be shared by many Clients:
// tokens are keyed by registry host, token realm and service, a keyed hash
// of the credential (never the secret itself) and the sorted scope set, so
// clients with different credentials never see each other's tokens.
// Concurrent fetches of the same token are made once.
type TokenCache struct {
	mu         sync.Mutex
	now        func() time.Time
	hashKey    []byte
	maxEntries int
	hosts      map[string]hostInfo
	tokens     map[tokenKey]tokenEntry
	aliases    map[aliasKey]string
	inflight   map[tokenKey]*fetchCall
}

// hostInfo is what a registry's last challenge told us.
type hostInfo struct {
	scheme  string // schemeBasic or schemeBearer
	realm   string
	service string
}

type tokenKey struct {
	host    string
	cred    string // credential identity, see credentialID
	realm   string
	service string
	scopes  string // space-joined CleanScopes result
}

type tokenEntry struct {
	token   string
	expires time.Time
}

// aliasKey maps the scopes a caller hinted to the scope set the token was
// last fetched for (hints merged with the registry's challenge), so that
// the next request with the same hints finds the token up front even when
// the registry adds scopes of its own.
type aliasKey struct {
	host  string
	cred  string
	hints string
}

type fetchCall struct {
	done  chan struct{}
	ctx   context.Context
	token string
	err   error
}

// NewTokenCache returns an empty cache using the system clock.
func NewTokenCache() *TokenCache {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("auth: reading random bytes: " + err.Error()) // crypto/rand does not fail on supported platforms
	}
	return &TokenCache{
		now:        time.Now,
		hashKey:    key,
		maxEntries: defaultMaxEntries,
		hosts:      map[string]hostInfo{},
		tokens:     map[tokenKey]tokenEntry{},
		aliases:    map[aliasKey]string{},
		inflight:   map[tokenKey]*fetchCall{},
	}
}

// SetClock replaces the clock used for token expiry; nil restores the
// system clock. For tests.
func (c *TokenCache) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	c.mu.Lock()
	c.now = now
	c.mu.Unlock()
}

// Len returns the number of cached tokens, expired ones included until
// they are pruned.
func (c *TokenCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tokens)
}

// credentialID identifies a credential in cache keys: an HMAC with a
// per-cache random key, so that a key that ends up in a dump or log
// reveals nothing and cannot be brute-forced offline.
func (c *TokenCache) credentialID(cred Credential) string {
	if cred.IsEmpty() {
		return "anonymous"
	}
	m := hmac.New(sha256.New, c.hashKey)
	for _, f := range []string{cred.Username, cred.Password, cred.IdentityToken, cred.RegistryToken} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		m.Write(n[:])
		m.Write([]byte(f))
	}
	return hex.EncodeToString(m.Sum(nil)[:16])
}

func (c *TokenCache) host(host string) (hostInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	info, ok := c.hosts[host]
	return info, ok
}

func (c *TokenCache) setHost(host string, info hostInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.hosts[host]; !ok && len(c.hosts) >= c.maxEntries {
		clear(c.hosts) // rare; costs one extra 401 per host
	}
	c.hosts[host] = info
}

func (c *TokenCache) alias(host, cred, hints string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.aliases[aliasKey{host, cred, hints}]
	return s, ok
}

func (c *TokenCache) setAlias(host, cred, hints, scopes string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := aliasKey{host, cred, hints}
	if _, ok := c.aliases[k]; !ok && len(c.aliases) >= c.maxEntries {
		clear(c.aliases)
	}
	c.aliases[k] = scopes
}

// token returns an unexpired token for k.
func (c *TokenCache) token(k tokenKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tokenLocked(k)
}

func (c *TokenCache) tokenLocked(k tokenKey) (string, bool) {
	e, ok := c.tokens[k]
	if !ok {
		return "", false
	}
	if !c.now().Before(e.expires) {
		delete(c.tokens, k)
		return "", false
	}
	return e.token, true
}

// invalidate drops token for host and credential under every scope set,
// after the registry rejected it.
func (c *TokenCache) invalidate(host, cred, token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.tokens {
		if k.host == host && k.cred == cred && e.token == token {
			delete(c.tokens, k)
		}
	}
}

// tokenFetcher fetches a token and says how long it lives (0: unknown).
type tokenFetcher func(ctx context.Context) (token string, lifetime time.Duration, err error)

// getOrFetch returns a cached token for k unless it equals avoid (the one
// the registry just rejected); otherwise it fetches one, sharing the fetch
// with concurrent callers for the same key. fetched reports whether the
// token did not come from the cache before this call started waiting, i.e.
// whether it is as fresh as can be.
func (c *TokenCache) getOrFetch(ctx context.Context, k tokenKey, avoid string, fetch tokenFetcher) (token string, fetched bool, err error) {
	for {
		c.mu.Lock()
		if tok, ok := c.tokenLocked(k); ok && tok != avoid {
			c.mu.Unlock()
			return tok, avoid != "", nil
		}
		if call, ok := c.inflight[k]; ok {
			c.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return "", false, ctx.Err()
			}
			if call.err != nil && call.ctx.Err() != nil && ctx.Err() == nil {
				continue // the leader gave up (its context ended), not the token server: try ourselves
			}
			return call.token, true, call.err
		}
		call := &fetchCall{done: make(chan struct{}), ctx: ctx}
		c.inflight[k] = call
		start := c.now()
		c.mu.Unlock()

		tok, life, err := fetch(ctx)

		c.mu.Lock()
		delete(c.inflight, k)
		if err == nil {
			c.storeLocked(k, tok, start, life)
		}
		call.token, call.err = tok, err
		c.mu.Unlock()
		close(call.done)
		return tok, true, err
	}
}

// storeLocked caches a token fetched at start. Expiry counts from when the
// request was sent, not from the server's issued_at: that is never later
// than the real issue time and does not depend on the server's clock.
func (c *TokenCache) storeLocked(k tokenKey, token string, start time.Time, life time.Duration) {
	if life <= 0 {
		life = defaultTokenLifetime
	}
	life = min(life, maxTokenLifetime)
	expires := start.Add(life - min(maxExpiryMargin, life/10))
	if _, ok := c.tokens[k]; !ok && len(c.tokens) >= c.maxEntries {
		c.pruneLocked()
	}
	c.tokens[k] = tokenEntry{token: token, expires: expires}
}

// pruneLocked drops expired tokens and, if the cache is still full, the one
// closest to expiry.
func (c *TokenCache) pruneLocked() {
	now := c.now()
	var oldest tokenKey
	var oldestExp time.Time
	for k, e := range c.tokens {
		if !now.Before(e.expires) {
			delete(c.tokens, k)
			continue
		}
		if oldestExp.IsZero() || e.expires.Before(oldestExp) {
			oldest, oldestExp = k, e.expires
		}
	}
	if len(c.tokens) >= c.maxEntries {
		delete(c.tokens, oldest)
	}
}
