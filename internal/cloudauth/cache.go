package cloudauth

import (
	"context"
	"sync"
	"time"

	"github.com/ocisync/ocisync/internal/oci/auth"
)

const (
	// maxRenewMargin bounds how long before its expiry a credential is
	// renewed: a fifth of its lifetime, at most this. An ECR token of 12
	// hours is renewed 30 minutes early, an access token of an hour 12
	// minutes early.
	maxRenewMargin = 30 * time.Minute
	// minLifetime is what a credential without a known expiry is kept.
	minLifetime = 5 * time.Minute
	// fetchTimeout bounds one fetch, which runs on after the caller that
	// started it gave up so that the callers waiting with it still get it.
	fetchTimeout = 2 * time.Minute
	// maxEntries bounds the cache; expired entries go first.
	maxEntries = 4096
)

// cached is a credential and when to stop using it.
type cached struct {
	cred    auth.Credential
	renewAt time.Time
}

type call struct {
	done chan struct{}
	cred auth.Credential
	err  error
}

// cache keeps credentials per key until shortly before they expire, and
// makes concurrent fetches of one key once. Errors are not cached: the
// caller's backoff paces retries.
type cache struct {
	now func() time.Time

	mu       sync.Mutex
	entries  map[string]cached
	inflight map[string]*call
}

func newCache(now func() time.Time) *cache {
	if now == nil {
		now = time.Now
	}
	return &cache{now: now, entries: map[string]cached{}, inflight: map[string]*call{}}
}

// fetchFunc returns a credential and its expiry (zero if unknown).
type fetchFunc func(ctx context.Context) (auth.Credential, time.Time, error)

func (c *cache) get(ctx context.Context, key string, fetch fetchFunc) (auth.Credential, error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok && c.now().Before(e.renewAt) {
		c.mu.Unlock()
		return e.cred, nil
	}
	cl, ok := c.inflight[key]
	if !ok {
		cl = &call{done: make(chan struct{})}
		c.inflight[key] = cl
		go c.run(ctx, key, cl, fetch)
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.cred, cl.err
	case <-ctx.Done():
		return auth.Credential{}, ctx.Err()
	}
}

func (c *cache) run(ctx context.Context, key string, cl *call, fetch fetchFunc) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	start := c.now()
	cred, expires, err := fetch(fctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, key)
	cl.cred, cl.err = cred, err
	if err == nil {
		c.storeLocked(key, cred, start, expires)
	}
	close(cl.done)
}

func (c *cache) storeLocked(key string, cred auth.Credential, start, expires time.Time) {
	life := expires.Sub(start)
	if expires.IsZero() {
		life = minLifetime
	}
	margin := min(life/5, maxRenewMargin)
	if len(c.entries) >= maxEntries {
		now := c.now()
		for k, e := range c.entries {
			if !now.Before(e.renewAt) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < maxEntries {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = cached{cred: cred, renewAt: start.Add(life - margin)}
}

// invalidate drops key's credential if it is still failed (or failed is
// empty), so that a credential another caller already renewed stays. It
// reports whether anything was dropped.
func (c *cache) invalidate(key string, failed auth.Credential) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || (!failed.IsEmpty() && e.cred != failed) {
		return false
	}
	delete(c.entries, key)
	return true
}
