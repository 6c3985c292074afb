package transport

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ocisync/ocisync/internal/oci/errdef"
)

// Defaults of Hosts when a field is zero.
const (
	// DefaultMaxInFlight is the number of requests sent to one registry
	// at once: enough for a few parallel layer downloads, few enough that
	// a thousand Artifacts syncing together queue here rather than at the
	// registry's rate limiter.
	DefaultMaxInFlight = 8
	// DefaultMinPause is the first pause after a 429 without Retry-After;
	// it doubles while the registry keeps answering 429.
	DefaultMinPause = time.Second
	// DefaultMaxPause caps any pause, Retry-After included: a registry
	// asking for an hour is asked again after five minutes.
	DefaultMaxPause = 5 * time.Minute
)

// ErrTooManyRequests is wrapped by the error of a request not sent
// because its registry answered 429 Too Many Requests and the pause it
// asked for ends after the request's deadline. It is the sentinel of a
// 429 response's error too (errdef), so one errors.Is covers both.
var ErrTooManyRequests = errdef.ErrTooManyRequests

// PausedError is the error of a request not sent because of a pause: see
// ErrTooManyRequests. Until says when the registry may be asked again.
type PausedError struct {
	// Origin is scheme://host of the registry.
	Origin string
	Until  time.Time
}

func (e *PausedError) Error() string {
	return fmt.Sprintf("%s answered 429 Too Many Requests, so requests to it wait until %s, past this request's deadline; it is asked again after the pause",
		e.Origin, e.Until.UTC().Format(time.RFC3339))
}

func (e *PausedError) Unwrap() error { return ErrTooManyRequests }

// Hosts is what every client sending through a Limit shares about each
// registry (by scheme and host): its requests in flight, bounded by
// MaxInFlight, and the pause a 429 response started. Give one Hosts to
// all the clients of a process, so that one client's 429 slows every
// other client's requests to that registry too.
//
// Fields must not change once the Hosts is in use. The zero value is
// usable with the defaults; a Hosts is safe for concurrent use.
type Hosts struct {
	// MaxInFlight bounds the requests in flight per registry: 0 means
	// DefaultMaxInFlight, negative means no bound. A request is in flight
	// from when it is sent until its response body is closed.
	MaxInFlight int
	// MinPause and MaxPause bound the pauses after 429 responses: 0 means
	// the defaults.
	MinPause, MaxPause time.Duration

	// Now and Sleep are the clock; tests replace them. Sleep waits d or
	// until ctx is done, returning ctx.Err() then.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error

	mu    sync.Mutex
	hosts map[string]*hostState
}

// maxIdleHosts bounds the states kept for registries that are neither
// paused nor busy: Artifacts may name any number of hosts.
const maxIdleHosts = 1024

// hostState is what Hosts knows of one registry.
type hostState struct {
	origin string
	// slots holds a token per request in flight; nil means no bound.
	slots chan struct{}
	// until is when the current pause ends; pausedAt when it started,
	// so that the 429s of requests sent before it do not lengthen it.
	until, pausedAt time.Time
	// backoff is the last pause chosen without Retry-After.
	backoff time.Duration
}

func (h *Hosts) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Hosts) sleep(ctx context.Context, d time.Duration) error {
	if h.Sleep != nil {
		return h.Sleep(ctx, d)
	}
	return sleepContext(ctx, d)
}

func (h *Hosts) maxInFlight() int {
	if h.MaxInFlight == 0 {
		return DefaultMaxInFlight
	}
	return h.MaxInFlight
}

// state returns origin's state, creating it.
func (h *Hosts) state(origin string) *hostState {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.hosts[origin]; ok {
		return s
	}
	if h.hosts == nil {
		h.hosts = map[string]*hostState{}
	}
	if len(h.hosts) >= maxIdleHosts {
		now := h.now()
		for k, s := range h.hosts {
			if len(s.slots) == 0 && !s.until.After(now) {
				delete(h.hosts, k)
			}
		}
	}
	s := &hostState{origin: origin}
	if n := h.maxInFlight(); n > 0 {
		s.slots = make(chan struct{}, n)
	}
	h.hosts[origin] = s
	return s
}

