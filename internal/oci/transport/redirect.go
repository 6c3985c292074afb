package transport

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/ocisync/ocisync/internal/oci/errdef"
)

// MaxRedirects is how many redirects CheckRedirect follows for one request.
const MaxRedirects = 10

// sensitiveHeaders are removed when a redirect leaves the original origin:
// the same list net/http treats as sensitive.
var sensitiveHeaders = []string{
	"Authorization", "Www-Authenticate", "Cookie", "Cookie2",
	"Proxy-Authorization", "Proxy-Authenticate",
}

// CheckRedirect is the http.Client redirect policy for registry traffic.
//
//   - It follows at most MaxRedirects redirects.
//   - It refuses a redirect to plain http when the original request was
//     https: the request would then travel unencrypted.
//   - Once any hop leaves the original request's origin (scheme, host and
//     port, with default ports normalised), it deletes Authorization,
//     Cookie and the other sensitive headers from the request. Blob
//     downloads are commonly redirected to object storage, which must never
//     see registry credentials (and presigned S3 URLs reject a second auth
//     mechanism).
//
// net/http (Go 1.26, client.go) already strips these headers, but only when
// the host name changes to one that is not a subdomain of the original: it
// keeps them across a port or scheme change and into subdomains. This
// policy is stricter and does not rely on that. It works because the client
// copies the original headers into req before calling CheckRedirect.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	// via holds the requests made so far: the original plus the redirects
	// already followed. (net/http's default stops at len(via) >= 10, which
	// follows only 9.)
	if len(via) > MaxRedirects {
		return fmt.Errorf("stopped after %d redirects (the last to %s): the server is redirecting in a loop or too deep",
			MaxRedirects, errdef.RedactURL(req.URL.String()))
	}
	orig := via[0].URL
	if orig.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refusing redirect from %s to %s: it would downgrade an https request to %s and expose it on the network",
			errdef.RedactURL(via[len(via)-1].URL.String()), errdef.RedactURL(req.URL.String()), req.URL.Scheme)
	}

	// Compare every hop, not just the target, so that a chain that leaves
	// and then returns to the origin (A -> B -> A) stays stripped: the hop
	// back to A was chosen by B.
	crossed := !SameOrigin(orig, req.URL)
	for _, hop := range via[1:] {
		crossed = crossed || !SameOrigin(orig, hop.URL)
	}
	if crossed {
		for _, h := range sensitiveHeaders {
			req.Header.Del(h)
		}
	}
	return nil
}

// SameOrigin compares scheme, host name (case-insensitively) and port, with
// an omitted port standing for the scheme's default. Credentials for one
// origin must never travel to another.
func SameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		effectivePort(a) == effectivePort(b)
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}
