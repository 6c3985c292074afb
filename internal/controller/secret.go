package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

// The Secret output (spec.secret) publishes the files as the ConfigMap
// output does, into a Secret's data, with one difference that shapes the
// code: the manager never keeps a Secret's content. It watches Secrets as
// metadata only (name, namespace, uid, resourceVersion) and reads them
// from the API server, so drift shows as follows. After each write of an
// output Secret the manager remembers the resourceVersion the API server
// answered (secretWrites); while the metadata watch shows that very
// resourceVersion, the Secret is exactly as written, and a sync checks it
// without any API request. Any other change (an edit, a label, a
// deletion) comes in through the watch (outputSecretChanged), and the
// sync reads the Secret from the API server once: intact, it is
// remembered at its new resourceVersion; drifted, it is written again.
//
// Nothing of a Secret's content goes into an error, a log line, an
// event or the status: messages name the Secret, its type and file names
// (keys), never values, and the API server's own messages about a
// rejected write are left out (secretAPIError).

// fitSecret is what to do about files a Secret cannot take.
var fitSecret = fitHint{
	keys: "select other layers with spec.mediaType",
	size: "select fewer files with spec.mediaType",
}

// secretType is the type spec.secret asks for, Opaque by default.
func secretType(obj *v1alpha1.Artifact) corev1.SecretType {
	if t := obj.Spec.Secret.Type; t != "" {
		return corev1.SecretType(t)
	}
	return corev1.SecretTypeOpaque
}

// checkSecretType refuses, before anything is downloaded, files that
// lack a key the Secret type t requires, as the API server would refuse
// them; names are the files' titles. Types of the kubernetes.io domains
// other than those whose keys it knows are refused, as the CRD refuses
// them: a service account token Secret would have a token minted into
// it.
func checkSecretType(t corev1.SecretType, names []string) error {
	var all, anyOf []string
	switch t {
	case corev1.SecretTypeOpaque:
		return nil
	case corev1.SecretTypeTLS:
		all = []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey}
	case corev1.SecretTypeDockerConfigJson:
		all = []string{corev1.DockerConfigJsonKey}
	case corev1.SecretTypeDockercfg:
		all = []string{corev1.DockerConfigKey}
	case corev1.SecretTypeSSHAuth:
		all = []string{corev1.SSHAuthPrivateKey}
	case corev1.SecretTypeBasicAuth:
		anyOf = []string{corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey}
	default:
		if builtinSecretType(t) {
			return stalled(v1alpha1.ReasonInvalidSpec, "spec.secret.type %q cannot be published: of the built-in types, only Opaque, kubernetes.io/tls, kubernetes.io/dockerconfigjson, kubernetes.io/dockercfg, kubernetes.io/basic-auth and kubernetes.io/ssh-auth can", t)
		}
		// A type of one's own: any keys.
		return nil
	}
	var missing []string
	for _, k := range all {
		if !slices.Contains(names, k) {
			missing = append(missing, k)
		}
	}
	if len(anyOf) > 0 && !slices.ContainsFunc(anyOf, func(k string) bool { return slices.Contains(names, k) }) {
		missing = append(missing, strings.Join(anyOf, " or "))
	}
	if len(missing) == 0 {
		return nil
	}
	return stalled(v1alpha1.ReasonSelectorMismatch, "spec.secret.type %s needs the files %s, which the selected layers (%s) lack; nothing was written: push them, select them with spec.mediaType, or choose another type", t, strings.Join(missing, ", "), strings.Join(names, ", "))
}

