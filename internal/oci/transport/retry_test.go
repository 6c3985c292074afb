package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// scriptServer answers the i-th request with statuses[i] (the last one
// repeats), setting Retry-After from retryAfter[i] when non-empty, and
// records every request body.
type scriptServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	hits   atomic.Int32
}

func newScriptServer(t *testing.T, statuses []int, retryAfter []string) *scriptServer {
	t.Helper()
	s := &scriptServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(s.hits.Add(1)) - 1
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, body)
		s.mu.Unlock()
		code := statuses[min(i, len(statuses)-1)]
		if i < len(retryAfter) && retryAfter[i] != "" {
			w.Header().Set("Retry-After", retryAfter[i])
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"errors":[{"code":"X","message":"attempt %d"}]}`, i+1)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scriptServer) recordedBodies() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...)
}

func newRetry(rec *sleepRecorder) *Retry {
	return &Retry{Base: http.DefaultTransport.(*http.Transport).Clone(), Sleep: rec.sleep}
}

func TestRetryOnRetryableStatusThenSuccess(t *testing.T) {
	for _, code := range []int{408, 429, 500, 502, 503, 504, 520, 524} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			srv := newScriptServer(t, []int{code, code, http.StatusOK}, nil)
			rec := &sleepRecorder{}
			c := &http.Client{Transport: newRetry(rec)}
			resp, err := mustGet(t, c, srv.URL+"/v2/", nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "attempt 3") {
				t.Fatalf("got %d %q, want 200 from attempt 3", resp.StatusCode, body)
			}
			if got := srv.hits.Load(); got != 3 {
				t.Errorf("server saw %d requests, want 3", got)
			}
			if got := len(rec.get()); got != 2 {
				t.Errorf("slept %d times, want 2", got)
			}
		})
	}
}

func TestNoRetryOnPermanentStatus(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 405, 501, 505, 507} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			srv := newScriptServer(t, []int{code, http.StatusOK}, nil)
			rec := &sleepRecorder{}
			c := &http.Client{Transport: newRetry(rec)}
			resp, err := mustGet(t, c, srv.URL+"/v2/", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != code {
				t.Errorf("status %d, want %d", resp.StatusCode, code)
			}
			if got := srv.hits.Load(); got != 1 {
				t.Errorf("server saw %d requests, want 1", got)
			}
		})
	}
}

// onceReader is a body that cannot be replayed (http.NewRequest sets no
// GetBody for unknown reader types).
type onceReader struct{ r io.Reader }

func (o *onceReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestRetryByMethodAndBody(t *testing.T) {
	payload := bytes.Repeat([]byte("layer-bytes-\x00\xff-"), 5000)
	tests := []struct {
		name     string
		method   string
		body     func() io.Reader
		wantHits int32
	}{
		{"GET", http.MethodGet, nil, 3},
		{"HEAD", http.MethodHead, nil, 3},
		{"DELETE without body", http.MethodDelete, nil, 3},
		{"PUT with replayable body", http.MethodPut, func() io.Reader { return bytes.NewReader(payload) }, 3},
		{"PUT with one-shot body", http.MethodPut, func() io.Reader { return &onceReader{bytes.NewReader(payload)} }, 1},
		{"POST", http.MethodPost, func() io.Reader { return bytes.NewReader(payload) }, 1},
		{"POST without body", http.MethodPost, nil, 1},
		{"PATCH", http.MethodPatch, func() io.Reader { return bytes.NewReader(payload) }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newScriptServer(t, []int{503, 502, http.StatusCreated}, nil)
			rec := &sleepRecorder{}
			c := &http.Client{Transport: newRetry(rec)}
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+"/v2/x/blobs/uploads/1", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := srv.hits.Load(); got != tc.wantHits {
				t.Fatalf("server saw %d requests, want %d", got, tc.wantHits)
			}
			wantStatus := http.StatusCreated
			if tc.wantHits == 1 {
				wantStatus = http.StatusServiceUnavailable
			}
			if resp.StatusCode != wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, wantStatus)
			}
			if tc.body != nil {
				for i, b := range srv.recordedBodies() {
					if !bytes.Equal(b, payload) {
						t.Errorf("attempt %d body: %d bytes, differs from the %d-byte payload", i+1, len(b), len(payload))
					}
				}
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		cap        time.Duration
		wantWait   time.Duration // 0: expect the jittered backoff
		wantGiveUp bool
	}{
		{"seconds on 429", 429, "7", 0, 7 * time.Second, false},
		{"seconds on 503", 503, "3", 0, 3 * time.Second, false},
		{"HTTP-date", 429, now.Add(30 * time.Second).Format(http.TimeFormat), 0, 30 * time.Second, false},
		{"at the cap", 429, "60", 0, 60 * time.Second, false},
		{"beyond the default cap", 429, "61", 0, 0, true},
		{"beyond a custom cap", 429, "10", 5 * time.Second, 0, true},
		{"HTTP-date beyond the cap", 429, now.Add(2 * time.Hour).Format(http.TimeFormat), 0, 0, true},
		{"huge seconds", 429, "99999999999999999", 0, 0, true},
		{"zero", 429, "0", 0, 0, false},
		{"date in the past", 429, now.Add(-time.Minute).Format(http.TimeFormat), 0, 0, false},
		{"garbage", 429, "soon", 0, 0, false},
		{"negative", 429, "-5", 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newScriptServer(t, []int{tc.status, http.StatusOK}, []string{tc.retryAfter})
			rec := &sleepRecorder{}
			r := newRetry(rec)
			r.Now = func() time.Time { return now }
			r.MaxRetryAfter = tc.cap
			r.Rand = func() float64 { return 0.5 }
			c := &http.Client{Transport: r}
			resp, err := mustGet(t, c, srv.URL+"/v2/", nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			waits := rec.get()
			if tc.wantGiveUp {
				if resp.StatusCode != tc.status || srv.hits.Load() != 1 || len(waits) != 0 {
					t.Fatalf("got status %d after %d requests and waits %v; want the %d returned at once", resp.StatusCode, srv.hits.Load(), waits, tc.status)
				}
				if !strings.Contains(string(body), "attempt 1") {
					t.Errorf("returned response body %q is not the server's, unread", body)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || len(waits) != 1 {
				t.Fatalf("got status %d and waits %v, want 200 after one wait", resp.StatusCode, waits)
			}
			want := tc.wantWait
			if want == 0 {
				want = 150 * time.Millisecond // backoff for retry 0 with Rand 0.5: 100ms + 0.5*100ms
			}
			if waits[0] != want {
				t.Errorf("waited %v, want %v", waits[0], want)
			}
		})
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	tests := []struct {
		name string
		rand float64
		want []time.Duration
	}{
		{"low jitter", 0, []time.Duration{50, 100, 200, 400, 500, 500, 500}},
		{"mid jitter", 0.5, []time.Duration{75, 150, 300, 600, 750, 750, 750}},
		{"high jitter", 1, []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newScriptServer(t, []int{503}, nil)
			rec := &sleepRecorder{}
			r := newRetry(rec)
			r.MaxRetries = 7
			r.MinBackoff = 100 * time.Millisecond
			r.MaxBackoff = time.Second
			r.Rand = func() float64 { return tc.rand }
			resp, err := mustGet(t, &http.Client{Transport: r}, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// After the last attempt the last response is returned, not an error.
			if resp.StatusCode != 503 || !strings.Contains(string(body), "attempt 8") {
				t.Fatalf("got %d %q, want the 8th attempt's 503", resp.StatusCode, body)
			}
			waits := rec.get()
			if len(waits) != len(tc.want) {
				t.Fatalf("waits %v, want %d of them", waits, len(tc.want))
			}
			for i, w := range tc.want {
				if waits[i] != w*time.Millisecond {
					t.Errorf("wait %d = %v, want %v", i, waits[i], w*time.Millisecond)
				}
			}
		})
	}
}

func TestBackoffJitterWithinBounds(t *testing.T) {
	r := &Retry{MinBackoff: 200 * time.Millisecond, MaxBackoff: 10 * time.Second}
	for n := range 12 {
		ceil := min(200*time.Millisecond<<n, 10*time.Second)
		seen := map[time.Duration]bool{}
		for range 500 {
			d := r.backoff(n)
			if d < ceil/2 || d > ceil {
				t.Fatalf("retry %d: wait %v outside [%v, %v]", n, d, ceil/2, ceil)
			}
			seen[d] = true
		}
		if len(seen) < 50 {
			t.Errorf("retry %d: only %d distinct waits in 500 draws; jitter is not applied", n, len(seen))
		}
	}
}

func TestRetryDefaultsAndDisable(t *testing.T) {
	tests := []struct {
		name       string
		maxRetries int
		wantHits   int32
	}{
		{"zero means default", 0, DefaultMaxRetries + 1},
		{"negative disables", -1, 1},
		{"explicit", 2, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newScriptServer(t, []int{500}, nil)
			rec := &sleepRecorder{}
			r := newRetry(rec)
			r.MaxRetries = tc.maxRetries
			resp, err := mustGet(t, &http.Client{Transport: r}, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := srv.hits.Load(); got != tc.wantHits {
				t.Errorf("server saw %d requests, want %d", got, tc.wantHits)
			}
		})
	}
}

func TestOnRetryEvents(t *testing.T) {
	srv := newScriptServer(t, []int{429, 503, 200}, []string{"2"})
	rec := &sleepRecorder{}
	r := newRetry(rec)
	r.Rand = func() float64 { return 0 }
	var events []RetryEvent
	r.OnRetry = func(ev RetryEvent) { events = append(events, ev) }
	resp, err := mustGet(t, &http.Client{Transport: r}, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(events) != 2 {
		t.Fatalf("got %d events, want 2", len(events))
	}
	if e := events[0]; e.Attempt != 1 || e.StatusCode != 429 || e.Wait != 2*time.Second || e.Err != nil {
		t.Errorf("event 1 = %+v", e)
	}
	if e := events[1]; e.Attempt != 2 || e.StatusCode != 503 || e.Wait != 200*time.Millisecond {
		t.Errorf("event 2 = %+v", e)
	}
}

func TestContextCancelDuringBackoff(t *testing.T) {
	srv := newScriptServer(t, []int{503}, nil)
	r := &Retry{Base: http.DefaultTransport.(*http.Transport).Clone(), MinBackoff: 20 * time.Second, MaxBackoff: 20 * time.Second}
	ctx, cancel := context.WithCancel(t.Context())
	r.OnRetry = func(RetryEvent) { time.AfterFunc(50*time.Millisecond, cancel) }
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	start := time.Now()
	resp, err := r.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("returned after %v; the wait did not end with the context", elapsed)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("server saw %d requests, want 1", got)
	}
}

func TestNoRetryWhenRequestContextEnds(t *testing.T) {
	started := make(chan struct{}, 10)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		started <- struct{}{}
		<-r.Context().Done() // hang until the client gives up
	}))
	t.Cleanup(srv.Close)

	for _, name := range []string{"cancel", "deadline"} {
		t.Run(name, func(t *testing.T) {
			hits.Store(0)
			rec := &sleepRecorder{}
			c := &http.Client{Transport: newRetry(rec)}
			var ctx context.Context
			var cancel context.CancelFunc
			if name == "cancel" {
				ctx, cancel = context.WithCancel(t.Context())
				go func() { <-started; cancel() }()
			} else {
				ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
				go func() { <-started }()
			}
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			resp, err := c.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if err == nil || ctx.Err() == nil {
				t.Fatalf("err = %v, ctx.Err() = %v; want both set", err, ctx.Err())
			}
			if got := hits.Load(); got != 1 || len(rec.get()) != 0 {
				t.Errorf("server saw %d requests, waits %v; want 1 request and no retry", got, rec.get())
			}
		})
	}
}

func TestWaitBeyondDeadlineReturnsResponse(t *testing.T) {
	srv := newScriptServer(t, []int{503, 200}, []string{"30"})
	rec := &sleepRecorder{}
	c := &http.Client{Transport: newRetry(rec)}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || len(rec.get()) != 0 {
		t.Errorf("got %d with waits %v; want the 503 at once since Retry-After outlasts the deadline", resp.StatusCode, rec.get())
	}
}

// dropListener closes the first n accepted connections at once.
type dropListener struct {
	net.Listener
	drop atomic.Int32
}

func (l *dropListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.drop.Add(-1) >= 0 {
			c.Close()
			continue
		}
		return c, nil
	}
}

func TestRetryOnDroppedConnection(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	dl := &dropListener{Listener: srv.Listener}
	dl.drop.Store(2)
	srv.Listener = dl
	srv.Start()
	t.Cleanup(srv.Close)

	rec := &sleepRecorder{}
	var errs []error
	r := newRetry(rec)
	r.OnRetry = func(ev RetryEvent) { errs = append(errs, ev.Err) }
	resp, err := mustGet(t, &http.Client{Transport: r}, srv.URL, nil)
	if err != nil {
		t.Fatalf("after dropped connections: %v", err)
	}
	resp.Body.Close()
	if len(errs) != 2 {
		t.Fatalf("retried %d times (%v), want 2", len(errs), errs)
	}
	for _, e := range errs {
		if e == nil {
			t.Errorf("retry event without the transport error")
		}
	}
}

func TestRetryOnConnectionRefusedThenServerComesUp(t *testing.T) {
	// Reserve a port, then free it so that connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "up")
	}))
	t.Cleanup(srv.Close)
	var waits int
	r := &Retry{
		Base:       http.DefaultTransport.(*http.Transport).Clone(),
		MaxRetries: 3,
		Sleep: func(ctx context.Context, d time.Duration) error {
			waits++
			if waits == 2 { // the registry starts during the second wait
				nl, err := net.Listen("tcp", addr)
				if err != nil {
					return fmt.Errorf("re-listening on %s: %w", addr, err)
				}
				srv.Listener.Close()
				srv.Listener = nl
				srv.Start()
			}
			return nil
		},
	}
	resp, err := mustGet(t, &http.Client{Transport: r}, "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "up" || waits != 2 {
		t.Errorf("got %q after %d waits, want \"up\" after 2", body, waits)
	}
}

func TestGiveUpOnConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rec := &sleepRecorder{}
	r := newRetry(rec)
	r.MaxRetries = 2
	_, err = mustGet(t, &http.Client{Transport: r}, "http://"+addr+"/", nil)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v, want it to wrap ECONNREFUSED", err)
	}
	if !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Errorf("err = %q, want it to say how many attempts were made", err)
	}
	if len(rec.get()) != 2 {
		t.Errorf("waited %d times, want 2", len(rec.get()))
	}
}

func TestRetryableError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"EOF", io.EOF, true},
		{"unexpected EOF", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}, true},
		{"temporary DNS failure", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "server misbehaving", IsTemporary: true}}, true},
		{"http2 stream error", errors.New("stream error: stream ID 3; INTERNAL_ERROR"), true},
		{"unknown host", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "regsitry.example", IsNotFound: true}}, false},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, false},
		{"bare unknown authority", x509.UnknownAuthorityError{}, false},
		{"hostname mismatch", x509.HostnameError{Host: "x"}, false},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired}, false},
		{"TLS to plain HTTP", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, false},
		{"scheme mismatch", http.ErrSchemeMismatch, false},
		{"TLS alert from server", &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, false},
		{"TLS alert", tls.AlertError(40), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryableError(tc.err); got != tc.want {
				t.Errorf("retryableError(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestDiscardedResponsesKeepConnection(t *testing.T) {
	var conns atomic.Int32
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) < 3 {
			w.WriteHeader(503)
			w.Write(bytes.Repeat([]byte("x"), 8<<10)) // an HTML error page, say
			return
		}
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	rec := &sleepRecorder{}
	resp, err := mustGet(t, &http.Client{Transport: newRetry(rec)}, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || conns.Load() != 1 {
		t.Errorf("status %d over %d connections; want 200 over 1 (discarded bodies must be drained)", resp.StatusCode, conns.Load())
	}
}

func TestRetryDoesNotModifyCallerRequest(t *testing.T) {
	srv := newScriptServer(t, []int{503, 200}, nil)
	rec := &sleepRecorder{}
	body := []byte("manifest")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, srv.URL, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	origBody := req.Body
	resp, err := newRetry(rec).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.Body != origBody || len(req.Header) != 1 {
		t.Errorf("caller's request was modified: body %v, header %v", req.Body, req.Header)
	}
}
