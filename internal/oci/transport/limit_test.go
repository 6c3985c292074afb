package transport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock whose Sleep records the wait and moves time on.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// roundTripFunc answers requests without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func answer(req *http.Request, code int, header http.Header, body io.ReadCloser) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	if body == nil {
		body = http.NoBody
	}
	return &http.Response{StatusCode: code, Header: header, Body: body, Request: req}
}

func send(t *testing.T, rt http.RoundTripper, ctx context.Context, method, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt.RoundTrip(req)
}

// endCounter calls onEnd once, at EOF or at Close, whichever comes first:
// when Limit frees the request's slot. (Counting at Close alone would see
// the next request enter while this body, read to its end, is not closed
// yet.)
type endCounter struct {
	io.Reader
	once  sync.Once
	onEnd func()
}

func (c *endCounter) Read(p []byte) (int, error) {
	n, err := c.Reader.Read(p)
	if err == io.EOF {
		c.once.Do(c.onEnd)
	}
	return n, err
}

func (c *endCounter) Close() error { c.once.Do(c.onEnd); return nil }

func TestLimitNeverExceedsMaxInFlight(t *testing.T) {
	const limit, requests = 3, 24
	var cur, peak atomic.Int64
	entered := make(chan struct{})
	gate := make(chan struct{})
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		entered <- struct{}{}
		<-gate
		return answer(req, http.StatusOK, nil, &endCounter{Reader: strings.NewReader("blob"), onEnd: func() { cur.Add(-1) }}), nil
	})
	rt := &Limit{Base: base, Hosts: &Hosts{MaxInFlight: limit}}

	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for range requests {
		wg.Go(func() {
			resp, err := send(t, rt, t.Context(), http.MethodGet, "https://registry.example/v2/a/blobs/x")
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		})
	}
	// Let one request at a time through the base; every other request
	// that got a slot is counted in cur meanwhile.
	for range requests {
		<-entered
		gate <- struct{}{}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request failed: %v", err)
	}
	if got := peak.Load(); got > limit {
		t.Errorf("%d requests were in flight at once; the limit is %d", got, limit)
	}
	if cur.Load() != 0 {
		t.Errorf("%d bodies left open", cur.Load())
	}
}

func TestLimitHoldsBackTheRequestOverTheLimit(t *testing.T) {
	const limit = 3
	rt := &Limit{Base: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return answer(req, http.StatusOK, nil, io.NopCloser(strings.NewReader("x"))), nil
	}), Hosts: &Hosts{MaxInFlight: limit}}
	// A request with a cancelled context fails if, and only if, it has
	// to wait for a slot.
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	const url = "https://registry.example/v2/r/blobs/x"
	var held []*http.Response
	for i := range limit {
		resp, err := send(t, rt, cancelled, http.MethodGet, url)
		if err != nil {
			t.Fatalf("request %d of %d: %v", i+1, limit, err)
		}
		held = append(held, resp)
	}
	if _, err := send(t, rt, cancelled, http.MethodGet, url); !errors.Is(err, context.Canceled) {
		t.Fatalf("request %d with %d bodies open: error %v; want it held back until its context ended", limit+1, limit, err)
	}
	_ = held[0].Body.Close()
	resp, err := send(t, rt, cancelled, http.MethodGet, url)
	if err != nil {
		t.Fatalf("request once a body was closed: %v", err)
	}
	_ = resp.Body.Close()
	for _, r := range held[1:] {
		_ = r.Body.Close()
	}
}

func TestLimitIsPerRegistry(t *testing.T) {
	hosts := &Hosts{MaxInFlight: 1}
	rt := &Limit{Base: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return answer(req, http.StatusOK, nil, io.NopCloser(strings.NewReader("x"))), nil
	}), Hosts: hosts}
	held, err := send(t, rt, t.Context(), http.MethodGet, "https://a.example/v2/r/blobs/x")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Body.Close()
	// With a.example's only slot held (its body open), other origins are
	// free: another host, and the same host over plain HTTP.
	for _, url := range []string{"https://b.example/v2/r/blobs/x", "http://a.example/v2/r/blobs/x"} {
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // a request that had to wait for a slot would fail
		resp, err := send(t, rt, ctx, http.MethodGet, url)
		if err != nil {
			t.Fatalf("GET %s while a.example's slot is held: %v", url, err)
		}
		_ = resp.Body.Close()
	}
}

