package controller

import (
	"sync"
	"time"

	"github.com/ocisync/ocisync/internal/verify"
)

// verifiedCache remembers, for all Artifacts together, the digests that
// verified recently against a given trust material: many Artifacts that
// follow one signed digest with the same keys verify it once, not once
// each (each verification reads the signatures from the registry). Only
// successes are kept: a digest not verified is asked again, since its
// signature may have been pushed since. An Artifact reaches the cache
// only after resolving the digest with its own credentials, so the cache
// never lets an Artifact see what it could not read itself.
type verifiedCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]verifiedEntry
}

type verifiedEntry struct {
	res verify.Result
	at  time.Time
}

// Bounds of the cache: entries are small (a key and who signed), and an
// hour-old verification is asked again.
const (
	verifiedCacheTTL = 10 * time.Minute
	verifiedCacheMax = 4096
)

func newVerifiedCache() *verifiedCache {
	return &verifiedCache{ttl: verifiedCacheTTL, max: verifiedCacheMax, now: time.Now, entries: map[string]verifiedEntry{}}
}

// verifiedKey names a verification: the repository (registry and path),
// the digest and the hash of the trust material and settings.
func verifiedKey(repo, digest, trustHash string) string {
	return repo + "@" + digest + " " + trustHash
}

// get returns the result of a verification still fresh. A nil cache
// holds nothing.
func (c *verifiedCache) get(key string) (verify.Result, bool) {
	if c == nil {
		return verify.Result{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || c.now().Sub(e.at) > c.ttl {
		return verify.Result{}, false
	}
	return e.res, true
}

// put records a successful verification, making room by dropping
// expired entries and then the oldest.
func (c *verifiedCache) put(key string, res verify.Result) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		var oldest string
		var oldestAt time.Time
		for k, e := range c.entries {
			if now.Sub(e.at) > c.ttl {
				delete(c.entries, k)
				continue
			}
			if oldest == "" || e.at.Before(oldestAt) {
				oldest, oldestAt = k, e.at
			}
		}
		if len(c.entries) >= c.max {
			delete(c.entries, oldest)
		}
	}
	c.entries[key] = verifiedEntry{res: res, at: now}
}
