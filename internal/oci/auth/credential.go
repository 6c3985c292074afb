// Package auth authenticates requests to OCI registries: Basic auth, the
// distribution token flow (anonymous, with Basic credentials, or OAuth2 with
// an identity token), a shared token cache that tracks expiry, and Docker
// config / Kubernetes pull-secret parsing.
//
// Secrets (passwords, identity tokens, registry tokens, bearer tokens) never
// appear in error messages, in String output of the types here, or in cache
// map keys.
package auth

import (
	"context"
	"fmt"
)

// Credential for one registry. The zero value means anonymous.
//
// Username and Password are used for Basic challenges and to authenticate
// to a token server with the distribution GET flow. IdentityToken is an
// OAuth2 refresh token (Docker's "identitytoken") exchanged at the token
// server with a POST. RegistryToken is a bearer token sent to the registry
// as is (Docker's "registrytoken").
type Credential struct {
	Username      string
	Password      string
	IdentityToken string
	RegistryToken string
}

// IsEmpty reports whether c carries nothing, i.e. is anonymous.
func (c Credential) IsEmpty() bool {
	return c == Credential{}
}

// hasBasic reports whether c can answer a Basic challenge or authenticate
// to a token server with Basic auth. A username alone is not enough: the
// Docker CLI stores "user:" with an empty password next to an identity
// token, and sending that would only turn an anonymous token into a 401.
func (c Credential) hasBasic() bool {
	return c.Password != ""
}

// String describes c without its secrets, so that a Credential that ends up
// in a log line or %v does no harm.
func (c Credential) String() string {
	if c.IsEmpty() {
		return "Credential{anonymous}"
	}
	return fmt.Sprintf("Credential{Username: %q, Password: %s, IdentityToken: %s, RegistryToken: %s}",
		c.Username, redacted(c.Password), redacted(c.IdentityToken), redacted(c.RegistryToken))
}

// GoString is String, so that %#v does not print secrets either.
func (c Credential) GoString() string { return c.String() }

func redacted(s string) string {
	if s == "" {
		return `""`
	}
	return "<redacted>"
}

// CredentialFunc returns the credential for a registry host (host[:port], as
// used in request URLs). An empty Credential means anonymous.
type CredentialFunc func(ctx context.Context, host string) (Credential, error)

// StaticCredential returns a CredentialFunc that gives cred for host and
// the empty credential for any other host. Host matching follows Lookup:
// case-insensitive, and docker.io, index.docker.io and
// registry-1.docker.io are one registry.
func StaticCredential(host string, cred Credential) CredentialFunc {
	want := canonicalHost(host)
	return func(_ context.Context, h string) (Credential, error) {
		if canonicalHost(h) == want {
			return cred, nil
		}
		return Credential{}, nil
	}
}
