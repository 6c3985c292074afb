// Package transport is the HTTP layer beneath the registry client: a base
// *http.Transport with our TLS settings and proxy support, a retrying round
// tripper (Retry), an optional per-registry limit on requests in flight
// that also holds every client back after a 429 (Limit, Hosts) and a
// redirect policy (CheckRedirect) that never carries credentials to
// another origin. Authentication sits on top of the
// *http.Client built here (internal/oci/auth).
package transport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// Defaults applied by NewClient and Retry when a field is zero.
const (
	DefaultMaxRetries            = 5
	DefaultMinBackoff            = 200 * time.Millisecond
	DefaultMaxBackoff            = 10 * time.Second
	DefaultMaxRetryAfter         = 60 * time.Second
	DefaultUserAgent             = "ocisync"
	DefaultResponseHeaderTimeout = 2 * time.Minute
)

// Options configure NewClient. The zero value gives a client that trusts the
// system roots, follows the proxy environment variables and retries
// transient failures with the defaults above.
type Options struct {
	// CAFile and CAPEM hold extra PEM certificates trusted in addition to
	// the system roots (both may be set; all certificates are added).
	CAFile string
	CAPEM  []byte

	// Client certificate for mutual TLS: a file pair or PEM bytes. Each half
	// may come from either form (e.g. CertFile with KeyPEM), but both halves
	// are required.
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte

	// InsecureSkipVerify DISABLES SERVER CERTIFICATE VERIFICATION: anyone on
	// the network path can impersonate the registry, read the credentials
	// sent to it and serve forged content (digests still protect pulls by
	// digest, not by tag). Only for throwaway test registries; prefer CAFile.
	InsecureSkipVerify bool

	// MaxRetries is how many times a failed idempotent request is repeated:
	// 0 means DefaultMaxRetries, negative disables retries.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts (0 means the defaults).
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps the Retry-After the client is willing to wait; a
	// longer one ends retrying and the 429/503 response is returned as is.
	MaxRetryAfter time.Duration

	// UserAgent is set on requests that have none (default "ocisync").
	UserAgent string

	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request was written: 0 means DefaultResponseHeaderTimeout, negative
	// means no limit. It does not bound body transfer; use context deadlines.
	ResponseHeaderTimeout time.Duration

	// OnRetry, if set, is called before each wait (for logs and metrics);
	// see Retry.OnRetry.
	OnRetry func(RetryEvent)

	// Limits, when set, bounds the requests in flight per registry and
	// pauses a registry's requests after a 429 (see Limit); share one
	// between clients so that they hold back together. Nil means no bound.
	Limits *Hosts
}

// NewClient returns an *http.Client with our transport, retry policy and
// redirect policy. It has no overall Timeout since blobs can be large:
// callers bound each request with a context deadline.
func NewClient(opts Options) (*http.Client, error) {
	base, err := NewTransport(opts)
	if err != nil {
		return nil, err
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	var sender http.RoundTripper = &userAgent{base: base, value: ua}
	if opts.Limits != nil {
		// Beneath Retry: each attempt takes a slot, the waits between
		// attempts hold none.
		sender = &Limit{Base: sender, Hosts: opts.Limits}
	}
	return &http.Client{
		Transport: &Retry{
			Base:          sender,
			MaxRetries:    opts.MaxRetries,
			MinBackoff:    opts.MinBackoff,
			MaxBackoff:    opts.MaxBackoff,
			MaxRetryAfter: opts.MaxRetryAfter,
			OnRetry:       opts.OnRetry,
		},
		CheckRedirect: CheckRedirect,
	}, nil
}

// NewTransport returns the base transport used by NewClient, without retries
// or User-Agent: http.DefaultTransport's settings plus our TLS configuration
// and a proxy function read from the environment now (not cached for the
// process as http.ProxyFromEnvironment is).
func NewTransport(opts Options) (*http.Transport, error) {
	tlsConf, err := TLSConfig(opts)
	if err != nil {
		return nil, err
	}
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	headerTimeout := opts.ResponseHeaderTimeout
	switch {
	case headerTimeout == 0:
		headerTimeout = DefaultResponseHeaderTimeout
	case headerTimeout < 0:
		headerTimeout = 0
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: func(req *http.Request) (*url.URL, error) {
			return proxy(req.URL)
		},
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16, // parallel layer downloads hit one registry
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: 1 * time.Second,
	}, nil
}

// TLSConfig builds the client TLS configuration from opts: TLS 1.2 or
// later, system roots plus CAFile/CAPEM, and the client certificate if any.
// Errors name the file or field that failed.
func TLSConfig(opts Options) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}

	if opts.CAFile != "" || len(opts.CAPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			// No system roots (e.g. a scratch image): trust only the extra CAs.
			pool = x509.NewCertPool()
		}
		if opts.CAFile != "" {
			data, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("reading CA file %q: %w", opts.CAFile, err)
			}
			if err := addPEMCerts(pool, data); err != nil {
				return nil, fmt.Errorf("CA file %q: %w", opts.CAFile, err)
			}
		}
		if len(opts.CAPEM) > 0 {
			if err := addPEMCerts(pool, opts.CAPEM); err != nil {
				return nil, fmt.Errorf("CA PEM (Options.CAPEM): %w", err)
			}
		}
		conf.RootCAs = pool
	}

	cert, err := clientCertificate(opts)
	if err != nil {
		return nil, err
	}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}

	conf.InsecureSkipVerify = opts.InsecureSkipVerify
	return conf, nil
}