// builtinSecretType reports whether t is in a kubernetes.io or k8s.io
// domain, where Kubernetes defines the types.
func builtinSecretType(t corev1.SecretType) bool {
	domain, _, ok := strings.Cut(string(t), "/")
	if !ok {
		return false
	}
	for _, d := range []string{"kubernetes.io", "k8s.io"} {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

// checkSecretContent refuses, once downloaded and before anything is
// written, content the API server would refuse for the Secret type t: an
// empty ssh-privatekey, a docker config that is not a JSON object. The
// message never says what is wrong with the content beyond that: the
// JSON parser's own error quotes it.
func checkSecretContent(t corev1.SecretType, files []file) error {
	for _, f := range files {
		switch {
		case t == corev1.SecretTypeSSHAuth && f.name == corev1.SSHAuthPrivateKey && len(f.content) == 0:
			return stalled(v1alpha1.ReasonSelectorMismatch, "spec.secret.type %s needs a non-empty file %s, and it is empty; nothing was written: push the key in it, or choose another type", t, f.name)
		case t == corev1.SecretTypeDockerConfigJson && f.name == corev1.DockerConfigJsonKey,
			t == corev1.SecretTypeDockercfg && f.name == corev1.DockerConfigKey:
			var obj map[string]json.RawMessage
			if json.Unmarshal(f.content, &obj) != nil {
				return stalled(v1alpha1.ReasonSelectorMismatch, "spec.secret.type %s needs the file %s to hold a JSON object, and it does not; nothing was written: push a Docker config file, or choose another type", t, f.name)
			}
		}
	}
	return nil
}

// secretFor builds the desired Secret: every file in data, bytes as they
// are.
func secretFor(obj *v1alpha1.Artifact, digest string, files []file) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      obj.Spec.Secret.Name,
			Namespace: obj.Namespace,
		},
		Type: secretType(obj),
		Data: make(map[string][]byte, len(files)),
	}
	for _, f := range files {
		s.Data[f.name] = f.content
	}
	s.Labels = map[string]string{v1alpha1.LabelArtifactName: labelValue(obj.Name)}
	s.Annotations = map[string]string{
		v1alpha1.AnnotationDigest: digest,
		annotationChecksum:        secretChecksum(s),
	}
	return s
}

// secretChecksum hashes a Secret's data, as contentChecksum does a
// ConfigMap's binaryData.
func secretChecksum(s *corev1.Secret) string {
	return checksumOf(nil, s.Data)
}

// publishSecretStep downloads the layers and writes them as the Secret of
// spec.secret, after checking that they fit one of its type and that the
// Secret is this Artifact's to write.
func (r *ArtifactReconciler) publishSecretStep(ctx context.Context, s *syncState) error {
	obj := s.obj
	names := titles(s.layers)
	if err := checkOutputFit("Secret", fitSecret, names, s.total); err != nil {
		return err
	}
	if err := refuseDirectories("Secret", s.layers); err != nil {
		return err
	}
	typ := secretType(obj)
	if err := checkSecretType(typ, names); err != nil {
		return err
	}
	// Before downloading: a Secret that is not this Artifact's, or of
	// another type, cannot be written anyway.
	current, _, err := r.ownedSecret(ctx, obj)
	if err != nil {
		return err
	}
	if current != nil && current.Type != typ {
		return transient(v1alpha1.ReasonOutputConflict, "Secret %q has type %s and spec.secret.type is %s, and the type of a Secret cannot change: delete the Secret, and the next sync creates it with the new type", current.Name, current.Type, typ)
	}
	// Never through the blob cache: no Secret content on the manager's
	// disk.
	files, err := download(ctx, s.repo, s.layers, nil)
	if err != nil {
		return err
	}
	for _, f := range files {
		s.out.bytes += int64(len(f.content))
	}
	if err := checkSecretContent(typ, files); err != nil {
		return err
	}
	written, err := r.publishSecret(ctx, obj, secretFor(obj, s.desc.Digest.String(), files), current, s.force)
	if err != nil {
		return err
	}
	s.out.written = written
	return nil
}

// ownedSecret reads the Secret spec.secret names from the API server
// (the manager caches no Secret) and returns it when it exists, or an
// OutputConflict error when it is not this Artifact's.
func (r *ArtifactReconciler) ownedSecret(ctx context.Context, obj *v1alpha1.Artifact) (*corev1.Secret, bool, error) {
	name := obj.Spec.Secret.Name
	secret := &corev1.Secret{}
	err := r.reader().Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: name}, secret)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, secretAPIError("reading", name, err)
	}
	if !controlledBy(secret, obj) {
		return nil, true, outputConflict("Secret", name, "spec.secret.name")
	}
	return secret, true, nil
}

