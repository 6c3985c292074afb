// Package cloudauth gets registry credentials from the cloud the manager
// runs in, the way each cloud's own SDK finds them, for spec.provider aws,
// gcp and azure:
//
//   - aws: the SDK's default credential chain (environment, IRSA web
//     identity token file with STS AssumeRoleWithWebIdentity, EKS Pod
//     Identity agent, instance metadata), then ECR GetAuthorizationToken in
//     the registry's region (ECR Public: us-east-1). Username "AWS".
//   - gcp: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
//     then the GKE metadata server's token for the Workload Identity
//     service account), used as username "oauth2accesstoken".
//   - azure: workload identity (AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID,
//     AZURE_TENANT_ID, AZURE_AUTHORITY_HOST) or managed identity, an Entra
//     ID token exchanged at https://<registry>/oauth2/exchange for an ACR
//     refresh token, sent as an identity token.
//
// With an Identity (spec.serviceAccountName), the credential is that
// ServiceAccount's cloud identity instead of the manager's: a token the
// caller requests for the ServiceAccount with the audience the provider
// needs (see Identity) is exchanged at the cloud's security token
// service.
//
// Credentials are cached until shortly before they expire; Credentials.Retry
// drops one the registry refused and tries once more. Each provider sends
// credentials only to its own registries (CheckHost). Errors name the
// provider, host and step, never a token, and are of one of the classes
// ErrHostRefused, ErrUnsupported, ErrAuthFailed or ErrUnavailable. No token
// is logged or written anywhere: they live in this package's memory only.
//
// The package must not be imported by internal/oci: the registry client
// knows only auth.CredentialFunc.
package cloudauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/errdef"
)

// Options configure Credentials. The zero value is what the manager uses.
type Options struct {
	// HTTPClient reaches the identity endpoints, security token services,
	// ECR and the ACR exchange; nil means a client with the environment's
	// proxy settings. The GCE metadata server is reached the way its
	// client library does, without it.
	HTTPClient *http.Client
	// Now is the clock of the cache; nil means time.Now.
	Now func() time.Time

	// The rest is for tests, which run every endpoint on loopback.

	// HostAliases maps a registry host as requests name it to the cloud
	// registry host it stands for: the host check, region and cloud are
	// taken from the latter. Never set it from user input.
	HostAliases map[string]string
	// GoogleSTSURL replaces https://sts.googleapis.com/v1/token and
	// GoogleIAMCredentialsURL https://iamcredentials.googleapis.com for
	// per-ServiceAccount gcp identities.
	GoogleSTSURL, GoogleIAMCredentialsURL string
	// ACRExchangeURL returns the exchange endpoint of an ACR host; nil
	// means https://<host>/oauth2/exchange.
	ACRExchangeURL func(host string) string
	// Getenv reads the environment variables this package reads itself:
	// AZURE_AUTHORITY_HOST, AZURE_CLIENT_ID, AZURE_TENANT_ID and
	// AZURE_FEDERATED_TOKEN_FILE of Azure Workload Identity, and
	// AWS_CONTAINER_CREDENTIALS_FULL_URI of the EKS Pod Identity agent;
	// nil means os.Getenv. The AWS SDK and the Google libraries read the
	// process environment whatever it says, as does azidentity for a
	// variable Getenv returns empty.
	Getenv func(string) string
	// AzureDisableInstanceDiscovery skips Entra ID's authority validation,
	// for a test authority (AZURE_AUTHORITY_HOST) on loopback.
	AzureDisableInstanceDiscovery bool
}

// Credentials gets registry credentials for one provider. It is safe for
// concurrent use; the manager keeps one per provider for its lifetime.
type Credentials struct {
	provider Provider
	opts     Options
	hc       *http.Client
	cache    *cache
	impl     source

	mu     sync.Mutex
	served map[string]auth.Credential // last credential served per cache key
}

// source is one provider's way to a registry credential.
type source interface {
	// key names what a credential depends on besides the identity, e.g.
	// the ECR region and account; cloudHost passed CheckHost.
	key(cloudHost string) string
	fetch(ctx context.Context, cloudHost, host string, id *Identity) (auth.Credential, time.Time, error)
}

