package controller

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
)

// syncError is a failed step: the condition reason it reports and whether
// retrying can help. A stalling error waits for the spec to change; any
// other error is retried with backoff.
type syncError struct {
	reason string
	stall  bool
	err    error
	// retryAfter, when set, schedules the retry instead of the
	// controller's backoff: a failed sync Job is retried on its own clock.
	retryAfter time.Duration
}

func (e *syncError) Error() string { return e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

// stalled reports a failure that only a spec change can mend.
func stalled(reason string, format string, args ...any) *syncError {
	return &syncError{reason: reason, stall: true, err: fmt.Errorf(format, args...)}
}

// transient reports a failure that may mend itself.
func transient(reason string, format string, args ...any) *syncError {
	return &syncError{reason: reason, err: fmt.Errorf(format, args...)}
}

// classify maps a registry client error onto a condition reason, and says
// whether it is permanent for this spec.
func classify(err error) *syncError {
	var se *syncError
	if errors.As(err, &se) {
		return se
	}
	if ce := cloudError(err); ce != nil {
		return ce
	}
	switch {
	case errors.Is(err, oci.ErrInvalidReference):
		return &syncError{reason: v1alpha1.ReasonInvalidReference, stall: true, err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		// A connection that broke off before its Content-Length: the
		// network or the registry failed, not the content. (The size
		// check caught it too, so it was never published.)
		return &syncError{reason: v1alpha1.ReasonRegistryUnavailable, err: err}
	case errors.Is(err, oci.ErrDigestMismatch), errors.Is(err, oci.ErrSizeMismatch), errors.Is(err, oci.ErrInvalidManifest):
		return &syncError{reason: v1alpha1.ReasonVerificationFailed, err: err}
	case errors.Is(err, oci.ErrTooLarge):
		// The registry's content can change, but for the digest at hand
		// only a larger maxSize (a spec change) helps.
		return &syncError{reason: v1alpha1.ReasonTooLarge, stall: true, err: err}
	case errors.Is(err, oci.ErrDenied), errors.Is(err, oci.ErrUnauthorized):
		return &syncError{reason: v1alpha1.ReasonAuthenticationFailed, err: err}
	case errors.Is(err, oci.ErrNotFound), errors.Is(err, oci.ErrManifestUnknown), errors.Is(err, oci.ErrBlobUnknown):
		return &syncError{reason: v1alpha1.ReasonNotFound, err: err}
	case errors.Is(err, oci.ErrUnsupported), errors.Is(err, oci.ErrPlatformMismatch):
		return &syncError{reason: v1alpha1.ReasonSelectorMismatch, stall: true, err: err}
	}
	// Network errors, timeouts, rate limits and server errors: the
	// registry may recover.
	return &syncError{reason: v1alpha1.ReasonRegistryUnavailable, err: err}
}
