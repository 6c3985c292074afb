package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxReferrerPages bounds the pages of one referrers listing, whatever
// the registry's Link headers say.
const maxReferrerPages = 100

// Referrers is what a referrers listing found.
type Referrers struct {
	// Descriptors of the manifests that name the subject, of the
	// artifact type asked for, in the registry's order, at most the
	// bound asked for.
	Descriptors []ocispec.Descriptor
	// Truncated is true when the registry listed more than the bound (or
	// more pages than maxReferrerPages): the caller saw only the first.
	Truncated bool
	// TagSchema is true when they came from the referrers tag schema (an
	// index tagged <alg>-<hex>) because the registry has no referrers
	// API.
	TagSchema bool
}

// Referrers lists the manifests whose subject is the manifest subject
// and whose artifact type is artifactType ("" for any), at most max of
// them (max <= 0: no bound but the page limit). It asks the OCI 1.1
// referrers API, following Link pagination on the registry's origin, and,
// when the registry answers 404 (it has no such API), reads the
// referrers tag schema instead: the index tagged <alg>-<hex>. Each page
// or index counts against the client's manifest size limit. A subject
// with no referrers gives an empty list and no error.
func (r *Repository) Referrers(ctx context.Context, subject digest.Digest, artifactType string, max int) (Referrers, error) {
	if err := subject.Validate(); err != nil {
		return Referrers{}, fmt.Errorf("listing referrers in %s: invalid subject digest %q: %w", r, subject, err)
	}
	ctx, cancel := r.withTimeout(r.scopeCtx(ctx, "pull"))
	defer cancel()
	next := r.url("referrers", subject.String())
	if artifactType != "" {
		next += "?artifactType=" + url.QueryEscape(artifactType)
	}
	var out Referrers
	for page := 0; next != ""; page++ {
		if page == maxReferrerPages {
			out.Truncated = true
			break
		}
		idx, link, err := r.referrersPage(ctx, next, subject)
		if errors.Is(err, errNoReferrersAPI) {
			if page > 0 {
				return Referrers{}, fmt.Errorf("listing referrers of %s in %s: page %d of the referrers API answered 404", subject, r, page+1)
			}
			return r.referrersTagSchema(ctx, subject, artifactType, max)
		}
		if err != nil {
			return Referrers{}, err
		}
		if out.add(idx, artifactType, max) {
			break
		}
		next = link
	}
	return out, nil
}

// add appends the index's descriptors of artifactType and reports
// whether the bound was passed (the listing is then truncated).
func (out *Referrers) add(idx *Index, artifactType string, max int) bool {
	for _, d := range idx.Manifests {
		// A registry may ignore the filter (it says so in
		// OCI-Filters-Applied, or not at all): filter here whatever it
		// did.
		if artifactType != "" && d.ArtifactType != artifactType {
			continue
		}
		if max > 0 && len(out.Descriptors) == max {
			out.Truncated = true
			return true
		}
		out.Descriptors = append(out.Descriptors, d)
	}
	return false
}

// errNoReferrersAPI is a 404 from the referrers endpoint: a registry
// with the API never answers 404 there.
var errNoReferrersAPI = errors.New("the registry has no referrers API")

func (r *Repository) referrersPage(ctx context.Context, rawURL string, subject digest.Digest) (*Index, string, error) {
	resp, err := r.send(ctx, http.MethodGet, rawURL, nil, http.Header{"Accept": {ocispec.MediaTypeImageIndex}})
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode == http.StatusNotFound {
		drainClose(resp.Body)
		return nil, "", errNoReferrersAPI
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("listing referrers of %s in %s: %w", subject, r, responseError(resp, nil))
	}
	defer drainClose(resp.Body)
	limit := r.client.maxManifest
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("listing referrers of %s in %s: %w", subject, r, err)
	}
	if int64(len(data)) > limit {
		return nil, "", fmt.Errorf("listing referrers of %s in %s: a page is over the %d-byte limit: %w", subject, r, limit, ErrTooLarge)
	}
	mt := mediaTypeOf(resp.Header.Get("Content-Type"))
	if mt != ocispec.MediaTypeImageIndex {
		mt = embeddedMediaType(data)
	}
	idx, err := DecodeIndex(mt, data)
	if err != nil {
		return nil, "", fmt.Errorf("listing referrers of %s in %s: the registry's answer is not an image index: %w", subject, r, err)
	}
	next, err := nextLink(resp.Request.URL, resp.Header.Values("Link"))
	if err != nil {
		return nil, "", fmt.Errorf("listing referrers of %s in %s: %w", subject, r, err)
	}
	return idx, next, nil
}

// ReferrersTag is the tag of the referrers tag schema for subject:
// <alg>-<hex>, an index of the manifests that refer to it.
func ReferrersTag(subject digest.Digest) string {
	return subject.Algorithm().String() + "-" + subject.Encoded()
}

func (r *Repository) referrersTagSchema(ctx context.Context, subject digest.Digest, artifactType string, max int) (Referrers, error) {
	out := Referrers{TagSchema: true}
	desc, data, err := r.fetchManifest(ctx, ReferrersTag(subject))
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrManifestUnknown) {
		return out, nil
	}
	if err != nil {
		return Referrers{}, fmt.Errorf("listing referrers of %s in %s through the tag %s: %w", subject, r, ReferrersTag(subject), err)
	}
	if desc.MediaType != ocispec.MediaTypeImageIndex {
		return Referrers{}, fmt.Errorf("listing referrers of %s in %s: the tag %s holds a %s, not an image index", subject, r, ReferrersTag(subject), desc.MediaType)
	}
	idx, err := DecodeIndex(desc.MediaType, data)
	if err != nil {
		return Referrers{}, fmt.Errorf("listing referrers of %s in %s through the tag %s: %w", subject, r, ReferrersTag(subject), err)
	}
	out.add(idx, artifactType, max)
	return out, nil
}

// DescribeReferrers says how many referrers a listing found, for errors:
// "2 signatures (referrers API)", "no signature (referrers tag schema)".
func DescribeReferrers(found Referrers, what string) string {
	how := "referrers API"
	if found.TagSchema {
		how = "referrers tag schema"
	}
	var b strings.Builder
	switch n := len(found.Descriptors); n {
	case 0:
		fmt.Fprintf(&b, "no %s", what)
	case 1:
		fmt.Fprintf(&b, "1 %s", what)
	default:
		fmt.Fprintf(&b, "%d %ss", n, what)
	}
	if found.Truncated {
		fmt.Fprintf(&b, ", the first of more")
	}
	fmt.Fprintf(&b, " (%s)", how)
	return b.String()
}