// New returns the Credentials of provider p (aws, gcp or azure). Nothing
// is requested until the first credential is.
func New(p Provider, opts Options) (*Credentials, error) {
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: time.Minute}
	}
	c := &Credentials{provider: p, opts: opts, hc: hc, cache: newCache(opts.Now), served: map[string]auth.Credential{}}
	switch p {
	case AWS:
		c.impl = newAWS(c)
	case GCP:
		c.impl = newGCP(c)
	case Azure:
		c.impl = newAzure(c)
	default:
		return nil, fmt.Errorf("cloudauth: provider %q has no cloud credentials (want aws, gcp or azure)", p)
	}
	return c, nil
}

// getenv is Options.Getenv or os.Getenv.
func (c *Credentials) getenv(k string) string {
	if c.opts.Getenv != nil {
		return c.opts.Getenv(k)
	}
	return os.Getenv(k)
}

// Provider returns the provider of c.
func (c *Credentials) Provider() Provider { return c.provider }

// cloudHost applies HostAliases.
func (c *Credentials) cloudHost(host string) string {
	if a, ok := c.opts.HostAliases[host]; ok {
		return a
	}
	return host
}

// CheckHost is CheckHost for c's provider, after HostAliases.
func (c *Credentials) CheckHost(host string) error {
	return CheckHost(c.provider, c.cloudHost(host))
}

func (c *Credentials) cacheKey(cloudHost string, id *Identity) string {
	return c.impl.key(cloudHost) + "\x00" + id.key()
}

// Get returns the credential for registry host, of the manager's identity
// when id is nil, else of id's ServiceAccount.
func (c *Credentials) Get(ctx context.Context, host string, id *Identity) (auth.Credential, error) {
	cloud := c.cloudHost(host)
	if err := CheckHost(c.provider, cloud); err != nil {
		return auth.Credential{}, err
	}
	if id != nil {
		if err := id.check(c.provider); err != nil {
			return auth.Credential{}, err
		}
	}
	key := c.cacheKey(cloud, id)
	cred, err := c.cache.get(ctx, key, func(ctx context.Context) (auth.Credential, time.Time, error) {
		return c.impl.fetch(ctx, cloud, host, id)
	})
	if err != nil {
		return auth.Credential{}, err
	}
	c.mu.Lock()
	if len(c.served) >= maxEntries {
		clear(c.served)
	}
	c.served[key] = cred
	c.mu.Unlock()
	return cred, nil
}

// CredentialFunc returns the auth.CredentialFunc for a registry client:
// Get with id for every host the client asks about.
func (c *Credentials) CredentialFunc(id *Identity) auth.CredentialFunc {
	return func(ctx context.Context, host string) (auth.Credential, error) {
		return c.Get(ctx, host, id)
	}
}

// Invalidate drops the cached credential of host and id, so that the next
// Get fetches a fresh one; a 401 or 403 from the registry with a
// credential that expired early (an ECR token whose role lost access, a
// revoked refresh token) calls for it. It reports whether a credential
// was dropped.
func (c *Credentials) Invalidate(host string, id *Identity) bool {
	key := c.cacheKey(c.cloudHost(host), id)
	c.mu.Lock()
	failed, ok := c.served[key]
	delete(c.served, key)
	c.mu.Unlock()
	if !ok {
		return false
	}
	return c.cache.invalidate(key, failed)
}

// Retry runs op, and when it fails because the registry refused the
// credential (401 or 403, errdef.ErrUnauthorized or ErrDenied), drops the
// credential of host and id and runs op once more with a fresh one. A
// failure to get the credential itself is not retried here.
func (c *Credentials) Retry(ctx context.Context, host string, id *Identity, op func(context.Context) error) error {
	err := op(ctx)
	if err == nil || !RefusedByRegistry(err) {
		return err
	}
	if !c.Invalidate(host, id) {
		return err
	}
	return op(ctx)
}

// RefusedByRegistry reports whether err is a registry's 401 or 403, and
// not a failure of this package to get a credential.
func RefusedByRegistry(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return false
	}
	return errors.Is(err, errdef.ErrUnauthorized) || errors.Is(err, errdef.ErrDenied)
}
