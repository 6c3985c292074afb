package v1alpha1

// Condition types, as kstatus reads them.
const (
	// ConditionReady is always present: True when the output holds the
	// artifact the spec names.
	ConditionReady = "Ready"
	// ConditionReconciling is present, True, while a sync is in progress.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is present, True, when syncing cannot succeed until
	// the spec changes.
	ConditionStalled = "Stalled"
	// ConditionSourceVerified is present when spec.verify is set: True
	// when the digest published (or about to be) has a verified
	// signature, naming the key or identity; False with the reason it did
	// not verify.
	ConditionSourceVerified = "SourceVerified"
	// ConditionRolloutTriggered is present when spec.rollout is set: True
	// when every workload it names has its Pod template annotated with the
	// published digest; False, with reason RolloutFailed,
	// WorkloadNotFound or RolloutDisabled, naming the workloads that are
	// not. It never changes Ready: the output is published either way.
	ConditionRolloutTriggered = "RolloutTriggered"
)

// Condition reasons: a fixed set that other controllers can rely on.
const (
	// ReasonSucceeded: the output holds the artifact.
	ReasonSucceeded = "Succeeded"
	// ReasonProgressing: a sync is in progress.
	ReasonProgressing = "Progressing"
	// ReasonSuspended: spec.suspend is true.
	ReasonSuspended = "Suspended"
	// ReasonInvalidSpec: the spec cannot work (for example a bad semver
	// range or platform).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonInvalidReference: spec.reference does not parse.
	ReasonInvalidReference = "InvalidReference"
	// ReasonCredentialsNotFound: a named Secret or ServiceAccount is
	// missing or malformed.
	ReasonCredentialsNotFound = "CredentialsNotFound"
	// ReasonAuthenticationFailed: the registry refused the credentials.
	ReasonAuthenticationFailed = "AuthenticationFailed"
	// ReasonNotFound: the repository, tag, digest or a blob does not
	// exist, or no tag satisfies the semver range.
	ReasonNotFound = "NotFound"
	// ReasonSelectorMismatch: no layer matches spec.mediaType, or the
	// artifact type or platform differs from the spec.
	ReasonSelectorMismatch = "SelectorMismatch"
	// ReasonTooLarge: the artifact exceeds spec.maxSize or what the
	// output can hold.
	ReasonTooLarge = "TooLarge"
	// ReasonVerificationFailed: content did not match its digest or
	// size, or spec.verify found no valid signature of the digest.
	ReasonVerificationFailed = "VerificationFailed"
	// ReasonRegistryUnavailable: the registry could not be reached or
	// failed (network errors, 5xx, rate limits, timeouts).
	ReasonRegistryUnavailable = "RegistryUnavailable"
	// ReasonOutputConflict: the output object exists and is not owned by
	// this Artifact.
	ReasonOutputConflict = "OutputConflict"
	// ReasonOutputFailed: writing the output failed.
	ReasonOutputFailed = "OutputFailed"
	// ReasonSyncJobFailed: the Job that syncs a volume failed; the
	// message holds the Job's failure reason and the tail of its log.
	ReasonSyncJobFailed = "SyncJobFailed"
	// ReasonRolloutFailed: patching a workload of spec.rollout failed;
	// it is retried with backoff.
	ReasonRolloutFailed = "RolloutFailed"
	// ReasonWorkloadNotFound: a workload of spec.rollout does not exist
	// (yet) in the Artifact's namespace; it is annotated when it is
	// created.
	ReasonWorkloadNotFound = "WorkloadNotFound"
	// ReasonRolloutDisabled: spec.rollout is set but the manager runs with
	// --rollout=false (the no-rollout install component).
	ReasonRolloutDisabled = "RolloutDisabled"
)

// Well-known labels and annotations on published objects.
const (
	// LabelArtifactName is set on outputs to the Artifact's name.
	LabelArtifactName = "ocisync.io/artifact"
	// AnnotationDigest is set on outputs to the manifest digest they hold.
	AnnotationDigest = "ocisync.io/digest"
	// AnnotationRolloutPrefix starts the Pod template annotation that
	// spec.rollout sets on workloads: ocisync.io/digest-<artifact name>,
	// the name shortened with a hash when it would make the key too long.
	AnnotationRolloutPrefix = "ocisync.io/digest-"
)