// publishSecret writes desired, with the shard labels of obj, in one
// create, or one update of current (the Secret as read, nil when there
// is none), remembers the write, and reports whether it wrote. Unless
// force is set, a Secret that holds desired already is remembered as it
// is and not written (see publishConfigMap).
func (r *ArtifactReconciler) publishSecret(ctx context.Context, obj *v1alpha1.Artifact, desired, current *corev1.Secret, force bool) (bool, error) {
	desired.Labels = r.Scope.withShardLabels(desired.Labels, obj.Labels)
	if err := controllerutil.SetControllerReference(obj, desired, r.Scheme); err != nil {
		return false, transient(v1alpha1.ReasonOutputFailed, "setting the owner of Secret %q: %w", desired.Name, err)
	}
	digest := desired.Annotations[v1alpha1.AnnotationDigest]
	defer r.secretWrites.begin(client.ObjectKeyFromObject(desired))()
	if current == nil {
		if err := r.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return false, transient(v1alpha1.ReasonOutputConflict, "Secret %q was created by someone else meanwhile; it is left alone: delete it or choose another spec.secret.name", desired.Name)
			}
			return false, secretAPIError("creating", desired.Name, err)
		}
		r.secretWrites.remember(desired, digest)
		return true, nil
	}
	updated := current.DeepCopy()
	updated.Data, updated.StringData = desired.Data, nil
	r.mergeOutputMeta(updated, desired, obj)
	if !force && len(current.StringData) == 0 && maps.EqualFunc(current.Data, updated.Data, bytes.Equal) && sameOutputMeta(current, updated) {
		r.secretWrites.remember(current, digest)
		return false, nil
	}
	// Update, not patch: the resourceVersion makes a concurrent edit fail
	// the write instead of being merged into it.
	if err := r.Update(ctx, updated); err != nil {
		return false, secretAPIError("updating", desired.Name, err)
	}
	r.secretWrites.remember(updated, digest)
	return true, nil
}

// secretIntact reports whether the output Secret still holds digest as
// it was written, without an API request while the metadata watch shows
// the resourceVersion of the manager's own last write. Otherwise the
// Secret is read from the API server; an intact one without ocisync's
// label or the shard labels of its Artifact is labelled.
func (r *ArtifactReconciler) secretIntact(ctx context.Context, obj *v1alpha1.Artifact, digest string) (bool, error) {
	key := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Spec.Secret.Name}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err := r.metadata().Get(ctx, key, m)
	switch {
	case err == nil:
		if r.secretWrites.holds(key, m.UID, m.ResourceVersion, digest) {
			return true, nil
		}
	case !apierrors.IsNotFound(err):
		return false, transient(v1alpha1.ReasonOutputFailed, "reading the metadata of Secret %q: %w", key.Name, err)
	}
	// Changed since the manager wrote it, written by an earlier manager,
	// or not in the cache yet: the API server has the answer.
	secret, exists, err := r.ownedSecret(ctx, obj)
	if err != nil || !exists {
		return false, err
	}
	if secret.Type != secretType(obj) || secret.Annotations[v1alpha1.AnnotationDigest] != digest || secret.Annotations[annotationChecksum] != secretChecksum(secret) {
		return false, nil
	}
	if labels, changed := r.labelOutput(secret.Labels, obj); changed {
		secret = secret.DeepCopy()
		secret.Labels = labels
		end := r.secretWrites.begin(key)
		err := r.Update(ctx, secret)
		end()
		if err != nil {
			return false, secretAPIError("labelling", key.Name, err)
		}
	}
	r.secretWrites.remember(secret, digest)
	return true, nil
}