// addPEMCerts parses every CERTIFICATE block in data into pool. Unlike
// CertPool.AppendCertsFromPEM it reports a corrupt block instead of
// silently skipping it, and fails when there is no certificate at all.
func addPEMCerts(pool *x509.CertPool, data []byte) error {
	n := 0
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue // bundles may carry keys or parameters; they are not roots
		}
		n++
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("certificate #%d is not a valid X.509 certificate: %w", n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return errors.New("no PEM \"CERTIFICATE\" block found; expected a PEM-encoded CA certificate bundle")
	}
	return nil
}

// clientCertificate loads the mutual-TLS key pair, or returns nil when none
// is configured.
func clientCertificate(opts Options) (*tls.Certificate, error) {
	haveCert := opts.CertFile != "" || len(opts.CertPEM) > 0
	haveKey := opts.KeyFile != "" || len(opts.KeyPEM) > 0
	switch {
	case !haveCert && !haveKey:
		return nil, nil
	case !haveKey:
		return nil, fmt.Errorf("client certificate %s is set but its private key is missing: set KeyFile or KeyPEM too", certSource(opts))
	case !haveCert:
		return nil, fmt.Errorf("client private key %s is set but its certificate is missing: set CertFile or CertPEM too", keySource(opts))
	}
	if opts.CertFile != "" && len(opts.CertPEM) > 0 {
		return nil, errors.New("client certificate given twice (CertFile and CertPEM): set only one")
	}
	if opts.KeyFile != "" && len(opts.KeyPEM) > 0 {
		return nil, errors.New("client private key given twice (KeyFile and KeyPEM): set only one")
	}

	certPEM, keyPEM := opts.CertPEM, opts.KeyPEM
	var err error
	if opts.CertFile != "" {
		if certPEM, err = os.ReadFile(opts.CertFile); err != nil {
			return nil, fmt.Errorf("reading client certificate file %q: %w", opts.CertFile, err)
		}
	}
	if opts.KeyFile != "" {
		if keyPEM, err = os.ReadFile(opts.KeyFile); err != nil {
			return nil, fmt.Errorf("reading client key file %q: %w", opts.KeyFile, err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls messages name the problem (no PEM data, key does not
		// match, ...) and never include key material.
		hint := ""
		if strings.Contains(string(keyPEM), "ENCRYPTED") {
			hint = " (encrypted private keys are not supported: decrypt the key first)"
		}
		return nil, fmt.Errorf("loading client certificate %s with key %s: %w%s", certSource(opts), keySource(opts), err, hint)
	}
	return &cert, nil
}

func certSource(opts Options) string {
	if opts.CertFile != "" {
		return fmt.Sprintf("file %q", opts.CertFile)
	}
	return "(Options.CertPEM)"
}

func keySource(opts Options) string {
	if opts.KeyFile != "" {
		return fmt.Sprintf("file %q", opts.KeyFile)
	}
	return "(Options.KeyPEM)"
}

// userAgent sets a default User-Agent header without mutating the caller's
// request (RoundTrippers must not).
type userAgent struct {
	base  http.RoundTripper
	value string
}

func (u *userAgent) CloseIdleConnections() {
	if c, ok := u.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (u *userAgent) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") != "" {
		return u.base.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Header.Set("User-Agent", u.value)
	return u.base.RoundTrip(r)
}
