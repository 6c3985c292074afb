package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCredentialID(t *testing.T) {
	c := NewTokenCache()
	a := Credential{Username: "u", Password: "SECRET-pw"}
	b := Credential{Username: "u", Password: "SECRET-pw2"}
	// Field boundaries matter: these must not collide.
	x := Credential{Username: "ab", Password: "c"}
	y := Credential{Username: "a", Password: "bc"}
	ids := map[string]string{}
	for name, cred := range map[string]Credential{"a": a, "b": b, "x": x, "y": y, "anon": {}} {
		id := c.credentialID(cred)
		if strings.Contains(id, "SECRET") {
			t.Fatalf("id %q contains the secret", id)
		}
		if prev, dup := ids[id]; dup {
			t.Fatalf("credentials %s and %s share id %q", prev, name, id)
		}
		ids[id] = name
	}
	if first, second := c.credentialID(a), c.credentialID(a); first != second {
		t.Fatal("id not deterministic within a cache")
	}
	if NewTokenCache().credentialID(a) == c.credentialID(a) {
		t.Fatal("ids are the same across caches: the key is not random")
	}
}

func TestGetOrFetchSharesAndSurvivesLeaderCancel(t *testing.T) {
	c := NewTokenCache()
	k := tokenKey{host: "h", cred: "anonymous", scopes: "s"}
	var calls atomic.Int32
	leaderStarted := make(chan struct{})
	leaderCtx, cancelLeader := context.WithCancel(context.Background())

	leaderDone := make(chan error, 1)
	go func() {
		_, _, err := c.getOrFetch(leaderCtx, k, "", func(ctx context.Context) (string, time.Duration, error) {
			calls.Add(1)
			close(leaderStarted)
			<-ctx.Done()
			return "", 0, ctx.Err()
		})
		leaderDone <- err
	}()
	<-leaderStarted

	waiterDone := make(chan string, 1)
	go func() {
		tok, _, err := c.getOrFetch(context.Background(), k, "", func(ctx context.Context) (string, time.Duration, error) {
			calls.Add(1)
			return "waiter-token", time.Minute, nil
		})
		if err != nil {
			tok = "error: " + err.Error()
		}
		waiterDone <- tok
	}()
	// Give the waiter time to join the in-flight fetch, then cancel the leader.
	time.Sleep(50 * time.Millisecond)
	cancelLeader()
	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader err = %v", err)
	}
	if tok := <-waiterDone; tok != "waiter-token" {
		t.Fatalf("waiter got %q, want its own fetch after the leader gave up", tok)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("fetch calls = %d, want 2", n)
	}
	if tok, ok := c.token(k); !ok || tok != "waiter-token" {
		t.Fatalf("cached %q %v", tok, ok)
	}
}

func TestGetOrFetchAvoidsRejectedToken(t *testing.T) {
	c := NewTokenCache()
	k := tokenKey{host: "h", cred: "anonymous", scopes: "s"}
	fetch := func(tok string) tokenFetcher {
		return func(context.Context) (string, time.Duration, error) { return tok, time.Minute, nil }
	}
	if tok, fetched, _ := c.getOrFetch(context.Background(), k, "", fetch("t1")); tok != "t1" || !fetched {
		t.Fatalf("first: %q %v", tok, fetched)
	}
	if tok, fetched, _ := c.getOrFetch(context.Background(), k, "", fetch("t2")); tok != "t1" || fetched {
		t.Fatalf("cached: %q %v; want t1 from the cache", tok, fetched)
	}
	if tok, fetched, _ := c.getOrFetch(context.Background(), k, "t1", fetch("t3")); tok != "t3" || !fetched {
		t.Fatalf("avoiding t1: %q %v; want a fresh t3", tok, fetched)
	}
	// A failed fetch caches nothing.
	k2 := tokenKey{host: "h2"}
	boom := errors.New("boom")
	if _, _, err := c.getOrFetch(context.Background(), k2, "", func(context.Context) (string, time.Duration, error) { return "", 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if _, ok := c.token(k2); ok {
		t.Fatal("failed fetch was cached")
	}
}

func TestCachePrune(t *testing.T) {
	clock := newFakeClock()
	c := NewTokenCache()
	c.SetClock(clock.Now)
	c.maxEntries = 4
	for i := 0; i < 10; i++ {
		k := tokenKey{host: fmt.Sprint("h", i)}
		life := time.Duration(i+1) * time.Minute
		_, _, _ = c.getOrFetch(context.Background(), k, "", func(context.Context) (string, time.Duration, error) { return fmt.Sprint("t", i), life, nil })
		if n := c.Len(); n > 4 {
			t.Fatalf("after %d inserts the cache holds %d tokens, max 4", i+1, n)
		}
	}
	// The longest-lived tokens survive.
	if _, ok := c.token(tokenKey{host: "h9"}); !ok {
		t.Fatal("newest token was pruned")
	}
	if _, ok := c.token(tokenKey{host: "h0"}); ok {
		t.Fatal("shortest-lived token survived")
	}
	clock.Advance(time.Hour)
	if _, ok := c.token(tokenKey{host: "h9"}); ok {
		t.Fatal("token survived its expiry")
	}
}

func TestParseExpiresIn(t *testing.T) {
	tests := map[string]time.Duration{
		``: 0, `300`: 300 * time.Second, `"300"`: 300 * time.Second, `1.5`: 1500 * time.Millisecond,
		`-5`: 0, `"soon"`: 0, `null`: 0, `1e30`: maxTokenLifetime, `NaN`: 0,
	}
	for in, want := range tests {
		if got := parseExpiresIn([]byte(in)); got != want {
			t.Errorf("parseExpiresIn(%s) = %v, want %v", in, got, want)
		}
	}
}
