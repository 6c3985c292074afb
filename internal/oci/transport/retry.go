package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxDrain bounds how much of a discarded response body is read so that its
// connection can be reused; a larger body is cheaper to drop with its
// connection than to download.
const maxDrain = 64 << 10

// RetryEvent describes a failed attempt that is about to be retried.
type RetryEvent struct {
	// Request is the caller's request. Do not log its headers: they may
	// carry credentials.
	Request *http.Request
	// Attempt is the 1-based number of the attempt that failed.
	Attempt int
	// StatusCode is the retryable status received, or 0 when Err is set.
	StatusCode int
	// Err is the transport error, if the attempt got no response.
	Err error
	// Wait is how long Retry waits before the next attempt.
	Wait time.Duration
}

// Retry is an http.RoundTripper that repeats idempotent requests on
// transient failures: statuses 408, 429, 500, 502, 503, 504 and the CDN
// statuses 520-524, and transport errors other than those that cannot heal
// by themselves (certificate and TLS protocol failures, unknown host names)
// or that come from the request's own context being cancelled or expired.
//
// Retried requests are GET, HEAD and OPTIONS, and PUT and DELETE, whose
// body, if any, can be replayed (req.GetBody set, as http.NewRequest does
// for in-memory bodies); POST and PATCH are never retried, since repeating
// them may repeat their effect (e.g. an upload chunk).
//
// The wait before retry n (from 0) is drawn uniformly from [c/2, c] where
// c = min(MaxBackoff, MinBackoff·2^n) ("equal jitter": clients spread out
// yet never hammer). A Retry-After header (seconds or HTTP-date) on a
// retryable response replaces that wait; one longer than MaxRetryAfter, or
// a wait that would outlast the request's context deadline, ends retrying
// and the response is returned. When retries are exhausted the last
// response is returned, not an error, so the caller can read the registry's
// error body.
//
// The zero value is usable; zero fields take the package defaults and a
// negative MaxRetries disables retrying. A Retry is safe for concurrent use.
type Retry struct {
	Base          http.RoundTripper // nil means http.DefaultTransport
	MaxRetries    int
	MinBackoff    time.Duration
	MaxBackoff    time.Duration
	MaxRetryAfter time.Duration

	// Sleep waits d or until ctx is done, returning ctx.Err() then. Tests
	// replace it to record waits instead of sleeping.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) for jitter (default math/rand/v2).
	Rand func() float64
	// Now is the clock used to turn a Retry-After date into a wait.
	Now func() time.Time
	// OnRetry, if set, is called before each wait.
	OnRetry func(RetryEvent)
}

// RoundTrip implements http.RoundTripper.
func (r *Retry) RoundTrip(req *http.Request) (*http.Response, error) {
	base := r.Base
	if base == nil {
		base = http.DefaultTransport
	}
	maxRetries := r.MaxRetries
	switch {
	case maxRetries == 0:
		maxRetries = DefaultMaxRetries
	case maxRetries < 0:
		maxRetries = 0
	}
	if maxRetries == 0 || !replayable(req) {
		return base.RoundTrip(req)
	}

	ctx := req.Context()
	attemptReq := req
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			var err error
			if attemptReq, err = rewind(req); err != nil {
				return nil, fmt.Errorf("retrying %s request: recreating its body: %w", req.Method, err)
			}
		}
		resp, err := base.RoundTrip(attemptReq)
		last := attempt >= maxRetries

		if err != nil {
			if ctx.Err() != nil || !retryableError(err) {
				return nil, err
			}
			if last {
				return nil, fmt.Errorf("giving up after %d attempts: %w", attempt+1, err)
			}
			wait := r.backoff(attempt)
			if outlastsDeadline(ctx, wait) {
				return nil, err
			}
			if err := r.pause(ctx, RetryEvent{Request: req, Attempt: attempt + 1, Err: err, Wait: wait}); err != nil {
				return nil, err
			}
			continue
		}

		if last || !retryableStatus(resp.StatusCode) {
			return resp, nil
		}
		wait, ok := r.responseWait(resp, attempt)
		if !ok || outlastsDeadline(ctx, wait) {
			return resp, nil // the caller turns it into a ResponseError
		}
		discard(resp)
		if err := r.pause(ctx, RetryEvent{Request: req, Attempt: attempt + 1, StatusCode: resp.StatusCode, Wait: wait}); err != nil {
			return nil, err
		}
	}
}

