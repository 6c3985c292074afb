package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Resolve returns the descriptor of the manifest that ref (a tag or a
// digest) names. It asks with HEAD and falls back to GET when the registry
// leaves out Docker-Content-Digest, as some do.
func (r *Repository) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	ctx, cancel := r.withTimeout(r.scopeCtx(ctx, "pull"))
	defer cancel()
	rawURL := r.url("manifests", ref)
	resp, err := r.send(ctx, http.MethodHead, rawURL, nil, http.Header{"Accept": {strings.Join(manifestAccept, ", ")}})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented {
		// Some registries serve manifests only to GET.
		drainClose(resp.Body)
		desc, _, err := r.fetchManifest(ctx, ref)
		return desc, err
	}
	if resp.StatusCode != http.StatusOK {
		return ocispec.Descriptor{}, r.manifestError(resp, ref)
	}
	drainClose(resp.Body)
	dgst, size, mt := resp.Header.Get("Docker-Content-Digest"), resp.ContentLength, mediaTypeOf(resp.Header.Get("Content-Type"))
	if dgst == "" || size < 0 || !IsManifestMediaType(mt) {
		desc, _, err := r.fetchManifest(ctx, ref)
		return desc, err
	}
	d, err := digest.Parse(dgst)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s:%s: registry sent an invalid Docker-Content-Digest: %w", r, ref, err)
	}
	if want, err := digest.Parse(ref); err == nil && want != d {
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s@%s: registry answered with digest %s: %w", r, ref, d, ErrDigestMismatch)
	}
	if size > r.client.maxManifest {
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s:%s: manifest is %d bytes, over the %d-byte limit: %w", r, ref, size, r.client.maxManifest, ErrTooLarge)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: size}, nil
}

// FetchManifest fetches the manifest or index that ref (a tag or a digest)
// names and returns its descriptor and verified bytes. The bytes match the
// digest asked for, or else the digest the registry returned, or else the
// descriptor carries the sha256 of what was received.
func (r *Repository) FetchManifest(ctx context.Context, ref string) (ocispec.Descriptor, []byte, error) {
	ctx, cancel := r.withTimeout(r.scopeCtx(ctx, "pull"))
	defer cancel()
	return r.fetchManifest(ctx, ref)
}

// FetchManifestDescriptor fetches the manifest desc points at and checks
// it against desc's digest, size and media type.
func (r *Repository) FetchManifestDescriptor(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("fetching manifest from %s: descriptor has an invalid digest %q: %w", r, desc.Digest, err)
	}
	if desc.Size > r.client.maxManifest {
		return nil, fmt.Errorf("fetching manifest %s from %s: it is %d bytes, over the %d-byte limit: %w", desc.Digest, r, desc.Size, r.client.maxManifest, ErrTooLarge)
	}
	got, data, err := r.FetchManifest(ctx, desc.Digest.String())
	if err != nil {
		return nil, err
	}
	if got.Size != desc.Size {
		return nil, fmt.Errorf("fetching manifest %s from %s: got %d bytes, descriptor says %d: %w", desc.Digest, r, got.Size, desc.Size, ErrSizeMismatch)
	}
	if desc.MediaType != "" && got.MediaType != desc.MediaType {
		return nil, fmt.Errorf("fetching manifest %s from %s: registry says media type %q, descriptor says %q", desc.Digest, r, got.MediaType, desc.MediaType)
	}
	return data, nil
}

