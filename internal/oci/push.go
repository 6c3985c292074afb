package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci/reference"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

// BlobExists reports whether the repository has the blob.
func (r *Repository) BlobExists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	ctx, cancel := r.withTimeout(r.scopeCtx(ctx, "pull"))
	defer cancel()
	resp, err := r.send(ctx, http.MethodHead, r.url("blobs", desc.Digest.String()), nil, nil)
	if err != nil {
		return false, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		drainClose(resp.Body)
		return true, nil
	case http.StatusNotFound:
		drainClose(resp.Body)
		return false, nil
	}
	return false, fmt.Errorf("checking blob %s in %s: %w", desc.Digest, r, responseError(resp, nil))
}

// PushBlob uploads content as the blob desc, in one monolithic POST+PUT.
// A blob the repository already has is not uploaded again. content must
// yield exactly desc.Size bytes with digest desc.Digest; the registry
// checks the digest and we check the size.
func (r *Repository) PushBlob(ctx context.Context, desc ocispec.Descriptor, content io.Reader) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("pushing blob to %s: invalid digest %q: %w", r, desc.Digest, err)
	}
	ctx, cancel := r.withTimeout(r.scopeCtx(ctx, "pull", "push"))
	defer cancel()
	if ok, err := r.BlobExists(ctx, desc); err != nil {
		return err
	} else if ok {
		return nil
	}
	location, err := r.startUpload(ctx, url.Values{})
	if err != nil {
		return err
	}
	return r.finishUpload(ctx, location, desc, content)
}

// MountBlob asks the registry to link the blob from another repository of
// the same registry. When the registry declines (202), the blob is uploaded
// from getContent instead; with getContent nil that is an error wrapping
// ErrUnsupported.
func (r *Repository) MountBlob(ctx context.Context, desc ocispec.Descriptor, fromRepo string, getContent func() (io.ReadCloser, error)) error {
	if err := reference.ValidateRepository(fromRepo); err != nil {
		return fmt.Errorf("mounting blob into %s: %w", r, err)
	}
	ctx = r.mountScopes(ctx, fromRepo)
	ctx, cancel := r.withTimeout(ctx)
	defer cancel()
	q := url.Values{"mount": {desc.Digest.String()}, "from": {fromRepo}}
	resp, err := r.send(ctx, http.MethodPost, r.url("blobs", "uploads/")+"?"+q.Encode(), nil, nil)
	if err != nil {
		return err
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		drainClose(resp.Body)
		return nil
	case http.StatusAccepted:
		location, err := uploadLocation(resp)
		drainClose(resp.Body)
		if err != nil {
			return fmt.Errorf("mounting blob %s into %s: %w", desc.Digest, r, err)
		}
		if getContent == nil {
			return fmt.Errorf("mounting blob %s from %s into %s: the registry declined the mount and no content was given to upload: %w", desc.Digest, fromRepo, r, ErrUnsupported)
		}
		rc, err := getContent()
		if err != nil {
			return fmt.Errorf("mounting blob %s into %s: getting content to upload: %w", desc.Digest, r, err)
		}
		defer rc.Close()
		return r.finishUpload(ctx, location, desc, rc)
	}
	return fmt.Errorf("mounting blob %s from %s into %s: %w", desc.Digest, fromRepo, r, responseError(resp, nil))
}

func (r *Repository) startUpload(ctx context.Context, q url.Values) (*url.URL, error) {
	rawURL := r.url("blobs", "uploads/")
	if len(q) > 0 {
		rawURL += "?" + q.Encode()
	}
	resp, err := r.send(ctx, http.MethodPost, rawURL, nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("starting blob upload to %s: %w", r, responseError(resp, nil))
	}
	defer drainClose(resp.Body)
	loc, err := uploadLocation(resp)
	if err != nil {
		return nil, fmt.Errorf("starting blob upload to %s: %w", r, err)
	}
	return loc, nil
}

// uploadLocation resolves the Location of an upload session and insists it
// stays on the registry's origin, so that a registry cannot point our
// credentials and content at another host.
func uploadLocation(resp *http.Response) (*url.URL, error) {
	raw := resp.Header.Get("Location")
	if raw == "" {
		return nil, fmt.Errorf("registry answered %d without a Location for the upload", resp.StatusCode)
	}
	loc, err := resp.Request.URL.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("registry sent an invalid upload Location: %w", err)
	}
	if !transport.SameOrigin(loc, resp.Request.URL) {
		return nil, fmt.Errorf("registry sent an upload Location on another origin (%s://%s); refusing to send content there", loc.Scheme, loc.Host)
	}
	return loc, nil
}

