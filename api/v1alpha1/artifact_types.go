package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ArtifactSpec says which artifact to pull from which registry, how, how
// often, and where to publish its files.
// +kubebuilder:validation:XValidation:rule="(has(self.configMap) ? 1 : 0) + (has(self.secret) ? 1 : 0) + (has(self.volume) ? 1 : 0) <= 1",message="configMap, secret and volume are alternative outputs: set at most one"
// +kubebuilder:validation:XValidation:rule="!has(self.semver) || !self.reference.contains('@')",message="semver picks a tag, so the reference must not pin a digest (drop the @sha256:... part or the semver field)"
// +kubebuilder:validation:XValidation:rule="!has(self.provider) || self.provider == 'generic' || !has(self.pullSecrets) || size(self.pullSecrets) == 0",message="pullSecrets are for provider generic; with a cloud provider the credentials come from the cloud (drop pullSecrets or set provider: generic)"
// +kubebuilder:validation:XValidation:rule="!has(self.provider) || self.provider == 'generic' || !has(self.plainHTTP) || !self.plainHTTP",message="a cloud provider sends credentials over HTTPS only: drop plainHTTP"
// +kubebuilder:validation:XValidation:rule="!has(self.provider) || self.provider == 'generic' || !has(self.volume)",message="the volume output's sync Jobs cannot carry a cloud credential: use provider generic with pullSecrets, or the configMap or secret output"
type ArtifactSpec struct {
	// Reference names the artifact: registry/repository[:tag][@digest],
	// for example ghcr.io/org/config:v1 or
	// registry.example.com:5000/team/rules@sha256:<hex>. Without tag or
	// digest, "latest" is used. No scheme (https://) in front.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.contains('://')",message="reference must not start with a scheme such as https://; write registry/repository:tag"
	// +kubebuilder:validation:XValidation:rule="!self.matches('\\\\s')",message="reference must not contain whitespace"
	Reference string `json:"reference"`

	// MediaType selects the layers to publish: those of this media type.
	// Empty selects every layer that has a title
	// (org.opencontainers.image.title). A selector that matches no layer
	// is an error, not an empty output.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	MediaType string `json:"mediaType,omitempty"`

	// ArtifactType, when set, must equal the artifact's type: its
	// manifest's artifactType, or its config media type when that is
	// absent.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	ArtifactType string `json:"artifactType,omitempty"`

	// Platform picks a manifest from an image index, as os/arch or
	// os/arch/variant (linux/amd64, linux/arm/v7). Empty takes the only
	// entry of an index; an index with several entries is then an error
	// that lists them.
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-z0-9_.-]+/[a-z0-9_.-]+(/[a-z0-9_.-]+)?$`
	Platform string `json:"platform,omitempty"`

	// SemVer is a semantic version range, such as ">=1.2.0 <2.0.0" or
	// "~1.4". The newest tag of the repository that satisfies it is used
	// instead of the reference's tag.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	SemVer string `json:"semver,omitempty"`

	// PullSecrets name Secrets in the Artifact's namespace that hold
	// registry credentials, shaped like a Pod's imagePullSecrets: of type
	// kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg, as
	// `kubectl create secret docker-registry` makes them.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	PullSecrets []corev1.LocalObjectReference `json:"pullSecrets,omitempty"`

	// ServiceAccountName names a ServiceAccount in the Artifact's namespace.
	// With provider generic, its imagePullSecrets are used too, after
	// PullSecrets. With a cloud provider, its cloud identity is used
	// instead of the manager's: the manager requests a short-lived token
	// of the ServiceAccount (TokenRequest API, the cloud's audience) and
	// exchanges it at the cloud, so tenants do not share the manager's
	// identity. The ServiceAccount carries the annotation its cloud reads:
	// eks.amazonaws.com/role-arn (aws; without it, EKS Pod Identity),
	// iam.gke.io/gcp-service-account (gcp, optional) or
	// azure.workload.identity/client-id (azure, required).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// Provider says where registry credentials come from. generic (the
	// default): pullSecrets and the imagePullSecrets of
	// serviceAccountName. aws, gcp, azure: the cloud the manager runs in
	// (IRSA or EKS Pod Identity and ECR; GKE Workload Identity and
	// Artifact Registry; Azure Workload Identity or managed identity and
	// ACR), or serviceAccountName's cloud identity when it is set. A cloud
	// provider sends its credentials only to its own registries (ECR
	// hosts and public.ecr.aws; *-docker.pkg.dev and gcr.io; *.azurecr.io,
	// .cn, .us, on port 443): a reference to any other host is Stalled
	// with a message naming the host. A cloud provider takes no
	// pullSecrets, no plainHTTP, and no volume output (sync Jobs cannot
	// carry a cloud credential).
	// +optional
	// +kubebuilder:default=generic
	// +kubebuilder:validation:Enum=generic;aws;gcp;azure
	Provider string `json:"provider,omitempty"`

	// PlainHTTP talks to the registry over http:// instead of https://.
	// +optional
	PlainHTTP bool `json:"plainHTTP,omitempty"`

	// CertSecretRef names a Secret in the Artifact's namespace with TLS
	// material for the registry: ca.crt (certificate authorities to
	// trust), and optionally tls.crt and tls.key (a client certificate).
	// +optional
	CertSecretRef *corev1.LocalObjectReference `json:"certSecretRef,omitempty"`

	// Interval is how often the reference is checked for a new digest,
	// as a duration such as 30s, 5m or 1h. Up to 10% is added at random
	// to each wait, so that Artifacts created together do not poll their
	// registry together.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	Interval metav1.Duration `json:"interval,omitempty"`

	// Timeout bounds one whole sync: resolve, manifest and every blob.
	// +optional
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Suspend stops syncing; the published output stays as it is.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// MaxSize bounds the total bytes of the selected layers.
	// +optional
	// +kubebuilder:default="100Mi"
	MaxSize *resource.Quantity `json:"maxSize,omitempty"`

	// ConfigMap publishes the files into a ConfigMap of this name in the
	// Artifact's namespace, one key per file (named by its title). The
	// ConfigMap is created and owned by the Artifact. ConfigMaps hold at
	// most 1 MiB; use volume for larger artifacts.
	// +optional
	ConfigMap *ConfigMapOutput `json:"configMap,omitempty"`

	// Secret publishes the files into a Secret of this name in the
	// Artifact's namespace, for sensitive files: certificates, license
	// files, credentials. Like the ConfigMap output: one key per file
	// (named by its title), created and owned by the Artifact, at most
	// 1 MiB. The content never appears in the status, an event or a log
	// line; the status lists file names, media types, digests and sizes.
	// Whoever may create Artifacts in a namespace can have Secrets
	// written there.
	// +optional
	Secret *SecretOutput `json:"secret,omitempty"`

	// Volume publishes the files into a PersistentVolumeClaim, for
	// artifacts too large for a ConfigMap and for directories. A sync Job
	// in the Artifact's namespace pulls each new digest into
	// .ocisync/<digest-hex>/ on the claim and then atomically repoints the
	// symlink current at it, so readers that mount the claim and read
	// current/ never see half a version.
	// +optional
	Volume *VolumeOutput `json:"volume,omitempty"`

	// Verify, when set, publishes a digest only after a signature of that
	// very manifest digest verifies against the trust material in
	// secretRef: a cosign or a Notation signature, as spec.verify.provider
	// says. Signatures are found through the registry's referrers API, the
	// referrers tag schema, or (cosign) the <alg>-<hex>.sig tag. A digest
	// that fails keeps the previous output as it was, sets Ready False
	// with reason VerificationFailed and is retried with backoff.
	// +optional
	Verify *VerifySpec `json:"verify,omitempty"`

	// Rollout names workloads in the Artifact's namespace that read the
	// published files at start-up and must restart when a new version is
	// published. After a new digest is published (for the volume output:
	// once it is live on the claim), the controller sets the annotation
	// ocisync.io/digest-<artifact name> on each workload's Pod template
	// to the digest, and the workload's own controller rolls its Pods
	// with its usual strategy. Each workload is patched once per digest;
	// a workload that does not exist yet is annotated when it is created.
	// Condition RolloutTriggered reports the outcome.
	// +optional
	Rollout *RolloutSpec `json:"rollout,omitempty"`
}

// Kinds of workload that a rollout restarts: the values of WorkloadRef kind.
const (
	// WorkloadKindDeployment is an apps/v1 Deployment: a new ReplicaSet
	// replaces the old Pods as its strategy says.
	WorkloadKindDeployment = "Deployment"
	// WorkloadKindStatefulSet is an apps/v1 StatefulSet: its Pods are
	// replaced one at a time, highest ordinal first (RollingUpdate), or
	// when deleted (OnDelete).
	WorkloadKindStatefulSet = "StatefulSet"
	// WorkloadKindDaemonSet is an apps/v1 DaemonSet: its Pods are
	// replaced node by node as its updateStrategy says.
	WorkloadKindDaemonSet = "DaemonSet"
)

// RolloutSpec lists the workloads to restart on a new version.
type RolloutSpec struct {
	// Workloads to annotate with each new digest, by kind and name, in the
	// Artifact's namespace (a workload of another namespace is never
	// touched).
	// +required
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Workloads []WorkloadRef `json:"workloads"`
}

// WorkloadRef names a Deployment, StatefulSet or DaemonSet (apps/v1) in
// the Artifact's namespace.
type WorkloadRef struct {
	// Kind of the workload: Deployment, StatefulSet or DaemonSet.
	// +required
	// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
	Kind string `json:"kind"`

	// Name of the workload, in the Artifact's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// Signature providers of spec.verify.
const (
	// VerifyProviderCosign verifies cosign and Sigstore signatures.
	VerifyProviderCosign = "cosign"
	// VerifyProviderNotation verifies Notation (Notary Project)
	// signatures, JWS or COSE, against a trust policy and trust stores.
	VerifyProviderNotation = "notation"
)

// VerifySpec says whose signature a digest needs before it is published:
// which provider checks it, against the trust material of which Secret.
// +kubebuilder:validation:XValidation:rule="self.provider == 'cosign' || !has(self.matchOIDCIdentity)",message="matchOIDCIdentity is for provider cosign (keyless signatures)"
type VerifySpec struct {
	// Provider of the signatures: cosign (keys, or keyless Sigstore
	// bundles) or notation (Notary Project signatures made with
	// notation sign, in JWS or COSE envelopes).
	// +required
	// +kubebuilder:validation:Enum=cosign;notation
	Provider string `json:"provider"`

	// SecretRef names a Secret in the Artifact's namespace holding the
	// trust material. For cosign with keys: one or more PEM public keys
	// under keys ending in .pub (a signature by any one of them is
	// enough). For cosign keyless: trusted_root.json, the Sigstore trusted
	// root to verify certificates, transparency log entries and
	// timestamps against, offline. For notation: trustpolicy.json, a
	// Notation trust policy document (version 1.0, OCI statements with
	// registryScopes, signatureVerification, trustStores and
	// trustedIdentities), and the trust stores' certificates: the trust
	// store NAME (ca:NAME, signingAuthority:NAME or tsa:NAME in the
	// policy) holds the PEM or DER certificates under the keys NAME.crt
	// and NAME.pem (each may hold several). Every trust store the policy
	// names must have one of those keys. The artifact's
	// registry/repository (Docker Hub as docker.io) is what the
	// registryScopes are matched against; a statement that applies with
	// level skip is refused, since spec.verify asks for a signature.
	// +required
	SecretRef corev1.LocalObjectReference `json:"secretRef"`

	// MatchOIDCIdentity makes cosign verify keyless signatures: the
	// signing certificate's OIDC issuer and subject must match one entry
	// (each a regular expression, anchored by the user where wanted).
	// Without it, cosign verifies with the public keys in secretRef.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	MatchOIDCIdentity []OIDCIdentityMatch `json:"matchOIDCIdentity,omitempty"`
}

// OIDCIdentityMatch is an identity a keyless signature may come from.
type OIDCIdentityMatch struct {
	// Issuer is a regular expression the certificate's OIDC issuer must
	// match, such as ^https://token\.actions\.githubusercontent\.com$.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Issuer string `json:"issuer"`

	// Subject is a regular expression the certificate's subject (the
	// signer's identity: an email, a workflow URL) must match.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Subject string `json:"subject"`
}

// ConfigMapOutput names the ConfigMap the files go into.
type ConfigMapOutput struct {
	// Name of the ConfigMap, in the Artifact's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// SecretOutput names the Secret the files go into, and its type.
// +kubebuilder:validation:XValidation:rule="!has(self.type) || !self.type.matches('^([a-z0-9-]+\\\\.)*(kubernetes|k8s)\\\\.io/') || self.type in ['kubernetes.io/tls', 'kubernetes.io/dockerconfigjson', 'kubernetes.io/dockercfg', 'kubernetes.io/basic-auth', 'kubernetes.io/ssh-auth']",message="of the built-in Secret types only kubernetes.io/tls, kubernetes.io/dockerconfigjson, kubernetes.io/dockercfg, kubernetes.io/basic-auth and kubernetes.io/ssh-auth can be published (a service account token or bootstrap token cannot)"
type SecretOutput struct {
	// Name of the Secret, in the Artifact's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Type of the Secret. Opaque (the default) takes any files. A
	// built-in type needs the files its keys require, checked before
	// anything is written: kubernetes.io/tls needs tls.crt and tls.key;
	// kubernetes.io/dockerconfigjson needs .dockerconfigjson and
	// kubernetes.io/dockercfg needs .dockercfg, each a JSON object;
	// kubernetes.io/basic-auth needs username or password;
	// kubernetes.io/ssh-auth needs a non-empty ssh-privatekey. Other
	// files are published beside them. Service account and bootstrap
	// tokens cannot be published. A type of your own, domain/name
	// (example.com/license), takes any files. A Secret's type cannot
	// change: to change it, delete the Secret, which the next sync
	// creates anew.
	// +optional
	// +kubebuilder:default=Opaque
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^(Opaque|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$`
	Type string `json:"type,omitempty"`
}

