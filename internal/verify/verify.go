// Package verify checks that a manifest digest is signed by someone the
// user trusts before it is published: cosign (keys, keyless Sigstore
// bundles) and Notation signatures, found through the OCI referrers API,
// the referrers tag schema, or cosign's legacy .sig tag. It reads the
// registry through internal/oci and knows nothing of Kubernetes: the
// controller hands it the trust material of a Secret, the CLI that of
// files.
package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci"
)

// Fetcher is what verification reads of a repository; *oci.Repository
// is one.
type Fetcher interface {
	Referrers(ctx context.Context, subject digest.Digest, artifactType string, max int) (oci.Referrers, error)
	FetchManifest(ctx context.Context, ref string) (ocispec.Descriptor, []byte, error)
	FetchManifestDescriptor(ctx context.Context, desc ocispec.Descriptor) ([]byte, error)
	FetchBlob(ctx context.Context, desc ocispec.Descriptor, maxSize int64) (io.ReadCloser, error)
}

// Result says who signed a verified digest.
type Result struct {
	// Provider is cosign or notation.
	Provider string
	// Identity is the key (its name and fingerprint), the certificate's
	// issuer and subject, or the Notation signer that signed.
	Identity string
}

// Verifier verifies that subject, a manifest of repo, is signed.
type Verifier interface {
	Verify(ctx context.Context, repo Fetcher, subject ocispec.Descriptor) (Result, error)
}

// ErrNotVerified wraps every failure to find a valid signature: no
// signature, another signer, a signature of another digest, a tampered
// payload, an expired or untrusted certificate. Registry failures on
// the way (unreachable, unauthorized) are returned as they are.
var ErrNotVerified = errors.New("signature verification failed")

// ErrTrustMaterial wraps errors in the trust material itself (no key, a
// key that does not parse, a malformed trust policy): the user must fix
// it before anything can verify.
var ErrTrustMaterial = errors.New("invalid trust material")

// maxSignatures bounds the signatures looked at per digest, so that a
// registry listing thousands of referrers cannot keep a sync busy.
const maxSignatures = 32

// TrustHash is the SHA-256 of the trust material and of the settings
// that decide what verifies (such as the identities matched), in a
// stable order: an unchanged hash means an earlier verification still
// holds.
func TrustHash(material map[string][]byte, settings ...string) string {
	h := sha256.New()
	keys := make([]string, 0, len(material))
	for k := range material {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(material[k]))
		h.Write(material[k])
	}
	for _, s := range settings {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// readBlob fetches a signature blob whole, verified, within limit.
func readBlob(ctx context.Context, repo Fetcher, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	rc, err := repo.FetchBlob(ctx, desc, limit)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// failures gathers why each signature looked at did not verify, for one
// error that says it all.
type failures []string

func (f *failures) add(format string, args ...any) { *f = append(*f, fmt.Sprintf(format, args...)) }

func (f failures) String() string {
	const most = 4
	if len(f) > most {
		return strings.Join(f[:most], "; ") + fmt.Sprintf("; and %d more", len(f)-most)
	}
	return strings.Join(f, "; ")
}
