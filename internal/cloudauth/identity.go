package cloudauth

import (
	"context"
	"fmt"
	"strings"
)

// ServiceAccount annotations that name a ServiceAccount's cloud identity,
// the ones each cloud's own Kubernetes integration reads.
const (
	// AnnotationAWSRoleARN is IRSA's: the IAM role to assume with the
	// ServiceAccount's token. Without it, aws uses EKS Pod Identity.
	AnnotationAWSRoleARN = "eks.amazonaws.com/role-arn"
	// AnnotationAzureClientID and AnnotationAzureTenantID are Azure
	// Workload Identity's: the managed identity or app registration
	// federated with the ServiceAccount. The tenant defaults to the
	// manager's AZURE_TENANT_ID.
	AnnotationAzureClientID = "azure.workload.identity/client-id"
	AnnotationAzureTenantID = "azure.workload.identity/tenant-id"
	// AnnotationGCPServiceAccount is GKE Workload Identity's: the IAM
	// service account to impersonate. Without it, the federated
	// ServiceAccount's own principal is used (permissions granted to
	// principal://…/subject/ns/NAMESPACE/sa/NAME).
	AnnotationGCPServiceAccount = "iam.gke.io/gcp-service-account"
)

// Audiences of the ServiceAccount tokens each cloud accepts.
const (
	AudienceAWSSTS         = "sts.amazonaws.com"
	AudienceEKSPodIdentity = "pods.eks.amazonaws.com"
	AudienceAzure          = "api://AzureADTokenExchange"
	// gcp: "<project>.svc.id.goog", the cluster's workload identity pool,
	// read from the metadata server.
)

// TokenFunc returns a token (a JWT) of the ServiceAccount for audience.
// The controller implements it with the TokenRequest API
// (serviceaccounts/token create); tokens it returns are not kept beyond
// the exchange.
type TokenFunc func(ctx context.Context, audience string) (string, error)

// Identity is a ServiceAccount whose cloud identity is used instead of
// the manager's. Build it with NewIdentity.
type Identity struct {
	Namespace, Name string
	// Token gets the ServiceAccount's token for an audience.
	Token TokenFunc

	provider Provider
	// aws: the role to assume; empty means EKS Pod Identity.
	roleARN string
	// azure: the client (and tenant, if not the manager's).
	clientID, tenantID string
	// gcp: the IAM service account to impersonate, or empty.
	gcpServiceAccount string
}

var (
	roleARN   = lazyRegexp(`^arn:aws(-cn|-us-gov|-iso|-iso-b|-iso-e|-iso-f|-eusc)?:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	azureID   = lazyRegexp(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	gcpSAName = lazyRegexp(`^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9-.:]+\.iam\.gserviceaccount\.com$`)
)

// NewIdentity reads the cloud identity of ServiceAccount namespace/name
// from its annotations, for provider p. It is pure: a missing or
// malformed annotation is an ErrUnsupported error naming it.
//
//   - aws: eks.amazonaws.com/role-arn (IRSA: AssumeRoleWithWebIdentity
//     with a token of audience sts.amazonaws.com); without it, EKS Pod
//     Identity (the agent's credentials for the ServiceAccount's
//     association, with a token of audience pods.eks.amazonaws.com),
//     which needs the manager to run where the agent is
//     (AWS_CONTAINER_CREDENTIALS_FULL_URI).
//   - azure: azure.workload.identity/client-id, required, and
//     azure.workload.identity/tenant-id, optional (a client assertion
//     with a token of audience api://AzureADTokenExchange).
//   - gcp: GKE only (the pool and provider come from the metadata
//     server); iam.gke.io/gcp-service-account, optional, is impersonated.
func NewIdentity(p Provider, namespace, name string, annotations map[string]string, token TokenFunc) (*Identity, error) {
	id := &Identity{Namespace: namespace, Name: name, Token: token, provider: p}
	refuse := func(format string, args ...any) (*Identity, error) {
		return nil, &Error{Provider: p, Host: "ServiceAccount " + namespace + "/" + name, Step: "reading the cloud identity", Kind: ErrUnsupported, Err: fmt.Errorf(format, args...)}
	}
	switch p {
	case AWS:
		if v, ok := annotations[AnnotationAWSRoleARN]; ok {
			v = strings.TrimSpace(v)
			if len(v) > 2048 || !roleARN().MatchString(v) {
				return refuse("annotation %s is %q, not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", AnnotationAWSRoleARN, v)
			}
			id.roleARN = v
		}
	case Azure:
		v := strings.TrimSpace(annotations[AnnotationAzureClientID])
		if v == "" {
			return refuse("annotation %s is missing; Azure Workload Identity needs the client ID of the identity federated with this ServiceAccount", AnnotationAzureClientID)
		}
		if !azureID().MatchString(v) {
			return refuse("annotation %s is %q, not a client ID (a GUID)", AnnotationAzureClientID, v)
		}
		id.clientID = v
		if t, ok := annotations[AnnotationAzureTenantID]; ok {
			t = strings.TrimSpace(t)
			if !azureID().MatchString(t) {
				return refuse("annotation %s is %q, not a tenant ID (a GUID)", AnnotationAzureTenantID, t)
			}
			id.tenantID = t
		}
	case GCP:
		if v, ok := annotations[AnnotationGCPServiceAccount]; ok {
			v = strings.TrimSpace(v)
			if !gcpSAName().MatchString(v) {
				return refuse("annotation %s is %q, not an IAM service account email (<name>@<project>.iam.gserviceaccount.com)", AnnotationGCPServiceAccount, v)
			}
			id.gcpServiceAccount = v
		}
	default:
		return refuse("provider %q has no cloud identity for a ServiceAccount; use pull secrets (provider generic)", p)
	}
	return id, nil
}

// check is called before an identity is used.
func (id *Identity) check(p Provider) error {
	if id.provider != p {
		return &Error{Provider: p, Host: "ServiceAccount " + id.Namespace + "/" + id.Name, Step: "reading the cloud identity", Kind: ErrUnsupported, Err: fmt.Errorf("the identity was read for provider %s", id.provider)}
	}
	if id.Token == nil {
		return &Error{Provider: p, Host: "ServiceAccount " + id.Namespace + "/" + id.Name, Step: "reading the cloud identity", Kind: ErrUnsupported, Err: fmt.Errorf("no way to request its tokens")}
	}
	return nil
}

// key identifies id in cache keys: the ServiceAccount and the cloud
// identity it names, so that neither a changed annotation nor another
// ServiceAccount naming the same identity finds a cached credential.
func (id *Identity) key() string {
	if id == nil {
		return "manager"
	}
	return strings.Join([]string{"sa", id.Namespace, id.Name, id.roleARN, id.clientID, id.tenantID, id.gcpServiceAccount}, "\x00")
}

// String names the ServiceAccount and its cloud identity; no secret.
func (id *Identity) String() string {
	if id == nil {
		return "the manager's identity"
	}
	s := "ServiceAccount " + id.Namespace + "/" + id.Name
	switch {
	case id.roleARN != "":
		s += " (role " + id.roleARN + ")"
	case id.clientID != "":
		s += " (client " + id.clientID + ")"
	case id.gcpServiceAccount != "":
		s += " (service account " + id.gcpServiceAccount + ")"
	}
	return s
}