// CloseIdleConnections passes on to Base, as http.Client expects of its
// transport.
func (r *Retry) CloseIdleConnections() {
	if c, ok := r.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (r *Retry) pause(ctx context.Context, ev RetryEvent) error {
	if r.OnRetry != nil {
		r.OnRetry(ev)
	}
	sleep := r.Sleep
	if sleep == nil {
		sleep = sleepContext
	}
	return sleep(ctx, ev.Wait)
}

// backoff returns the jittered wait before retry n (0-based).
func (r *Retry) backoff(n int) time.Duration {
	lo, hi := r.MinBackoff, r.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	ceil := lo
	for i := 0; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	f := rand.Float64
	if r.Rand != nil {
		f = r.Rand
	}
	j := min(max(f(), 0), 1)
	half := ceil / 2
	return half + time.Duration(j*float64(ceil-half))
}

// responseWait returns the wait before retrying after resp, and false when
// the server asks for a longer wait than MaxRetryAfter.
func (r *Retry) responseWait(resp *http.Response, attempt int) (time.Duration, bool) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	limit := r.MaxRetryAfter
	if limit <= 0 {
		limit = DefaultMaxRetryAfter
	}
	d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now())
	switch {
	case !ok:
		return r.backoff(attempt), true
	case d > limit:
		return 0, false
	case d <= 0:
		// "Retry-After: 0" or a past date: back off anyway rather than spin.
		return r.backoff(attempt), true
	default:
		return d, true
	}
}

// parseRetryAfter reads delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > math.MaxInt64/int64(time.Second) {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now), true
	}
	return 0, false
}

// outlastsDeadline reports whether waiting d would pass ctx's deadline, in
// which case the current outcome is more useful than "deadline exceeded".
func outlastsDeadline(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return ok && time.Now().Add(d).After(deadline)
}

func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// replayable reports whether req may be sent again: an idempotent method
// and a body that is absent or can be recreated.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// rewind returns a copy of req with a fresh body for another attempt; the
// caller's request is never modified.
func rewind(req *http.Request) (*http.Request, error) {
	r := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = body
	}
	return r, nil
}

// discard drains (bounded) and closes a response that is being retried, so
// that its connection goes back to the pool.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	_ = resp.Body.Close()
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	// 520-524 are CDN (Cloudflare) statuses for an unreachable or slow
	// origin. Other 5xx (501 Not Implemented, 505, 507, ...) describe a
	// lasting condition and are returned at once.
	return code >= 520 && code <= 524
}

// retryableError reports whether a transport error may heal on its own.
// It lists what cannot rather than what can: the errors of connection
// loss (reset, refused, EOF, timeouts, HTTP/2 stream or GOAWAY errors) come
// in many unexported types, while the lasting ones are few and typed.
func retryableError(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		roots     x509.SystemRootsError
		record    tls.RecordHeaderError
		alert     tls.AlertError
		dnsErr    *net.DNSError
		opErr     *net.OpError
	)
	switch {
	case errors.Is(err, ErrTooManyRequests):
		return false // a rate limiting pause outlasts the deadline; Limit already waited what it could
	case errors.As(err, &verify), errors.As(err, &authority), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &roots):
		return false // the server's certificate is not trusted
	case errors.As(err, &record), errors.Is(err, http.ErrSchemeMismatch):
		return false // TLS spoken to a plain-HTTP server
	case errors.As(err, &alert):
		return false
	case errors.As(err, &opErr) && (opErr.Op == "remote error" || opErr.Op == "local error"):
		return false // a TLS alert, e.g. the server rejected our client certificate
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound && !dnsErr.IsTemporary:
		return false // no such host: a typo does not heal
	}
	return true
}
