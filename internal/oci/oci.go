// Package oci is ocisync's client for OCI distribution-spec v1.1 registries.
//
// It follows the spec's pull flow: a reference (package reference) is
// resolved to a manifest digest, the manifest is fetched and verified, and
// then its blobs are streamed and verified against their descriptors.
// Authentication (package auth) and the HTTP transport with retries,
// redirects and TLS (package transport) sit beneath it. Push is supported
// for the CLI, the demo and tests.
//
// Everything fetched is verified: manifest bytes against the digest asked
// for or returned, blobs against descriptor digest and size while
// streaming. Manifests are bounded by Options.MaxManifestBytes; blobs by a
// limit the caller gives.
package oci

import (
	"github.com/ocisync/ocisync/internal/oci/errdef"
)

// Errors callers can test for with errors.Is.
var (
	ErrInvalidReference = errdef.ErrInvalidReference
	ErrUnauthorized     = errdef.ErrUnauthorized
	ErrDenied           = errdef.ErrDenied
	ErrNotFound         = errdef.ErrNotFound
	ErrManifestUnknown  = errdef.ErrManifestUnknown
	ErrBlobUnknown      = errdef.ErrBlobUnknown
	ErrTooManyRequests  = errdef.ErrTooManyRequests
	ErrDigestMismatch   = errdef.ErrDigestMismatch
	ErrSizeMismatch     = errdef.ErrSizeMismatch
	ErrTooLarge         = errdef.ErrTooLarge
	ErrUnsupported      = errdef.ErrUnsupported
	ErrInvalidManifest  = errdef.ErrInvalidManifest
	ErrPlatformMismatch = errdef.ErrPlatformMismatch
)

// Media types beyond those in image-spec.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"

	// MediaTypeUnknownConfig is the config media type ORAS uses when the
	// pusher names none.
	MediaTypeUnknownConfig = "application/vnd.unknown.config.v1+json"
	// MediaTypeUnknownArtifact is the artifactType ORAS sets on image-spec
	// v1.1 manifests when the pusher names none.
	MediaTypeUnknownArtifact = "application/vnd.unknown.artifact.v1"
)

// ORAS file annotations.
const (
	// AnnotationTitle names a layer's file (image-spec's title annotation).
	AnnotationTitle = "org.opencontainers.image.title"
	// AnnotationUnpack marks a layer that is a tar+gzip of a directory.
	AnnotationUnpack = "io.deis.oras.content.unpack"
	// AnnotationContentDigest is the digest of the uncompressed tar of an
	// unpack layer.
	AnnotationContentDigest = "io.deis.oras.content.digest"
)

// DefaultMaxManifestBytes bounds manifests, indexes, tag lists and other
// metadata unless Options says otherwise.
const DefaultMaxManifestBytes = 4 << 20

// manifestAccept is sent on every manifest request so that registries
// return OCI and Docker schema2 forms alike, never schema1.
var manifestAccept = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	MediaTypeDockerManifest,
	MediaTypeDockerManifestList,
}

// IsManifestMediaType reports whether mt names a manifest or index type the
// client understands.
func IsManifestMediaType(mt string) bool {
	for _, m := range manifestAccept {
		if m == mt {
			return true
		}
	}
	return false
}

// IsIndexMediaType reports whether mt is an OCI index or Docker manifest list.
func IsIndexMediaType(mt string) bool {
	return mt == "application/vnd.oci.image.index.v1+json" || mt == MediaTypeDockerManifestList
}