// VolumeOutput names the PersistentVolumeClaim the files go into.
type VolumeOutput struct {
	// ClaimName of the PersistentVolumeClaim, in the Artifact's namespace.
	// The sync Job mounts it read-write, so a ReadWriteOnce claim works
	// only while its readers run on the node the Job lands on; prefer
	// ReadWriteMany when readers are spread out.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ClaimName string `json:"claimName"`

	// SubPath is a folder inside the claim to sync into, such as
	// "models/bert"; empty means the claim's root. It is relative and
	// must not contain "..". Readers mount the claim with the same
	// subPath and read current/.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/')",message="subPath must be relative to the claim's root: drop the leading /"
	// +kubebuilder:validation:XValidation:rule="!self.split('/').exists(p, p == '..')",message="subPath must not contain .. segments"
	// +kubebuilder:validation:XValidation:rule="!self.matches('[\\\\x00-\\\\x1f]')",message="subPath must not contain control characters"
	SubPath string `json:"subPath,omitempty"`

	// Extract also unpacks layers without ORAS's unpack annotation into a
	// folder named by the layer's title when their media type says tar and
	// their content is a tar or tar+gzip archive (a tar header at its
	// start); other layers, such as plain files that ORAS pushed under its
	// default media type application/vnd.oci.image.layer.v1.tar, are
	// written as files. Directories pushed by ORAS (annotated
	// io.deis.oras.content.unpack) are unpacked either way. Unpacking
	// refuses absolute paths, "..", links that lead outside, and device
	// files, and stops at maxUnpackedSize.
	// +optional
	Extract bool `json:"extract,omitempty"`

	// MaxUnpackedSize bounds the bytes each directory layer may expand to
	// when unpacked (spec.maxSize bounds the layers as downloaded), so
	// that a decompression bomb fails the sync instead of filling the
	// claim. Archives of more than 100000 entries are refused as well.
	// +optional
	// +kubebuilder:default="1Gi"
	MaxUnpackedSize *resource.Quantity `json:"maxUnpackedSize,omitempty"`
}