func TestLimitReleasesSlot(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		body   io.ReadCloser
		finish func(*http.Response)
	}{
		{"empty HEAD answer, never closed", http.MethodHead, nil, func(*http.Response) {}},
		{"body closed", http.MethodGet, io.NopCloser(strings.NewReader("x")), func(r *http.Response) { _ = r.Body.Close() }},
		{"body read to its end", http.MethodGet, io.NopCloser(strings.NewReader("x")), func(r *http.Response) { _, _ = io.ReadAll(r.Body) }},
		{"body read and closed", http.MethodGet, io.NopCloser(strings.NewReader("x")), func(r *http.Response) {
			_, _ = io.ReadAll(r.Body)
			_ = r.Body.Close()
			_ = r.Body.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts := &Hosts{MaxInFlight: 2}
			rt := &Limit{Base: roundTripFunc(func(req *http.Request) (*http.Response, error) {
				return answer(req, http.StatusOK, nil, tc.body), nil
			}), Hosts: hosts}
			resp, err := send(t, rt, t.Context(), tc.method, "https://registry.example/v2/r/manifests/v1")
			if err != nil {
				t.Fatal(err)
			}
			tc.finish(resp)
			if n := len(hosts.state("https://registry.example").slots); n != 0 {
				t.Errorf("%d slots still taken", n)
			}
		})
	}
}

func TestLimitWaitForSlotRespectsContext(t *testing.T) {
	calls := 0
	rt := &Limit{Base: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		calls++
		return answer(req, http.StatusOK, nil, io.NopCloser(strings.NewReader("x"))), nil
	}), Hosts: &Hosts{MaxInFlight: 1}}
	held, err := send(t, rt, t.Context(), http.MethodGet, "https://registry.example/v2/r/blobs/x")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Body.Close()

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = send(t, rt, ctx, http.MethodGet, "https://registry.example/v2/r/blobs/y")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v; want one wrapping context.Canceled", err)
	}
	for _, want := range []string{"request slots", "https://registry.example", "--registry-max-inflight"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if calls != 1 {
		t.Errorf("%d requests sent; the one waiting for a slot must not be", calls)
	}
}

// pausing returns a Limit over a base that answers 429 with retryAfter to
// the paths in throttled, 200 to others, and counts what it was sent.
func pausing(hosts *Hosts, retryAfter string, throttled ...string) (*Limit, *atomic.Int64) {
	var sent atomic.Int64
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		sent.Add(1)
		for _, p := range throttled {
			if req.URL.Path == p {
				h := http.Header{}
				if retryAfter != "" {
					h.Set("Retry-After", retryAfter)
				}
				return answer(req, http.StatusTooManyRequests, h, nil), nil
			}
		}
		return answer(req, http.StatusOK, nil, nil), nil
	})
	return &Limit{Base: base, Hosts: hosts}, &sent
}

func TestTooManyRequestsPausesTheRegistryForEveryClient(t *testing.T) {
	clock := newFakeClock()
	hosts := &Hosts{Now: clock.Now, Sleep: clock.Sleep}
	// Two clients, as two Artifacts with different TLS settings have,
	// sharing one Hosts.
	first, _ := pausing(hosts, "30", "/v2/a/manifests/v1")
	second, sent := pausing(hosts, "")

	resp, err := send(t, first, t.Context(), http.MethodHead, "https://registry.example/v2/a/manifests/v1")
	if err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("first request: %v, %v; want the 429", resp, err)
	}
	if _, err := send(t, second, t.Context(), http.MethodHead, "https://other.example/v2/b/manifests/v1"); err != nil {
		t.Fatal(err)
	}
	if got := clock.Sleeps(); len(got) != 0 {
		t.Fatalf("a request to another registry waited %v", got)
	}
	if _, err := send(t, second, t.Context(), http.MethodHead, "https://registry.example/v2/b/manifests/v1"); err != nil {
		t.Fatal(err)
	}
	if got := clock.Sleeps(); len(got) != 1 || got[0] != 30*time.Second {
		t.Errorf("the other client's request to the paused registry waited %v; want [30s]", got)
	}
	if sent.Load() != 2 {
		t.Errorf("the other client sent %d requests; want 2", sent.Load())
	}
}

func TestPauseLength(t *testing.T) {
	clock := newFakeClock()
	date := clock.Now().Add(90 * time.Second).Format(http.TimeFormat)
	for _, tc := range []struct {
		name       string
		retryAfter string
		// repeats is how many 429s in a row, each sent after the last
		// pause began.
		repeats int
		want    time.Duration
	}{
		{"seconds", "30", 1, 30 * time.Second},
		{"HTTP date", date, 1, 90 * time.Second},
		{"capped", "86400", 1, DefaultMaxPause},
		{"none: the minimum", "", 1, DefaultMinPause},
		{"none, again: doubled", "", 2, 2 * DefaultMinPause},
		{"none, four times", "", 4, 8 * DefaultMinPause},
		{"none, many times: capped", "", 20, DefaultMaxPause},
		{"zero: as none", "0", 1, DefaultMinPause},
		{"past date: as none", clock.Now().Add(-time.Hour).Format(http.TimeFormat), 1, DefaultMinPause},
		{"garbage: as none", "soon", 1, DefaultMinPause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeClock{now: clock.Now()}
			hosts := &Hosts{Now: c.Now, Sleep: c.Sleep}
			s := hosts.state("https://registry.example")
			req := httptest.NewRequest(http.MethodHead, "https://registry.example/v2/a/manifests/v1", nil)
			h := http.Header{}
			if tc.retryAfter != "" {
				h.Set("Retry-After", tc.retryAfter)
			}
			for range tc.repeats {
				hosts.observe(s, c.Now(), answer(req, http.StatusTooManyRequests, h, nil))
			}
			if got := s.until.Sub(c.Now()); got != tc.want {
				t.Errorf("pause %v; want %v", got, tc.want)
			}
		})
	}
}