func (r *Repository) fetchManifest(ctx context.Context, ref string) (ocispec.Descriptor, []byte, error) {
	rawURL := r.url("manifests", ref)
	resp, err := r.send(ctx, http.MethodGet, rawURL, nil, http.Header{"Accept": {strings.Join(manifestAccept, ", ")}})
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return ocispec.Descriptor{}, nil, r.manifestError(resp, ref)
	}
	defer drainClose(resp.Body)
	limit := r.client.maxManifest
	if resp.ContentLength > limit {
		return ocispec.Descriptor{}, nil, fmt.Errorf("fetching manifest %s:%s: it is %d bytes, over the %d-byte limit: %w", r, ref, resp.ContentLength, limit, ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("reading manifest %s:%s: %w", r, ref, err)
	}
	if int64(len(data)) > limit {
		return ocispec.Descriptor{}, nil, fmt.Errorf("fetching manifest %s:%s: it is over the %d-byte limit: %w", r, ref, limit, ErrTooLarge)
	}
	if resp.ContentLength >= 0 && int64(len(data)) != resp.ContentLength {
		return ocispec.Descriptor{}, nil, fmt.Errorf("reading manifest %s:%s: got %d bytes, Content-Length said %d: %w", r, ref, len(data), resp.ContentLength, ErrSizeMismatch)
	}

	// Verify against the digest asked for, else the one the registry
	// claims; with neither, the digest is what we computed.
	var want digest.Digest
	if d, err := digest.Parse(ref); err == nil {
		want = d
	} else if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		if want, err = digest.Parse(h); err != nil {
			return ocispec.Descriptor{}, nil, fmt.Errorf("fetching manifest %s:%s: registry sent an invalid Docker-Content-Digest: %w", r, ref, err)
		}
	}
	if want == "" {
		want = digest.SHA256.FromBytes(data)
	} else if !want.Algorithm().Available() {
		return ocispec.Descriptor{}, nil, fmt.Errorf("fetching manifest %s:%s: digest algorithm %q is not supported", r, ref, want.Algorithm())
	} else if got := want.Algorithm().FromBytes(data); got != want {
		return ocispec.Descriptor{}, nil, fmt.Errorf("fetching manifest %s:%s: content has digest %s, expected %s: %w", r, ref, got, want, ErrDigestMismatch)
	}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && h != want.String() {
		if d, err := digest.Parse(h); err == nil && d.Algorithm() == want.Algorithm() {
			return ocispec.Descriptor{}, nil, fmt.Errorf("fetching manifest %s@%s: registry says its digest is %s: %w", r, want, d, ErrDigestMismatch)
		}
	}

	served := mediaTypeOf(resp.Header.Get("Content-Type"))
	mt := served
	if !IsManifestMediaType(mt) {
		// Some registries answer with a generic type; the manifest's own
		// mediaType field then decides.
		mt = embeddedMediaType(data)
	}
	if !IsManifestMediaType(mt) {
		if isSchema1(served, data) {
			return ocispec.Descriptor{}, nil, fmt.Errorf("fetching manifest %s:%s: it is a Docker schema1 manifest (served as %q), which is deprecated and not supported; push it again as an OCI or Docker schema2 manifest: %w", r, ref, served, ErrUnsupported)
		}
		if mt == "" {
			// The body names no type: report the one it was served as.
			mt = served
		}
		return ocispec.Descriptor{}, nil, fmt.Errorf("fetching manifest %s:%s: unsupported manifest media type %q (want an OCI or Docker schema2 manifest or index): %w", r, ref, mt, ErrUnsupported)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: want, Size: int64(len(data))}, data, nil
}

func (r *Repository) manifestError(resp *http.Response, ref string) error {
	return fmt.Errorf("fetching manifest %s for %s: %w", ref, r, responseError(resp, ErrManifestUnknown))
}

