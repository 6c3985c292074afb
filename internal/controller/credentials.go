package controller

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/cloudauth"
	"github.com/ocisync/ocisync/internal/metrics"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

// controllerRetries is lower than the CLI's: the controller retries the
// whole sync with backoff itself, and a long in-call retry would hold a
// worker.
const controllerRetries = 2

// registryClient builds the registry client for obj: credentials from its
// pullSecrets and its ServiceAccount's imagePullSecrets (first match per
// registry wins, as for kubelet), TLS material from certSecretRef. Only
// objects of obj's own namespace are read.
//
// It also returns where the credentials came from, so that a sync Job can
// mount the same Secrets.
//
// With a cloud provider (spec.provider), the credentials come from the
// cloud instead (cloudCredentials), once its host check passed.
func (r *ArtifactReconciler) registryClient(ctx context.Context, obj *v1alpha1.Artifact) (*oci.Client, *registryAccess, error) {
	provider, err := cloudauth.ParseProvider(obj.Spec.Provider)
	if err != nil {
		return nil, nil, stalled(v1alpha1.ReasonInvalidSpec, "spec.provider: %w", err)
	}
	var store *auth.Store
	var secrets []pullSecret
	var cloudCreds auth.CredentialFunc
	var cloud *cloudAccess
	if provider == cloudauth.Generic {
		store, secrets, err = r.credentials(ctx, obj)
	} else {
		cloudCreds, cloud, err = r.cloudCredentials(ctx, obj, provider)
	}
	if err != nil {
		return nil, nil, err
	}
	access := &registryAccess{pullSecrets: secrets, cloud: cloud}
	topts := transport.Options{MaxRetries: controllerRetries, UserAgent: "ocisync-controller", Limits: r.RegistryLimits}
	if ref := obj.Spec.CertSecretRef; ref != nil {
		secret, err := r.secret(ctx, obj.Namespace, ref.Name, "spec.certSecretRef")
		if err != nil {
			return nil, nil, err
		}
		topts.CAPEM, topts.CertPEM, topts.KeyPEM = secret.Data[keyCA], secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]
		if (len(topts.CertPEM) == 0) != (len(topts.KeyPEM) == 0) {
			return nil, nil, stalled(v1alpha1.ReasonCredentialsNotFound, "Secret %q (spec.certSecretRef) has only one of tls.crt and tls.key; a client certificate needs both", ref.Name)
		}
		access.certSecret = ref.Name
		access.hasCA = len(topts.CAPEM) > 0
		access.hasClientCert = len(topts.CertPEM) > 0
	}
	hc, err := r.httpClient(topts)
	if err != nil {
		return nil, nil, transient(v1alpha1.ReasonCredentialsNotFound, "Secret %q (spec.certSecretRef): %w", obj.Spec.CertSecretRef.Name, err)
	}
	opts := oci.Options{
		PlainHTTP:  obj.Spec.PlainHTTP,
		HTTPClient: hc,
		TokenCache: r.TokenCache,
		UserAgent:  topts.UserAgent,
	}
	if store != nil {
		opts.Credentials = store.CredentialFunc()
	}
	if cloudCreds != nil {
		opts.Credentials = cloudCreds
	}
	c, err := oci.NewClient(opts)
	if err != nil {
		return nil, nil, err
	}
	return c, access, nil
}

// keyCA is the key of certSecretRef that holds certificate authorities.
const keyCA = "ca.crt"

// registryAccess says which Secrets a registry client was built from, in
// order of precedence.
type registryAccess struct {
	pullSecrets []pullSecret
	// certSecret is spec.certSecretRef's name, when set, and which of its
	// keys hold material.
	certSecret    string
	hasCA         bool
	hasClientCert bool
	// cloud is set with a cloud provider (spec.provider).
	cloud *cloudAccess
}

// pullSecret is a Secret holding registry credentials and the key its
// type keeps them under.
type pullSecret struct {
	name, key string
}

// credentials merges the docker configs of the pull secrets, then of the
// ServiceAccount's imagePullSecrets.
func (r *ArtifactReconciler) credentials(ctx context.Context, obj *v1alpha1.Artifact) (*auth.Store, []pullSecret, error) {
	names := make([]string, 0, len(obj.Spec.PullSecrets))
	fields := make([]string, 0, len(obj.Spec.PullSecrets))
	for _, ref := range obj.Spec.PullSecrets {
		names = append(names, ref.Name)
		fields = append(fields, "spec.pullSecrets")
	}
	if sa := obj.Spec.ServiceAccountName; sa != "" {
		account, err := r.serviceAccount(ctx, obj)
		if err != nil {
			return nil, nil, err
		}
		for _, ref := range account.ImagePullSecrets {
			names = append(names, ref.Name)
			fields = append(fields, fmt.Sprintf("imagePullSecrets of ServiceAccount %q", sa))
		}
	}
	if len(names) == 0 {
		return nil, nil, nil
	}
	var store *auth.Store
	secrets := make([]pullSecret, 0, len(names))
	for i, name := range names {
		secret, err := r.secret(ctx, obj.Namespace, name, fields[i])
		if err != nil {
			return nil, nil, err
		}
		s, key, err := dockerConfigOf(secret)
		if err != nil {
			return nil, nil, badSecret(name, fields[i], err)
		}
		secrets = append(secrets, pullSecret{name: name, key: key})
		if store == nil {
			store = s
		} else {
			store.Merge(s)
		}
	}
	return store, secrets, nil
}

