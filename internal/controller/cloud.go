package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/cloudauth"
	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

// Cloud holds the registry credentials of spec.provider aws, gcp and
// azure: one cloudauth.Credentials per provider, made on first use and
// shared by every Artifact for the manager's lifetime, so that a cached
// credential serves every Artifact of its identity and registry.
type Cloud struct {
	// Options configure each provider's credentials. The zero value is
	// what the manager uses; tests point the endpoints at loopback.
	Options cloudauth.Options
	// ServiceAccountIdentity lets spec.serviceAccountName name a cloud
	// identity: the manager then requests tokens of the Artifacts'
	// ServiceAccounts (serviceaccounts/token create). Off, such an
	// Artifact is Stalled and every Artifact of a cloud provider uses the
	// manager's identity (manager flag --cloud-service-account-identity).
	ServiceAccountIdentity bool

	mu    sync.Mutex
	creds map[cloudauth.Provider]*cloudauth.Credentials
}

// credentials returns p's credentials, made on first use.
func (c *Cloud) credentials(p cloudauth.Provider) (*cloudauth.Credentials, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cr, ok := c.creds[p]; ok {
		return cr, nil
	}
	cr, err := cloudauth.New(p, c.Options)
	if err != nil {
		return nil, err
	}
	if c.creds == nil {
		c.creds = map[cloudauth.Provider]*cloudauth.Credentials{}
	}
	c.creds[p] = cr
	return cr, nil
}

// cloud returns r.Cloud, or one with the defaults (the manager's
// identity only) when it is nil.
func (r *ArtifactReconciler) cloud() *Cloud {
	if r.Cloud != nil {
		return r.Cloud
	}
	r.cloudOnce.Do(func() { r.cloudDefault = &Cloud{} })
	return r.cloudDefault
}

// serviceAccountTokenTTL is the lifetime asked for the ServiceAccount
// tokens a cloud exchanges: the API server's minimum. A token is used
// once, for the exchange, and kept nowhere.
const serviceAccountTokenTTL = int64(600)

// cloudAccess is how a registry client of a cloud provider gets its
// credentials, to drop one the registry refused.
type cloudAccess struct {
	creds *cloudauth.Credentials
	id    *cloudauth.Identity // nil: the manager's identity
	host  string
}

// retry runs op, and once more with a fresh credential when the registry
// refused the one it had (an ECR token that expired early, a revoked
// refresh token). Without a cloud provider it runs op once.
func (a *cloudAccess) retry(ctx context.Context, op func(context.Context) error) error {
	if a == nil {
		return op(ctx)
	}
	return a.creds.Retry(ctx, a.host, a.id, op)
}

// cloudCredentials returns the credential function of obj's cloud
// provider, after checking that the provider may send credentials to the
// reference's registry: nothing is requested from a registry it refuses.
// With spec.serviceAccountName it is that ServiceAccount's cloud identity.
func (r *ArtifactReconciler) cloudCredentials(ctx context.Context, obj *v1alpha1.Artifact, p cloudauth.Provider) (auth.CredentialFunc, *cloudAccess, error) {
	switch {
	case len(obj.Spec.PullSecrets) > 0:
		return nil, nil, stalled(v1alpha1.ReasonInvalidSpec, "spec.pullSecrets are for provider generic; with provider %s the credentials come from the cloud: drop pullSecrets or set provider generic", p)
	case obj.Spec.PlainHTTP:
		return nil, nil, stalled(v1alpha1.ReasonInvalidSpec, "provider %s sends credentials over HTTPS only: drop spec.plainHTTP", p)
	case obj.Spec.Volume != nil:
		return nil, nil, stalled(v1alpha1.ReasonInvalidSpec, "the volume output's sync Jobs cannot carry a provider %s credential (it never leaves the manager's memory): use the configMap or secret output, or provider generic with pullSecrets", p)
	}
	ref, err := reference.Parse(obj.Spec.Reference)
	if err != nil {
		return nil, nil, stalled(v1alpha1.ReasonInvalidReference, "spec.reference: %w", err)
	}
	creds, err := r.cloud().credentials(p)
	if err != nil {
		return nil, nil, stalled(v1alpha1.ReasonInvalidSpec, "spec.provider: %w", err)
	}
	if err := creds.CheckHost(ref.Registry); err != nil {
		return nil, nil, err
	}
	var id *cloudauth.Identity
	if sa := obj.Spec.ServiceAccountName; sa != "" {
		if !r.cloud().ServiceAccountIdentity {
			return nil, nil, stalled(v1alpha1.ReasonInvalidSpec, "spec.serviceAccountName with provider %s asks for ServiceAccount %q's cloud identity, which this manager does not allow (it runs without --cloud-service-account-identity): drop serviceAccountName to use the manager's identity, or ask the cluster's administrator to enable it", p, sa)
		}
		account, err := r.serviceAccount(ctx, obj)
		if err != nil {
			return nil, nil, err
		}
		if id, err = cloudauth.NewIdentity(p, obj.Namespace, sa, account.Annotations, r.serviceAccountToken(obj.Namespace, sa)); err != nil {
			return nil, nil, err
		}
	}
	return creds.CredentialFunc(id), &cloudAccess{creds: creds, id: id, host: ref.Registry}, nil
}

// serviceAccountToken requests tokens of ServiceAccount namespace/name
// through the TokenRequest API, bound to nothing but their short life.
func (r *ArtifactReconciler) serviceAccountToken(namespace, name string) cloudauth.TokenFunc {
	return func(ctx context.Context, audience string) (string, error) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
		ttl := serviceAccountTokenTTL
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{audience},
			ExpirationSeconds: &ttl,
		}}
		if err := r.SubResource("token").Create(ctx, sa, tr); err != nil {
			var status apierrors.APIStatus
			if errors.As(err, &status) {
				// The API server's message names the ServiceAccount and
				// what is missing (RBAC), never a token.
				return "", fmt.Errorf("TokenRequest: %s", status.Status().Message)
			}
			return "", fmt.Errorf("TokenRequest: %w", err)
		}
		if tr.Status.Token == "" {
			return "", errors.New("TokenRequest: the API server returned no token")
		}
		return tr.Status.Token, nil
	}
}

// cloudError maps a cloudauth error onto a sync error: a host the
// provider refuses or an identity that cannot work waits for a spec (or
// ServiceAccount) change; a refusal by the cloud is AuthenticationFailed
// and an unreachable identity endpoint RegistryUnavailable, both retried.
// It returns nil for any other error.
func cloudError(err error) *syncError {
	var ce *cloudauth.Error
	if !errors.As(err, &ce) {
		return nil
	}
	switch {
	case errors.Is(err, cloudauth.ErrHostRefused), errors.Is(err, cloudauth.ErrUnsupported):
		return &syncError{reason: v1alpha1.ReasonInvalidSpec, stall: true, err: ce}
	case errors.Is(err, cloudauth.ErrUnavailable):
		return &syncError{reason: v1alpha1.ReasonRegistryUnavailable, err: err}
	default:
		return &syncError{reason: v1alpha1.ReasonAuthenticationFailed, err: err}
	}
}

// cloudAnnotations are the ServiceAccount annotations cloudauth reads.
var cloudAnnotations = []string{
	cloudauth.AnnotationAWSRoleARN,
	cloudauth.AnnotationGCPServiceAccount,
	cloudauth.AnnotationAzureClientID,
	cloudauth.AnnotationAzureTenantID,
}