// pauseEnd returns when s's pause ends (zero or past when there is none).
func (h *Hosts) pauseEnd(s *hostState) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.until
}

// acquire waits for s's pause to end and for a free slot, and returns the
// function that frees the slot.
func (h *Hosts) acquire(ctx context.Context, s *hostState) (func(), error) {
	for {
		if until := h.pauseEnd(s); until.After(h.now()) {
			if deadline, ok := ctx.Deadline(); ok && deadline.Before(until) {
				return nil, &PausedError{Origin: s.origin, Until: until}
			}
			if err := h.sleep(ctx, until.Sub(h.now())); err != nil {
				return nil, fmt.Errorf("waiting for the rate limiting pause of %s to end: %w", s.origin, err)
			}
			continue
		}
		if s.slots == nil {
			return func() {}, nil
		}
		// A free slot is taken whatever the context says (the request
		// then fails on its own context), so that only a wait can fail.
		select {
		case s.slots <- struct{}{}:
		default:
			select {
			case s.slots <- struct{}{}:
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for one of the %d request slots of %s (see --registry-max-inflight): %w", cap(s.slots), s.origin, ctx.Err())
			}
		}
		// A 429 may have come while this request waited for its slot.
		if h.pauseEnd(s).After(h.now()) {
			<-s.slots
			continue
		}
		var once sync.Once
		return func() { once.Do(func() { <-s.slots }) }, nil
	}
}

// observe records the answer to a request sent at sent: a 429 starts or
// lengthens the pause; any other status ends the backoff.
func (h *Hosts) observe(s *hostState, sent time.Time, resp *http.Response) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sent.Before(s.pausedAt) {
		// Sent before the current pause began: its answer says nothing
		// about how the registry copes with the slower pace.
		return
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		s.backoff = 0
		return
	}
	now := h.now()
	maxPause := h.MaxPause
	if maxPause <= 0 {
		maxPause = DefaultMaxPause
	}
	d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now)
	if !ok || d <= 0 {
		minPause := h.MinPause
		if minPause <= 0 {
			minPause = DefaultMinPause
		}
		d = max(minPause, min(2*s.backoff, maxPause))
		s.backoff = d
	}
	d = min(d, maxPause)
	if end := now.Add(d); end.After(s.until) {
		s.until = end
	}
	s.pausedAt = now
}

// Limit is an http.RoundTripper that sends each request through Hosts:
// it waits for a slot of the request's registry and for the end of its
// pause, honouring the request's context, and records 429 responses. A
// pause that would end after the context's deadline fails the request at
// once with a *PausedError.
//
// Beneath Retry it bounds each attempt, not the wait between attempts.
type Limit struct {
	Base  http.RoundTripper // nil means http.DefaultTransport
	Hosts *Hosts
}

// RoundTrip implements http.RoundTripper.
func (l *Limit) RoundTrip(req *http.Request) (*http.Response, error) {
	base := l.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if l.Hosts == nil || req.URL == nil {
		return base.RoundTrip(req)
	}
	s := l.Hosts.state(strings.ToLower(req.URL.Scheme + "://" + req.URL.Host))
	release, err := l.Hosts.acquire(req.Context(), s)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrippers must close the body, even on errors
		}
		return nil, err
	}
	sent := l.Hosts.now()
	resp, err := base.RoundTrip(req)
	if err != nil {
		release()
		return nil, err
	}
	l.Hosts.observe(s, sent, resp)
	if resp.Body == nil || resp.Body == http.NoBody {
		// HEAD and empty answers: nothing more will come on them, and
		// callers need not close an empty body.
		release()
		return resp, nil
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// CloseIdleConnections passes on to Base, as http.Client expects of its
// transport.
func (l *Limit) CloseIdleConnections() {
	if c, ok := l.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// releasingBody frees its request's slot once the body is closed or read
// to its end.
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.release()
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}
