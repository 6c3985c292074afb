package cloudauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Classes of failure, for errors.Is. Every error of this package is an
// *Error of exactly one of them.
var (
	// ErrHostRefused: the provider does not send credentials to this
	// host. Nothing was requested. A spec problem: the caller stalls.
	ErrHostRefused = errors.New("registry host refused for provider")
	// ErrUnsupported: the combination cannot work (e.g. a ServiceAccount
	// without the annotation its provider needs, or a platform that has
	// no per-ServiceAccount identity). A spec or setup problem.
	ErrUnsupported = errors.New("unsupported cloud identity")
	// ErrAuthFailed: an identity endpoint, security token service or
	// registry exchange answered and refused (wrong audience, unknown
	// role, missing identity, no permission). The caller reports
	// AuthenticationFailed and does not retry fast.
	ErrAuthFailed = errors.New("cloud authentication failed")
	// ErrUnavailable: an identity endpoint could not be reached or
	// answered with a server error or throttling. The caller reports
	// RegistryUnavailable and retries.
	ErrUnavailable = errors.New("cloud identity endpoint unavailable")
)

// Error is a failure to get a cloud credential. Its message names the
// provider, the registry host and the step, never a token.
type Error struct {
	Provider Provider
	Host     string
	// Step is what failed, e.g. "STS AssumeRoleWithWebIdentity".
	Step string
	// Kind is one of the Err* classes above.
	Kind error
	Err  error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s for %s: %v", e.Provider, e.Step, e.Host, e.Err)
}

// Unwrap gives the class and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// classify wraps err from step: a transport failure, a 5xx or a 429 is
// ErrUnavailable; anything else that answered is ErrAuthFailed. status is
// the HTTP status when known, else 0. A cancelled context stays what it
// is, unavailable.
func classify(p Provider, host, step string, status int, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	kind := ErrAuthFailed
	switch {
	case status >= 500 || status == 429 || status == 408:
		kind = ErrUnavailable
	case status == 0 && isNetwork(err):
		kind = ErrUnavailable
	}
	return &Error{Provider: p, Host: host, Step: step, Kind: kind, Err: scrub(err)}
}

// isNetwork reports whether err is a failure to reach an endpoint.
func isNetwork(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var ne net.Error
	var ue *url.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &ue) || errors.As(err, &oe) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host")
}

// scrub keeps err's message on one line, and drops anything after a
// query string, so that a URL with a token in it (none of the SDKs put
// one there, but a redirect could) does not reach a log or a condition.
func scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if !strings.ContainsAny(msg, "?\n") {
		return err
	}
	var b strings.Builder
	for _, f := range strings.Fields(msg) {
		// azidentity's multi-line report: keep one line, no rulers.
		if strings.Trim(f, "-") == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if strings.Contains(f, "://") {
			if j := strings.IndexByte(f, '?'); j >= 0 {
				f = f[:j] + "?<redacted>"
			}
		}
		b.WriteString(f)
	}
	return errors.New(b.String())
}