func (r *Repository) finishUpload(ctx context.Context, loc *url.URL, desc ocispec.Descriptor, content io.Reader) error {
	q := loc.Query()
	q.Set("digest", desc.Digest.String())
	u := *loc
	u.RawQuery = q.Encode()
	body := &exactReader{r: content, remaining: desc.Size}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), body)
	if err != nil {
		return fmt.Errorf("uploading blob %s to %s: %w", desc.Digest, r, err)
	}
	req.ContentLength = desc.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	if desc.Size == 0 {
		if _, err := body.Read(nil); !errors.Is(err, io.EOF) {
			return fmt.Errorf("uploading blob %s to %s: %w", desc.Digest, r, err)
		}
		req.Body = http.NoBody
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	}
	resp, err := r.client.http.Do(req)
	if ferr := body.failure(); ferr != nil {
		// The transport does not always hand on the body's error.
		if err == nil {
			drainClose(resp.Body)
		}
		return fmt.Errorf("uploading blob %s to %s: %w", desc.Digest, r, ferr)
	}
	if err != nil {
		return fmt.Errorf("uploading blob %s to %s: %w", desc.Digest, r, redactURLError(err))
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("uploading blob %s to %s: %w", desc.Digest, r, responseError(resp, nil))
	}
	drainClose(resp.Body)
	return nil
}

// exactReader yields exactly remaining bytes of r and fails with
// ErrSizeMismatch when r is shorter or longer. It holds back the last bytes
// until it has seen that nothing follows them, so that the registry never
// receives a complete body from content longer than declared (it would
// verify and store it). The transport reads it from its own goroutine,
// hence the lock on err.
type exactReader struct {
	r         io.Reader
	remaining int64
	n         int64

	mu  sync.Mutex
	err error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if err := e.failure(); err != nil {
		return 0, err
	}
	if e.remaining == 0 {
		return e.probeEnd(0)
	}
	if int64(len(p)) > e.remaining {
		p = p[:e.remaining]
	}
	n, err := e.r.Read(p)
	e.remaining -= int64(n)
	e.n += int64(n)
	switch {
	case e.remaining == 0:
		return e.probeEnd(n)
	case err == io.EOF:
		return n, e.fail(fmt.Errorf("content ended after %d bytes, %d fewer than declared: %w", e.n, e.remaining, ErrSizeMismatch))
	}
	return n, err
}

// probeEnd returns n and io.EOF if r has nothing more, and withholds the
// n bytes with an error if it has.
func (e *exactReader) probeEnd(n int) (int, error) {
	var probe [1]byte
	for {
		m, err := e.r.Read(probe[:])
		if m > 0 {
			return 0, e.fail(fmt.Errorf("content is longer than the %d bytes declared: %w", e.n, ErrSizeMismatch))
		}
		if err == io.EOF {
			return n, io.EOF
		}
		if err != nil {
			return 0, e.fail(err)
		}
	}
}

func (e *exactReader) fail(err error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = err
	}
	return e.err
}

func (e *exactReader) failure() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// PushManifest uploads a manifest or index under ref (a tag, or its own
// digest) and returns its descriptor.
func (r *Repository) PushManifest(ctx context.Context, ref, mediaType string, data []byte) (ocispec.Descriptor, error) {
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.SHA256.FromBytes(data), Size: int64(len(data))}
	if int64(len(data)) > r.client.maxManifest {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest to %s: it is %d bytes, over the %d-byte limit: %w", r, len(data), r.client.maxManifest, ErrTooLarge)
	}
	if ref == "" {
		ref = desc.Digest.String()
	} else if d, err := digest.Parse(ref); err == nil && d != desc.Digest {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest to %s@%s: content has digest %s: %w", r, d, desc.Digest, ErrDigestMismatch)
	} else if err != nil {
		if err := reference.ValidateTag(ref); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("pushing manifest to %s: %w", r, err)
		}
	}
	ctx, cancel := r.withTimeout(r.scopeCtx(ctx, "pull", "push"))
	defer cancel()
	resp, err := r.send(ctx, http.MethodPut, r.url("manifests", ref), bytes.NewReader(data), http.Header{"Content-Type": {mediaType}})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if resp.StatusCode != http.StatusCreated {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s to %s: %w", ref, r, responseError(resp, nil))
	}
	drainClose(resp.Body)
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && h != desc.Digest.String() {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s to %s: registry stored digest %s, we sent %s: %w", ref, r, h, desc.Digest, ErrDigestMismatch)
	}
	return desc, nil
}

// Tag points tag at the manifest desc describes, by fetching it and
// putting it again under the tag.
func (r *Repository) Tag(ctx context.Context, desc ocispec.Descriptor, tag string) error {
	if err := reference.ValidateTag(tag); err != nil {
		return fmt.Errorf("tagging %s in %s: %w", desc.Digest, r, err)
	}
	data, err := r.FetchManifestDescriptor(ctx, desc)
	if err != nil {
		return err
	}
	_, err = r.PushManifest(ctx, tag, desc.MediaType, data)
	return err
}

// mountScopes asks for push on this repository and pull on the source of
// a mount, in one token.
func (r *Repository) mountScopes(ctx context.Context, fromRepo string) context.Context {
	ctx = r.scopeCtx(ctx, "pull", "push")
	return (&Repository{client: r.client, Registry: r.Registry, Name: fromRepo}).scopeCtx(ctx, "pull")
}