// ArtifactFile is one published file.
type ArtifactFile struct {
	// Name is the file's name: its layer's title.
	Name string `json:"name"`
	// MediaType of the layer.
	MediaType string `json:"mediaType"`
	// Digest of the layer.
	Digest string `json:"digest"`
	// Size of the layer in bytes.
	Size int64 `json:"size"`
}

// ArtifactStatus is what the controller last observed and published.
type ArtifactStatus struct {
	// ObservedGeneration is the generation of the spec the status
	// describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready is always present; Reconciling and Stalled are
	// present only while true. Reasons are listed in the API package
	// (Succeeded, Progressing, InvalidReference, AuthenticationFailed,
	// NotFound, SelectorMismatch, TooLarge, VerificationFailed,
	// RegistryUnavailable, OutputConflict, ...).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Digest of the manifest last published (or resolved, without an
	// output).
	// +optional
	Digest string `json:"digest,omitempty"`

	// ShortDigest is the first 12 hex digits of Digest, for the printer
	// column.
	// +optional
	ShortDigest string `json:"shortDigest,omitempty"`

	// ResolvedReference is registry/repository:tag@digest of what was
	// published.
	// +optional
	ResolvedReference string `json:"resolvedReference,omitempty"`

	// Tag used, which semver chose when set.
	// +optional
	Tag string `json:"tag,omitempty"`

	// ArtifactType of the published artifact.
	// +optional
	ArtifactType string `json:"artifactType,omitempty"`

	// Files published.
	// +optional
	// +listType=atomic
	Files []ArtifactFile `json:"files,omitempty"`

	// Size is the total bytes of the published files.
	// +optional
	Size int64 `json:"size,omitempty"`

	// LastSyncTime is when the output was last written.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// Volume reports the volume output: the digest live on the claim and
	// the sync Job, which may be pulling a newer one.
	// +optional
	Volume *VolumeStatus `json:"volume,omitempty"`

	// Verified names the digest whose signature last verified, with
	// what: an unchanged digest verified against unchanged trust material
	// is not verified again.
	// +optional
	Verified *VerifiedStatus `json:"verified,omitempty"`

	// LastHandledReconcileAt is the value of the annotation
	// reconcile.ocisync.io/requestedAt that the last sync handled. The
	// sync requested by a new value has run once this field equals it.
	// +optional
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`

	// Rollout says, for each workload of spec.rollout that exists, which
	// digest its Pod template was last annotated with. A workload
	// re-created under the same name (another uid) is annotated again.
	// +optional
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=name
	Rollout []WorkloadRolloutStatus `json:"rollout,omitempty"`
}

// WorkloadRolloutStatus is the digest a workload was last annotated with.
type WorkloadRolloutStatus struct {
	// Kind of the workload: Deployment, StatefulSet or DaemonSet.
	Kind string `json:"kind"`
	// Name of the workload, in the Artifact's namespace.
	Name string `json:"name"`
	// UID of the workload that was annotated.
	// +optional
	UID string `json:"uid,omitempty"`
	// Digest its Pod template's annotation holds.
	Digest string `json:"digest"`
}

// AnnotationReconcileRequestedAt is an annotation that, set on an
// Artifact to a new value (any string, such as the current time), makes
// the controller sync it at once even when the digest has not changed,
// like Flux's reconcile.fluxcd.io/requestedAt:
//
//	kubectl annotate artifact NAME --overwrite reconcile.ocisync.io/requestedAt="$(date +%s)"
//
// The ConfigMap output is downloaded and written again. For the volume
// output the manager cannot read the claim: it keeps the digest live
// when the sync Job that published it is still kept (see the manager's
// --sync-job-ttl), and otherwise runs a new sync Job, which pulls again
// unless current/ on the claim already points at the digest's folder.
// status.lastHandledReconcileAt records the value once the sync ran; a
// suspended Artifact runs it when resumed.
const AnnotationReconcileRequestedAt = "reconcile.ocisync.io/requestedAt"

// VerifiedStatus records a verified digest.
type VerifiedStatus struct {
	// Digest of the manifest whose signature verified.
	Digest string `json:"digest"`
	// Provider that verified it: cosign or notation.
	Provider string `json:"provider"`
	// Identity that signed it: the public key's name and fingerprint,
	// or the signing certificate's subject and issuer.
	// +optional
	Identity string `json:"identity,omitempty"`
	// TrustHash is the SHA-256 of the trust material the digest verified
	// against: the Secret's data, the identities matched and, for
	// notation, the repository the trust policy statement was chosen by;
	// a change of any verifies again.
	TrustHash string `json:"trustHash"`
}

// VolumeStatus is the state of the volume output.
type VolumeStatus struct {
	// LiveDigest is the manifest digest that current/ points at on the
	// claim: the one the last successful sync Job published. The
	// previous version stays live while a newer one syncs, and when a
	// sync fails.
	// +optional
	LiveDigest string `json:"liveDigest,omitempty"`

	// SyncDigest is the digest being synced: set while a sync Job runs,
	// and after it failed, until a sync succeeds.
	// +optional
	SyncDigest string `json:"syncDigest,omitempty"`

	// Job is the name of the latest sync Job, in the Artifact's
	// namespace. Finished Jobs are deleted after the manager's Job TTL.
	// +optional
	Job string `json:"job,omitempty"`
}

// Artifact syncs an OCI artifact (files in an OCI registry, as ORAS
// pushes them) into the cluster.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ociart
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Digest",type=string,JSONPath=`.status.shortDigest`
// +kubebuilder:printcolumn:name="Reference",type=string,JSONPath=`.spec.reference`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Artifact struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says what to pull and where to publish it.
	// +required
	Spec ArtifactSpec `json:"spec"`

	// Status is what was last observed and published. It starts with
	// observedGeneration 0, behind every generation, so that kstatus reads
	// a new Artifact as in progress until its first sync.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status ArtifactStatus `json:"status,omitempty"`
}

// ArtifactList is a list of Artifacts.
// +kubebuilder:object:root=true
type ArtifactList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Artifact `json:"items"`
}
