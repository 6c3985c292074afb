package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/ocisync/ocisync/internal/verify"
)

func TestVerifiedCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newVerifiedCache()
	c.now = func() time.Time { return now }
	c.max = 3
	res := verify.Result{Provider: "cosign", Identity: "key cosign.pub"}

	if _, ok := c.get("a"); ok {
		t.Fatal("a hit in an empty cache")
	}
	c.put("a", res)
	if got, ok := c.get("a"); !ok || got != res {
		t.Fatalf("get after put = %+v, %v", got, ok)
	}
	now = now.Add(verifiedCacheTTL + time.Second)
	if _, ok := c.get("a"); ok {
		t.Error("an expired verification was still taken")
	}

	// Full: expired entries go first, then the oldest.
	for i := range 3 {
		now = now.Add(time.Second)
		c.put(fmt.Sprint("k", i), res)
	}
	now = now.Add(time.Second)
	c.put("k3", res)
	if len(c.entries) != 3 {
		t.Errorf("%d entries, want the bound 3", len(c.entries))
	}
	if _, ok := c.get("k0"); ok {
		t.Error("the oldest entry was kept past the bound")
	}
	for _, k := range []string{"k1", "k2", "k3"} {
		if _, ok := c.get(k); !ok {
			t.Errorf("%s was dropped", k)
		}
	}

	var nilCache *verifiedCache
	nilCache.put("x", res)
	if _, ok := nilCache.get("x"); ok {
		t.Error("a nil cache held something")
	}
}

func TestVerifiedKeySeparates(t *testing.T) {
	base := verifiedKey("reg/a", "sha256:1", "sha256:h")
	for _, other := range []string{
		verifiedKey("reg/b", "sha256:1", "sha256:h"),
		verifiedKey("reg/a", "sha256:2", "sha256:h"),
		verifiedKey("reg/a", "sha256:1", "sha256:g"),
		verifiedKey("other/a", "sha256:1", "sha256:h"),
	} {
		if other == base {
			t.Errorf("%q and %q are one key", base, other)
		}
	}
}
