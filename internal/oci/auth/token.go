package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ocisync/ocisync/internal/oci/errdef"
)

// maxTokenResponseBytes bounds token server responses: a token document is
// a few KiB at most, and a hostile server must not make us buffer more.
const maxTokenResponseBytes = 1 << 20

// tokenRequest is what a token fetch needs.
type tokenRequest struct {
	registry string   // registry host, for messages
	realm    *url.URL // validated
	service  string
	scopes   []string
	cred     Credential
}

// redactedRealm is the realm for messages: no query string.
func (t *tokenRequest) redactedRealm() string {
	return errdef.RedactURL(t.realm.String())
}

// fetchToken gets a bearer token for t: OAuth2 with the identity token when
// there is one (falling back to the distribution GET when the token server
// does not implement the POST), the distribution GET otherwise (with Basic
// auth when there is a password, anonymous when not).
func (c *Client) fetchToken(ctx context.Context, t *tokenRequest) (string, time.Duration, error) {
	if t.cred.IdentityToken != "" {
		tok, life, err := c.fetchOAuth2Token(ctx, t)
		if !errors.Is(err, errOAuth2Unsupported) {
			return tok, life, err
		}
	}
	return c.fetchDistributionToken(ctx, t)
}

// errOAuth2Unsupported marks a token server answering the OAuth2 POST with
// 404 or 405: it only implements the distribution GET (Docker's client
// falls back the same way).
var errOAuth2Unsupported = errors.New("token server does not support OAuth2 POST")