// isSchema1 reports whether a manifest is Docker's schema1, by the media
// type it was served as or, served as generic JSON, by its schemaVersion.
func isSchema1(served string, data []byte) bool {
	if strings.HasPrefix(served, "application/vnd.docker.distribution.manifest.v1+") {
		return true
	}
	var probe struct {
		SchemaVersion int `json:"schemaVersion"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.SchemaVersion == 1
}

func embeddedMediaType(data []byte) string {
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return ""
	}
	return probe.MediaType
}

// Manifest is a decoded image manifest (OCI or Docker schema2; their JSON
// shapes coincide for what ocisync reads).
type Manifest = ocispec.Manifest

// Index is a decoded image index or Docker manifest list.
type Index = ocispec.Index

// DecodeManifest decodes and validates an image manifest of media type mt.
func DecodeManifest(mt string, data []byte) (*Manifest, error) {
	if IsIndexMediaType(mt) {
		return nil, fmt.Errorf("decoding manifest: %q is an index, not a manifest", mt)
	}
	var m Manifest
	if err := decodeStrictJSON(data, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	if err := checkSchema(m.SchemaVersion, m.MediaType, mt); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	if err := checkDescriptor("config", m.Config); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	for i, l := range m.Layers {
		if err := checkDescriptor("layers["+strconv.Itoa(i)+"]", l); err != nil {
			return nil, fmt.Errorf("decoding manifest: %w", err)
		}
	}
	if m.Subject != nil {
		if err := checkDescriptor("subject", *m.Subject); err != nil {
			return nil, fmt.Errorf("decoding manifest: %w", err)
		}
	}
	if m.MediaType == "" {
		m.MediaType = mt
	}
	return &m, nil
}

// DecodeIndex decodes and validates an image index or manifest list of
// media type mt.
func DecodeIndex(mt string, data []byte) (*Index, error) {
	if !IsIndexMediaType(mt) {
		return nil, fmt.Errorf("decoding index: %q is not an index media type", mt)
	}
	var idx Index
	if err := decodeStrictJSON(data, &idx); err != nil {
		return nil, fmt.Errorf("decoding index: %w", err)
	}
	if err := checkSchema(idx.SchemaVersion, idx.MediaType, mt); err != nil {
		return nil, fmt.Errorf("decoding index: %w", err)
	}
	for i, d := range idx.Manifests {
		if err := checkDescriptor("manifests["+strconv.Itoa(i)+"]", d); err != nil {
			return nil, fmt.Errorf("decoding index: %w", err)
		}
	}
	if idx.MediaType == "" {
		idx.MediaType = mt
	}
	return &idx, nil
}

// decodeStrictJSON decodes one JSON object and refuses trailing data, so
// two parsers can never disagree about what a manifest says.
func decodeStrictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: data after the top-level object")
	}
	return nil
}

func checkSchema(version int, embedded, mt string) error {
	if version != 2 {
		return fmt.Errorf("schemaVersion is %d, want 2", version)
	}
	if embedded != "" && embedded != mt {
		return fmt.Errorf("mediaType field %q contradicts the media type %q it was served as", embedded, mt)
	}
	return nil
}

func checkDescriptor(field string, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: invalid digest %q: %w", field, d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size %d", field, d.Size)
	}
	if d.MediaType == "" {
		return fmt.Errorf("%s: missing mediaType", field)
	}
	return nil
}

// ArtifactType says what an artifact is: the manifest's artifactType, or
// its config media type when artifactType is absent (image-spec's advice
// for artifacts made before v1.1).
func ArtifactType(m *Manifest) string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	return m.Config.MediaType
}

// Platform is os/arch[/variant].
type Platform struct {
	OS, Architecture, Variant string
}

// ParsePlatform parses "os/arch" or "os/arch/variant".
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Platform{}, fmt.Errorf("invalid platform %q: want os/arch or os/arch/variant, such as linux/amd64 or linux/arm/v7", s)
	}
	for _, p := range parts {
		if p == "" || strings.TrimSpace(p) != p {
			return Platform{}, fmt.Errorf("invalid platform %q: want os/arch or os/arch/variant, such as linux/amd64 or linux/arm/v7", s)
		}
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func platformOf(d ocispec.Descriptor) string {
	if d.Platform == nil {
		return "unknown"
	}
	return Platform{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant}.String()
}

// SelectPlatform picks the manifest for want from an index. With want nil,
// an index with exactly one entry gives that entry; otherwise it is an
// error that lists the platforms on offer. A requested variant must match;
// with none requested, any variant of the os/arch matches.
func SelectPlatform(idx *Index, want *Platform) (ocispec.Descriptor, error) {
	offered := make([]string, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		offered = append(offered, platformOf(d))
	}
	if want == nil {
		if len(idx.Manifests) == 1 {
			return idx.Manifests[0], nil
		}
		return ocispec.Descriptor{}, fmt.Errorf("the reference is an index of %d manifests (%s): choose one with a platform: %w", len(idx.Manifests), summarizePlatforms(offered), ErrPlatformMismatch)
	}
	for _, d := range idx.Manifests {
		p := d.Platform
		if p == nil || p.OS != want.OS || p.Architecture != want.Architecture {
			continue
		}
		if want.Variant != "" && p.Variant != want.Variant {
			continue
		}
		return d, nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("the index has no manifest for platform %s; it has %s: %w", want, summarizePlatforms(offered), ErrPlatformMismatch)
}

// maxListedPlatforms bounds the platforms an error lists: an index may
// have thousands of entries, and the message ends up in a status.
const maxListedPlatforms = 16

// summarizePlatforms lists platforms in order, each once with a count
// when repeated, and at most maxListedPlatforms of them.
func summarizePlatforms(offered []string) string {
	counts := map[string]int{}
	var order []string
	for _, p := range offered {
		if counts[p] == 0 {
			order = append(order, p)
		}
		counts[p]++
	}
	parts := make([]string, 0, min(len(order), maxListedPlatforms)+1)
	for i, p := range order {
		if i == maxListedPlatforms {
			parts = append(parts, fmt.Sprintf("and %d more", len(order)-i))
			break
		}
		if n := counts[p]; n > 1 {
			p = fmt.Sprintf("%s (%d times)", p, n)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}