// secretAPIError reports a failed request about output Secret name
// ("reading", "creating"...) without the API server's message: an
// admission webhook that refused a write may have quoted the Secret in
// it. Reason, code and the fields at fault (keys, never values) are
// enough to act on.
func secretAPIError(verb, name string, err error) error {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		// No answer from the API server: a network error, or the
		// context's end.
		return transient(v1alpha1.ReasonOutputFailed, "%s Secret %q: %w", verb, name, err)
	}
	st := status.Status()
	what := fmt.Sprintf("%s (%d)", st.Reason, st.Code)
	if st.Details != nil {
		var fields []string
		for _, c := range st.Details.Causes {
			if c.Field != "" && !slices.Contains(fields, c.Field) {
				fields = append(fields, c.Field)
			}
		}
		if len(fields) > 0 {
			what += " about " + strings.Join(fields, ", ")
		}
	}
	return transient(v1alpha1.ReasonOutputFailed, "%s Secret %q: the API server answered %s; its message is left out, since it may quote the Secret", verb, name, what)
}

// secretWrites remembers, for each output Secret, the manager's last
// write of it: the Secret's uid, the resourceVersion the API server gave
// that write, and the digest it holds. Entries go with the sweep of
// kept Secrets once no Artifact names the Secret as its output.
type secretWrites struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]writtenSecret
	// inFlight counts the writes under way per Secret: the watch can
	// report a write before the writer learns its resourceVersion.
	inFlight map[types.NamespacedName]int
}

type writtenSecret struct {
	uid             types.UID
	resourceVersion string
	digest          string
}

// remember records s, as the API server answered the write that left it
// holding digest.
func (w *secretWrites) remember(s *corev1.Secret, digest string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.entries == nil {
		w.entries = map[types.NamespacedName]writtenSecret{}
	}
	w.entries[client.ObjectKeyFromObject(s)] = writtenSecret{uid: s.UID, resourceVersion: s.ResourceVersion, digest: digest}
}

// begin notes a write of the Secret key under way, until the function it
// returns is called.
func (w *secretWrites) begin(key types.NamespacedName) (end func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inFlight == nil {
		w.inFlight = map[types.NamespacedName]int{}
	}
	w.inFlight[key]++
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.inFlight[key]--; w.inFlight[key] <= 0 {
			delete(w.inFlight, key)
		}
	}
}

// holds reports whether the Secret key, at uid and resourceVersion, is
// as the manager wrote it with digest.
func (w *secretWrites) holds(key types.NamespacedName, uid types.UID, resourceVersion, digest string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.entries[key]
	return ok && e.uid == uid && e.resourceVersion == resourceVersion && e.digest == digest
}

// wrote reports whether o, a Secret's metadata, is the manager's own
// last write of it, or may be one under way. Someone else's edit in the
// few milliseconds of a write goes unnoticed until the Artifact's next
// sync, which reads the Secret since its resourceVersion is not the one
// remembered.
func (w *secretWrites) wrote(o client.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	key := client.ObjectKeyFromObject(o)
	if w.inFlight[key] > 0 {
		return true
	}
	e, ok := w.entries[key]
	return ok && e.uid == o.GetUID() && e.resourceVersion == o.GetResourceVersion()
}

// sweep drops the entries keep rejects.
func (w *secretWrites) sweep(keep func(types.NamespacedName) bool) {
	w.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(w.entries))
	for k := range w.entries {
		keys = append(keys, k)
	}
	w.mu.Unlock()
	for _, k := range keys {
		if !keep(k) {
			w.mu.Lock()
			delete(w.entries, k)
			w.mu.Unlock()
		}
	}
}

// outputSecretChanged lets through the Secret metadata events that can
// mean an output Secret drifted: deletions, and updates to a
// resourceVersion other than the manager's own last write. Creations are
// left out, as for ConfigMaps: the manager's own, and those the
// informer's first list reports, need no sync of their own.
func (r *ArtifactReconciler) outputSecretChanged() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			// An informer's resync repeats the same version.
			if e.ObjectOld.GetResourceVersion() == e.ObjectNew.GetResourceVersion() {
				return false
			}
			return !r.secretWrites.wrote(e.ObjectNew)
		},
	}
}
