package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/errdef"
	"github.com/ocisync/ocisync/internal/oci/reference"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

// DefaultTimeout is the deadline given to a call whose context has none,
// so that no registry call can hang forever on a stalled connection.
const DefaultTimeout = 10 * time.Minute

// Options configure a Client. The zero value is a working anonymous HTTPS
// client.
type Options struct {
	// PlainHTTP talks to the registry over http:// instead of https://.
	// Only when asked: there is no automatic fallback.
	PlainHTTP bool
	// Credentials looks up the credential for a registry host; nil means
	// anonymous.
	Credentials auth.CredentialFunc
	// TokenCache shares bearer tokens between clients; nil gives the client
	// its own.
	TokenCache *auth.TokenCache
	// Transport configures TLS, retries and proxies of the HTTP client the
	// Client builds. Ignored when HTTPClient is set.
	Transport transport.Options
	// HTTPClient replaces the HTTP client built from Transport.
	HTTPClient *http.Client
	// MaxManifestBytes bounds manifests and other metadata; 0 means
	// DefaultMaxManifestBytes.
	MaxManifestBytes int64
	// Timeout is the deadline of a call whose context carries none; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// Client talks to OCI registries. It is safe for concurrent use.
type Client struct {
	http        *auth.Client
	plainHTTP   bool
	maxManifest int64
	timeout     time.Duration
}

// NewClient builds a Client from opts.
func NewClient(opts Options) (*Client, error) {
	hc := opts.HTTPClient
	if hc == nil {
		var err error
		topts := opts.Transport
		if topts.UserAgent == "" {
			topts.UserAgent = opts.UserAgent
		}
		if hc, err = transport.NewClient(topts); err != nil {
			return nil, err
		}
	}
	cache := opts.TokenCache
	if cache == nil {
		cache = auth.NewTokenCache()
	}
	c := &Client{
		http: &auth.Client{
			HTTP:       hc,
			Credential: opts.Credentials,
			Cache:      cache,
			UserAgent:  opts.UserAgent,
		},
		plainHTTP:   opts.PlainHTTP,
		maxManifest: opts.MaxManifestBytes,
		timeout:     opts.Timeout,
	}
	if c.maxManifest <= 0 {
		c.maxManifest = DefaultMaxManifestBytes
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// MaxManifestBytes is the bound on manifests and metadata this client
// enforces.
func (c *Client) MaxManifestBytes() int64 { return c.maxManifest }

// Repository returns a handle on one repository of one registry. The tag
// and digest of ref are ignored: methods take the reference they act on.
func (c *Client) Repository(ref reference.Reference) *Repository {
	return &Repository{client: c, Registry: ref.Registry, Name: ref.Repository}
}

// Repository is one repository of one registry.
type Repository struct {
	client   *Client
	Registry string
	Name     string
}

func (r *Repository) String() string { return r.Registry + "/" + r.Name }

func (r *Repository) scheme() string {
	if r.client.plainHTTP {
		return "http"
	}
	return "https"
}

// url builds https://registry/v2/<name>/<kind>/<rest>.
func (r *Repository) url(kind, rest string) string {
	u := url.URL{Scheme: r.scheme(), Host: r.Registry, Path: "/v2/" + r.Name + "/" + kind + "/" + rest}
	return u.String()
}

// withTimeout gives ctx the client's default deadline when it has none.
func (r *Repository) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, r.client.timeout)
}

// scopeCtx adds the token scope for this repository and actions to ctx, so
// that the token flow asks for what the request needs in one round trip.
func (r *Repository) scopeCtx(ctx context.Context, actions ...string) context.Context {
	return auth.WithScopes(ctx, auth.RepositoryScope(r.Name, actions...))
}

// send makes one request and returns the response whatever its status.
func (r *Repository) send(ctx context.Context, method, rawURL string, body io.Reader, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return nil, fmt.Errorf("building %s request for %s: %w", method, errdef.RedactURL(rawURL), err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := r.client.http.Do(req)
	if err != nil {
		return nil, redactURLError(err)
	}
	return resp, nil
}

// redactURLError strips query strings and userinfo from the URL that
// net/http puts into its errors: upload locations and storage redirects
// carry signatures there.
func redactURLError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		uerr.URL = errdef.RedactURL(uerr.URL)
	}
	return err
}

// responseError turns an unexpected response into an error, closing its
// body. notFound, when set, is wrapped in as well for 404s so callers can
// tell a missing manifest from a missing blob even when the registry sends
// no error body (HEAD).
func responseError(resp *http.Response, notFound error) error {
	defer drainClose(resp.Body)
	rerr := errdef.NewResponseError(resp)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		const hint = " (check that the repository and the tag or digest exist on this registry)"
		if notFound != nil && !errors.Is(rerr, notFound) {
			// HEAD responses and terse registries carry no error code.
			return fmt.Errorf("%w: %w"+hint, notFound, rerr)
		}
		return fmt.Errorf("%w"+hint, rerr)
	case resp.StatusCode == http.StatusUnauthorized && insufficientScope(resp.Header):
		// Authenticated, but the token does not grant what was asked.
		return fmt.Errorf("%w: %w (the credentials lack permission for this operation on this repository)", ErrDenied, rerr)
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%w (check the credentials for this registry)", rerr)
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w (the credentials lack access to this repository)", rerr)
	case resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w (the registry is rate limiting; try again later)", rerr)
	}
	return rerr
}

// insufficientScope reports whether a Bearer challenge says the token
// lacked scope (RFC 6750 error="insufficient_scope").
func insufficientScope(h http.Header) bool {
	for _, v := range h.Values("WWW-Authenticate") {
		challenges, err := auth.ParseChallenges(v)
		if err != nil {
			continue
		}
		for _, c := range challenges {
			if c.Scheme == "bearer" && c.Params["error"] == "insufficient_scope" {
				return true
			}
		}
	}
	return false
}

// drainClose reads a little of a body before closing it so the connection
// can be reused, without reading an unbounded amount.
func drainClose(body io.ReadCloser) {
	if body == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}

// mediaTypeOf strips parameters from a Content-Type header value.
func mediaTypeOf(contentType string) string {
	if i := strings.IndexByte(contentType, ';'); i >= 0 {
		contentType = contentType[:i]
	}
	return strings.ToLower(strings.TrimSpace(contentType))
}