func (c *Client) fetchOAuth2Token(ctx context.Context, t *tokenRequest) (string, time.Duration, error) {
	form := url.Values{}
	form.Set("grant_type", "refresh_token")
	form.Set("refresh_token", t.cred.IdentityToken)
	form.Set("client_id", c.clientID())
	if t.service != "" {
		form.Set("service", t.service)
	}
	if len(t.scopes) > 0 {
		form.Set("scope", strings.Join(t.scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.realm.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("building token request for %s to %s: %w", t.registry, t.redactedRealm(), stripURLError(err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.sendTokenRequest(req)
	if err != nil {
		return "", 0, fmt.Errorf("requesting an OAuth2 token for %s from %s: %w", t.registry, t.redactedRealm(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		drain(resp.Body)
		return "", 0, errOAuth2Unsupported
	}
	return c.readTokenResponse(resp, t, true)
}

func (c *Client) fetchDistributionToken(ctx context.Context, t *tokenRequest) (string, time.Duration, error) {
	u := *t.realm
	q := u.Query()
	if t.service != "" {
		q.Set("service", t.service)
	}
	for _, s := range t.scopes {
		q.Add("scope", s)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", 0, fmt.Errorf("building token request for %s to %s: %w", t.registry, t.redactedRealm(), stripURLError(err))
	}
	if t.cred.hasBasic() {
		req.SetBasicAuth(t.cred.Username, t.cred.Password)
	}
	resp, err := c.sendTokenRequest(req)
	if err != nil {
		return "", 0, fmt.Errorf("requesting a token for %s from %s: %w", t.registry, t.redactedRealm(), err)
	}
	defer resp.Body.Close()
	return c.readTokenResponse(resp, t, false)
}

// sendTokenRequest sends a request to the token realm. Credentials in it
// must not follow a redirect to another origin.
func (c *Client) sendTokenRequest(req *http.Request) (*http.Response, error) {
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	resp, err := guardRedirects(c.httpClient(), req.URL).Do(req)
	if err != nil {
		return nil, stripURLError(err)
	}
	return resp, nil
}

// tokenResponse covers both the distribution and the OAuth2 response.
type tokenResponse struct {
	Token       string          `json:"token"`
	AccessToken string          `json:"access_token"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
}

func (c *Client) readTokenResponse(resp *http.Response, t *tokenRequest, oauth2 bool) (string, time.Duration, error) {
	kind := "token"
	if oauth2 {
		kind = "OAuth2 token"
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		rerr := errdef.NewResponseError(resp)
		scrubResponseError(rerr, t.cred)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return "", 0, fmt.Errorf("token server %s refused the credentials for %s (%w); check the username and password or token for %s",
				t.redactedRealm(), t.registry, rerr, t.registry)
		case http.StatusForbidden:
			return "", 0, fmt.Errorf("token server %s denied access to %s for %s (%w); check that the credentials for %s may access it",
				t.redactedRealm(), strings.Join(t.scopes, " "), t.registry, rerr, t.registry)
		}
		return "", 0, fmt.Errorf("fetching a %s for %s: %w", kind, t.registry, rerr)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponseBytes+1))
	if err != nil {
		return "", 0, fmt.Errorf("reading the %s response for %s from %s: %w", kind, t.registry, t.redactedRealm(), err)
	}
	if len(body) > maxTokenResponseBytes {
		return "", 0, fmt.Errorf("the %s response for %s from %s is larger than %d bytes: %w",
			kind, t.registry, t.redactedRealm(), maxTokenResponseBytes, errdef.ErrTooLarge)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		hint := ""
		if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '<' {
			hint = " (it looks like an HTML page: is the realm the registry advertises reachable and correct?)"
		}
		return "", 0, fmt.Errorf("the %s response for %s from %s is not a JSON token document%s: %w",
			kind, t.registry, t.redactedRealm(), hint, errdef.ErrUnauthorized)
	}
	token := tr.AccessToken
	if token == "" && !oauth2 {
		token = tr.Token
	}
	if token == "" {
		field := `"token" or "access_token"`
		if oauth2 {
			field = `"access_token"`
		}
		return "", 0, fmt.Errorf("the %s response for %s from %s has no %s: %w",
			kind, t.registry, t.redactedRealm(), field, errdef.ErrUnauthorized)
	}
	return token, parseExpiresIn(tr.ExpiresIn), nil
}

// parseExpiresIn reads expires_in as a number of seconds, accepting a
// numeric string too; anything else means unknown (0).
func parseExpiresIn(raw json.RawMessage) time.Duration {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" {
		return 0
	}
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil || secs <= 0 || secs != secs {
		return 0
	}
	if secs > maxTokenLifetime.Seconds() {
		return maxTokenLifetime
	}
	return time.Duration(secs * float64(time.Second))
}

// scrubResponseError removes the credential's secrets from the messages a
// token server sent back, in case it echoes them.
func scrubResponseError(e *errdef.ResponseError, cred Credential) {
	for i := range e.Errors {
		for _, secret := range []string{cred.Password, cred.IdentityToken, cred.RegistryToken} {
			if secret != "" {
				e.Errors[i].Message = strings.ReplaceAll(e.Errors[i].Message, secret, "<redacted>")
				e.Errors[i].Code = strings.ReplaceAll(e.Errors[i].Code, secret, "<redacted>")
			}
		}
	}
}

// validateRealm checks the token realm a registry advertised before any
// credential is sent there. registry is the URL the challenged request
// went to.
//
//   - It must be an absolute http or https URL without user info.
//   - Plain http only when the registry itself was contacted over plain
//     http: otherwise a registry reached over TLS could make us send its
//     credentials unencrypted.
//   - An IP-literal realm must not be link-local (cloud metadata services
//     live there), unspecified or multicast, and a loopback realm (or
//     "localhost") is allowed only for a loopback registry: a remote
//     registry must not turn the operator into a proxy to services on its
//     own node. Private addresses are allowed: in-cluster registries and
//     token servers use them.
//
// Cross-host realms are allowed, as the distribution spec intends (Docker
// Hub's is auth.docker.io).
func validateRealm(realm string, registry *url.URL) (*url.URL, error) {
	refuse := func(why string) error {
		return fmt.Errorf("refusing the token realm %s advertised by registry %s: %s: %w",
			errdef.RedactURL(realm), registry.Host, why, errdef.ErrUnauthorized)
	}
	u, err := url.Parse(realm)
	if err != nil {
		return nil, refuse("it is not a valid URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !strings.EqualFold(registry.Scheme, "http") {
			return nil, refuse("it uses plain http while the registry was contacted over https, which would send credentials unencrypted")
		}
	default:
		return nil, refuse("it must be an absolute http or https URL")
	}
	if u.Host == "" || u.Opaque != "" {
		return nil, refuse("it must be an absolute http or https URL with a host")
	}
	if u.User != nil {
		return nil, refuse("it must not contain user information")
	}
	realmHost := strings.ToLower(u.Hostname())
	registryHost := strings.ToLower(registry.Hostname())
	if realmHost != registryHost {
		if ip := net.ParseIP(realmHost); ip != nil {
			if ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
				ip.IsMulticast() || ip.IsUnspecified() {
				return nil, refuse("it points at a link-local, multicast or unspecified address")
			}
		}
		if isLoopbackHost(realmHost) && !isLoopbackHost(registryHost) {
			return nil, refuse("it points at this machine's loopback interface while the registry is remote")
		}
	}
	u.Fragment = ""
	return u, nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// stripURLError replaces the URL inside a *url.Error with its redacted form:
// token realms and registry URLs may carry secrets in the query string.
func stripURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: errdef.RedactURL(ue.URL), Err: ue.Err}
	}
	return err
}

// drain reads a little of a response body we are about to discard so that
// the connection can be reused, then closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}