// badSecret reports a malformed Secret. It is transient:
// fixing the Secret (which is watched) mends it without a spec change.
func badSecret(name, field string, err error) error {
	return transient(v1alpha1.ReasonCredentialsNotFound, "Secret %q (%s) holds no usable registry credentials: %w", name, field, err)
}

// serviceAccount reads the ServiceAccount of spec.serviceAccountName. It
// is shared: never modify it.
func (r *ArtifactReconciler) serviceAccount(ctx context.Context, obj *v1alpha1.Artifact) (*corev1.ServiceAccount, error) {
	sa := obj.Spec.ServiceAccountName
	_, accounts := r.refs()
	account, err := accounts.get(ctx, r.metadata(), r.reader(), types.NamespacedName{Namespace: obj.Namespace, Name: sa})
	if apierrors.IsNotFound(err) {
		return nil, transient(v1alpha1.ReasonCredentialsNotFound, "ServiceAccount %q (spec.serviceAccountName) does not exist in namespace %q; create it or fix the name", sa, obj.Namespace)
	}
	if err != nil {
		return nil, transient(v1alpha1.ReasonCredentialsNotFound, "reading ServiceAccount %q: %w", sa, err)
	}
	return account, nil
}

// secret reads a Secret a sync uses. It is shared: never modify it.
func (r *ArtifactReconciler) secret(ctx context.Context, namespace, name, field string) (*corev1.Secret, error) {
	secrets, _ := r.refs()
	secret, err := secrets.get(ctx, r.metadata(), r.reader(), types.NamespacedName{Namespace: namespace, Name: name})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, transient(v1alpha1.ReasonCredentialsNotFound, "Secret %q (%s) does not exist in namespace %q; create it or fix the name", name, field, namespace)
		}
		return nil, transient(v1alpha1.ReasonCredentialsNotFound, "reading Secret %q (%s): %w", name, field, err)
	}
	return secret, nil
}

// dockerConfigOf reads a Secret shaped like a Pod's imagePullSecrets, and
// returns the key that holds the credentials.
func dockerConfigOf(secret *corev1.Secret) (*auth.Store, string, error) {
	var key string
	switch secret.Type {
	case corev1.SecretTypeDockerConfigJson:
		key = corev1.DockerConfigJsonKey
	case corev1.SecretTypeDockercfg:
		key = corev1.DockerConfigKey
	default:
		return nil, "", fmt.Errorf("its type is %q; want %s or %s (kubectl create secret docker-registry makes one)", secret.Type, corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg)
	}
	data := secret.Data[key]
	if len(data) == 0 {
		return nil, "", fmt.Errorf("it has no data under the key its type requires")
	}
	store, err := auth.ParseDockerConfig(data)
	if err != nil {
		return nil, "", err
	}
	return store, key, nil
}

// httpClients reuses HTTP clients (and so their connections) across
// reconciles, one per distinct TLS configuration.
type httpClients struct {
	mu      sync.Mutex
	clients map[[sha256.Size]byte]*http.Client
}

func (r *ArtifactReconciler) httpClient(opts transport.Options) (*http.Client, error) {
	h := sha256.New()
	for _, b := range [][]byte{opts.CAPEM, opts.CertPEM, opts.KeyPEM} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var key [sha256.Size]byte
	copy(key[:], h.Sum(nil))
	r.clients.mu.Lock()
	defer r.clients.mu.Unlock()
	if c, ok := r.clients.clients[key]; ok {
		return c, nil
	}
	c, err := transport.NewClient(opts)
	if err != nil {
		return nil, err
	}
	// Counted beneath the retries, so that the metric shows each attempt
	// the registry answered, 503s that a retry then mended included, and
	// beneath the per-registry limit, so that a request held back by a
	// rate limiting pause is not counted as sent.
	if retry, ok := c.Transport.(*transport.Retry); ok {
		if limit, ok := retry.Base.(*transport.Limit); ok {
			limit.Base = metrics.InstrumentRoundTripper(limit.Base)
		} else {
			retry.Base = metrics.InstrumentRoundTripper(retry.Base)
		}
	} else {
		c.Transport = metrics.InstrumentRoundTripper(c.Transport)
	}
	if r.clients.clients == nil {
		r.clients.clients = map[[sha256.Size]byte]*http.Client{}
	}
	// Bound the map: TLS material rotates, and old clients must not pile
	// up for the life of the process.
	if len(r.clients.clients) >= 256 {
		for k, old := range r.clients.clients {
			old.CloseIdleConnections()
			delete(r.clients.clients, k)
		}
	}
	r.clients.clients[key] = c
	return c, nil
}