func TestPauseBackoff(t *testing.T) {
	clock := newFakeClock()
	hosts := &Hosts{Now: clock.Now, Sleep: clock.Sleep}
	s := hosts.state("https://registry.example")
	req := httptest.NewRequest(http.MethodHead, "https://registry.example/v2/a/manifests/v1", nil)
	tooMany := answer(req, http.StatusTooManyRequests, nil, nil)

	sentEarly := clock.Now()
	clock.now = clock.now.Add(time.Millisecond)
	hosts.observe(s, sentEarly, tooMany)
	// The other requests sent together with the first come back 429 too:
	// they must not lengthen the pause that the first started.
	for range 7 {
		hosts.observe(s, sentEarly, tooMany)
	}
	if got := s.until.Sub(clock.Now()); got != DefaultMinPause {
		t.Fatalf("pause after a burst of 429s to requests sent together: %v; want %v", got, DefaultMinPause)
	}
	clock.now = s.until
	hosts.observe(s, clock.Now(), tooMany)
	if got := s.until.Sub(clock.Now()); got != 2*DefaultMinPause {
		t.Fatalf("pause after a 429 to a request sent once the pause ended: %v; want %v", got, 2*DefaultMinPause)
	}
	clock.now = s.until
	hosts.observe(s, clock.Now(), answer(req, http.StatusOK, nil, nil))
	hosts.observe(s, clock.Now(), tooMany)
	if got := s.until.Sub(clock.Now()); got != DefaultMinPause {
		t.Errorf("pause after a success, then a 429: %v; want the minimum %v again", got, DefaultMinPause)
	}
}

func TestPauseOutlastingDeadlineFailsFast(t *testing.T) {
	clock := newFakeClock()
	hosts := &Hosts{Now: clock.Now, Sleep: clock.Sleep}
	rt, sent := pausing(hosts, "120", "/v2/a/manifests/v1")
	if _, err := send(t, rt, t.Context(), http.MethodHead, "https://registry.example/v2/a/manifests/v1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithDeadline(t.Context(), clock.Now().Add(time.Minute))
	defer cancel()
	_, err := send(t, rt, ctx, http.MethodHead, "https://registry.example/v2/b/manifests/v1")
	if !errors.Is(err, ErrTooManyRequests) {
		t.Fatalf("error %v; want one wrapping ErrTooManyRequests", err)
	}
	var paused *PausedError
	if !errors.As(err, &paused) || !paused.Until.Equal(clock.Now().Add(120*time.Second)) {
		t.Errorf("error %#v; want a *PausedError until the pause ends", err)
	}
	if !strings.Contains(err.Error(), "https://registry.example") || !strings.Contains(err.Error(), "429") {
		t.Errorf("error %q names neither the registry nor the 429", err)
	}
	if got := clock.Sleeps(); len(got) != 0 {
		t.Errorf("waited %v before failing", got)
	}
	if sent.Load() != 1 {
		t.Errorf("%d requests sent; the one failed fast must not be", sent.Load())
	}
}

// Through NewClient, Retry must not retry a request failed fast by the
// pause, and must not count it as sent.
func TestClientWithLimitsStopsAtPause(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "3600") // beyond MaxRetryAfter: Retry hands the 429 back
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c, rec := quietClient(t, Options{Limits: &Hosts{}})
	resp, err := mustGet(t, c, srv.URL+"/v2/a/manifests/v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d; want 429", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/b/manifests/v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(req)
	if !errors.Is(err, ErrTooManyRequests) {
		t.Fatalf("error %v; want one wrapping ErrTooManyRequests", err)
	}
	if hits.Load() != 1 {
		t.Errorf("the registry got %d requests; want only the first", hits.Load())
	}
	if got := rec.get(); len(got) != 0 {
		t.Errorf("Retry waited %v; a request failed by the pause is not retried", got)
	}
}

// The manager drops old clients with CloseIdleConnections; it must reach
// the connection pool through every layer NewClient stacks.
func TestCloseIdleConnectionsReachesThePool(t *testing.T) {
	c, err := NewClient(Options{Limits: &Hosts{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	reused := func() bool {
		var got bool
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { got = i.Reused }})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return got
	}
	reused()
	if !reused() {
		t.Fatal("the second request did not reuse the first one's connection")
	}
	c.CloseIdleConnections()
	if reused() {
		t.Error("a request after CloseIdleConnections reused an idle connection")
	}
}
