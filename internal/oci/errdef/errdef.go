// Package errdef holds the errors the registry client returns, so that
// callers (the reconciler, the CLI) can tell failures apart with errors.Is
// without parsing messages. It is a leaf package: reference, auth, transport
// and oci all import it, and oci re-exports the sentinels.
package errdef

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Sentinels. Wrap them with fmt.Errorf("...: %w", ErrX) or return a
// *ResponseError, whose Is method maps status codes and distribution error
// codes onto them.
var (
	ErrInvalidReference = errors.New("invalid reference")
	ErrUnauthorized     = errors.New("unauthorized")
	ErrDenied           = errors.New("denied")
	ErrNotFound         = errors.New("not found")
	ErrManifestUnknown  = errors.New("manifest unknown")
	ErrBlobUnknown      = errors.New("blob unknown")
	ErrTooManyRequests  = errors.New("too many requests")
	ErrDigestMismatch   = errors.New("digest mismatch")
	ErrSizeMismatch     = errors.New("size mismatch")
	ErrTooLarge         = errors.New("content too large")
	ErrUnsupported      = errors.New("unsupported")
	// ErrInvalidManifest: a manifest or index the registry served does
	// not decode or breaks the image spec (negative sizes, bad digests).
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrPlatformMismatch: an index has no manifest for the platform
	// asked for, or several when none was asked for.
	ErrPlatformMismatch = errors.New("no manifest for the platform")
)

// maxErrorBody bounds how much of an error response body is read: error
// bodies are small JSON documents, and a hostile server must not make us
// buffer an arbitrary amount.
const maxErrorBody = 8 << 10

// ErrorEntry is one element of the distribution-spec error body
// {"errors":[{"code":...,"message":...,"detail":...}]}.
type ErrorEntry struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// ResponseError is an unexpected HTTP response from a registry or token
// server. URL never carries credentials or query strings (see redactURL).
type ResponseError struct {
	Method     string
	URL        string
	StatusCode int
	Errors     []ErrorEntry
}

// Error formats the failure as "GET https://host/v2/...: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown".
func (e *ResponseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	for i, entry := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		switch {
		case entry.Code != "" && entry.Message != "":
			fmt.Fprintf(&b, "%s: %s", entry.Code, entry.Message)
		case entry.Code != "":
			b.WriteString(entry.Code)
		default:
			b.WriteString(entry.Message)
		}
	}
	return b.String()
}

// Is maps the response onto the sentinels: distribution error codes first,
// then the status code.
func (e *ResponseError) Is(target error) bool {
	for _, entry := range e.Errors {
		switch strings.ToUpper(entry.Code) {
		case "UNAUTHORIZED":
			if target == ErrUnauthorized {
				return true
			}
		case "DENIED":
			if target == ErrDenied {
				return true
			}
		case "MANIFEST_UNKNOWN":
			if target == ErrManifestUnknown || target == ErrNotFound {
				return true
			}
		case "BLOB_UNKNOWN":
			if target == ErrBlobUnknown || target == ErrNotFound {
				return true
			}
		case "NAME_UNKNOWN":
			if target == ErrNotFound {
				return true
			}
		case "TOOMANYREQUESTS":
			if target == ErrTooManyRequests {
				return true
			}
		case "SIZE_INVALID":
			if target == ErrSizeMismatch {
				return true
			}
		case "DIGEST_INVALID":
			if target == ErrDigestMismatch {
				return true
			}
		case "UNSUPPORTED":
			if target == ErrUnsupported {
				return true
			}
		}
	}
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return target == ErrUnauthorized
	case http.StatusForbidden:
		return target == ErrDenied
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusTooManyRequests:
		return target == ErrTooManyRequests
	case http.StatusRequestEntityTooLarge:
		return target == ErrTooLarge
	}
	return false
}

// NewResponseError reads at most 8 KiB of resp.Body, parses a distribution
// error body if there is one, and returns a *ResponseError. It does not
// close the body. Bodies that are not distribution JSON are ignored rather
// than echoed: they can be large HTML pages or carry secrets.
func NewResponseError(resp *http.Response) *ResponseError {
	e := &ResponseError{StatusCode: resp.StatusCode}
	if resp.Request != nil {
		e.Method = resp.Request.Method
		if resp.Request.URL != nil {
			e.URL = RedactURL(resp.Request.URL.String())
		}
	}
	if resp.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		var parsed struct {
			Errors []ErrorEntry `json:"errors"`
		}
		if json.Unmarshal(body, &parsed) == nil {
			for _, entry := range parsed.Errors {
				entry.Message = truncate(entry.Message, 512)
				entry.Code = truncate(entry.Code, 64)
				entry.Detail = nil // details can echo request data; keep errors short and safe
				e.Errors = append(e.Errors, entry)
			}
		}
	}
	return e
}

// RedactURL drops userinfo and the query string from a URL for use in
// errors and logs: token realms and upload locations carry secrets there.
func RedactURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	// The authority follows "scheme://", or "//" in a scheme-relative
	// URL (as a Location header may hold); a "://" after a "/" is in the
	// path, not the end of a scheme.
	start := -1
	if scheme := strings.Index(raw, "://"); scheme >= 0 && !strings.Contains(raw[:scheme], "/") {
		start = scheme + 3
	} else if strings.HasPrefix(raw, "//") {
		start = 2
	}
	if start >= 0 {
		rest := raw[start:]
		host := rest
		if slash := strings.IndexByte(rest, '/'); slash >= 0 {
			host = rest[:slash]
		}
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			raw = raw[:start] + rest[at+1:]
		}
	}
	return raw
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
