package controller

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// refCache keeps full copies of the Secrets or ServiceAccounts that syncs
// read. The manager watches these kinds as metadata only, since a full
// informer would hold every Secret of every tenant in memory; so a sync
// reads them from the API server, and this cache makes that happen only
// when one changed. An entry is used while its resourceVersion is the one
// the metadata informer shows, and read again otherwise.
//
// Entries go when the object is found gone, and at each sweep once no
// Artifact references them: the cache holds at most what Artifacts used
// since the last sweep.
type refCache[T client.Object] struct {
	gvk schema.GroupVersionKind
	// newObject returns an empty object to read into.
	newObject func() T
	// trim keeps of an object read only what the reconciler uses, and its
	// key and resourceVersion.
	trim func(T) T

	mu      sync.Mutex
	entries map[types.NamespacedName]T
}

func newSecretCache() *refCache[*corev1.Secret] {
	return &refCache[*corev1.Secret]{
		gvk:       corev1.SchemeGroupVersion.WithKind("Secret"),
		newObject: func() *corev1.Secret { return &corev1.Secret{} },
		// Annotations can hold the whole Secret again (kubectl apply's
		// last-applied-configuration): only the type and data are used.
		trim: func(s *corev1.Secret) *corev1.Secret {
			return &corev1.Secret{ObjectMeta: keyOf(s), Type: s.Type, Data: s.Data}
		},
	}
}

func newAccountCache() *refCache[*corev1.ServiceAccount] {
	return &refCache[*corev1.ServiceAccount]{
		gvk:       corev1.SchemeGroupVersion.WithKind("ServiceAccount"),
		newObject: func() *corev1.ServiceAccount { return &corev1.ServiceAccount{} },
		trim: func(sa *corev1.ServiceAccount) *corev1.ServiceAccount {
			meta := keyOf(sa)
			// Of the annotations, only those naming a cloud identity.
			for _, k := range cloudAnnotations {
				if v, ok := sa.Annotations[k]; ok {
					if meta.Annotations == nil {
						meta.Annotations = map[string]string{}
					}
					meta.Annotations[k] = v
				}
			}
			return &corev1.ServiceAccount{ObjectMeta: meta, ImagePullSecrets: sa.ImagePullSecrets}
		},
	}
}

func keyOf(o client.Object) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: o.GetNamespace(), Name: o.GetName(), ResourceVersion: o.GetResourceVersion()}
}

// get returns the object key names, as the API server holds it at the
// resourceVersion the metadata informer (read through metadata) shows;
// api reads it when the copy kept is older or missing. The object
// returned is shared: never modify it. An object the informer does not
// show is NotFound, as it was when the manager cached full objects.
func (c *refCache[T]) get(ctx context.Context, metadata, api client.Reader, key types.NamespacedName) (T, error) {
	var zero T
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(c.gvk)
	if err := metadata.Get(ctx, key, m); err != nil {
		if apierrors.IsNotFound(err) {
			c.drop(key)
		}
		return zero, err
	}
	c.mu.Lock()
	kept, ok := c.entries[key]
	c.mu.Unlock()
	if ok && kept.GetResourceVersion() == m.ResourceVersion {
		return kept, nil
	}
	obj := c.newObject()
	if err := api.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			c.drop(key)
		}
		return zero, err
	}
	obj = c.trim(obj)
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[types.NamespacedName]T{}
	}
	c.entries[key] = obj
	c.mu.Unlock()
	return obj, nil
}

func (c *refCache[T]) drop(key types.NamespacedName) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

// kept returns the objects held in namespace.
func (c *refCache[T]) kept(namespace string) []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []T
	for key, obj := range c.entries {
		if key.Namespace == namespace {
			out = append(out, obj)
		}
	}
	return out
}

// sweep drops the entries that keep rejects. keep runs without the lock,
// so a get meanwhile is not held up; an entry it replaces meanwhile may be
// dropped, which costs a read later, never a wrong answer.
func (c *refCache[T]) sweep(keep func(T) bool) {
	c.mu.Lock()
	all := make([]T, 0, len(c.entries))
	for _, obj := range c.entries {
		all = append(all, obj)
	}
	c.mu.Unlock()
	for _, obj := range all {
		if !keep(obj) {
			c.drop(client.ObjectKeyFromObject(obj))
		}
	}
}

// len is how many entries are held.
func (c *refCache[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
