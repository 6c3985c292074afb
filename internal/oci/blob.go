package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FetchBlob streams the blob desc names. The reader checks size and digest
// as it goes: reading past desc.Size, stopping short of it, or ending with
// another digest makes Read fail with ErrSizeMismatch or ErrDigestMismatch
// instead of returning io.EOF. Callers must therefore treat the bytes as
// unverified until Read has returned io.EOF, and discard them otherwise.
//
// maxSize bounds desc.Size; a blob over it is refused before any byte is
// downloaded. Redirects to storage hosts are followed without sending
// registry credentials there (see package transport).
func (r *Repository) FetchBlob(ctx context.Context, desc ocispec.Descriptor, maxSize int64) (io.ReadCloser, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("fetching blob from %s: descriptor has an invalid digest %q: %w", r, desc.Digest, err)
	}
	if desc.Size < 0 {
		return nil, fmt.Errorf("fetching blob %s from %s: descriptor has negative size %d", desc.Digest, r, desc.Size)
	}
	if maxSize > 0 && desc.Size > maxSize {
		return nil, fmt.Errorf("fetching blob %s from %s: it is %d bytes, over the %d-byte limit: %w", desc.Digest, r, desc.Size, maxSize, ErrTooLarge)
	}
	if len(desc.Data) > 0 {
		// Embedded data saves a round trip; it is verified like any blob.
		return NewVerifier(io.NopCloser(bytes.NewReader(desc.Data)), desc), nil
	}

	ctx, cancel := r.withTimeout(r.scopeCtx(ctx, "pull"))
	resp, err := r.send(ctx, http.MethodGet, r.url("blobs", desc.Digest.String()), nil, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		return nil, fmt.Errorf("fetching blob %s from %s: %w", desc.Digest, r, responseError(resp, ErrBlobUnknown))
	}
	if resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
		drainClose(resp.Body)
		cancel()
		return nil, fmt.Errorf("fetching blob %s from %s: registry sends %d bytes, descriptor says %d: %w", desc.Digest, r, resp.ContentLength, desc.Size, ErrSizeMismatch)
	}
	return &cancelOnClose{ReadCloser: NewVerifier(resp.Body, desc), cancel: cancel}, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// Verifier wraps a blob stream and checks it against a descriptor.
type Verifier struct {
	rc       io.ReadCloser
	desc     ocispec.Descriptor
	hash     hash.Hash
	n        int64
	err      error // sticky: once failed, every Read fails the same way
	verified bool
}

// NewVerifier returns a reader that yields rc's bytes and fails unless they
// are exactly desc.Size bytes with digest desc.Digest. An unsupported digest
// algorithm fails on the first Read.
func NewVerifier(rc io.ReadCloser, desc ocispec.Descriptor) *Verifier {
	v := &Verifier{rc: rc, desc: desc}
	if desc.Digest.Algorithm().Available() {
		v.hash = desc.Digest.Algorithm().Hash()
	} else {
		v.err = fmt.Errorf("blob %s: digest algorithm %q is not supported", desc.Digest, desc.Digest.Algorithm())
	}
	return v
}

// Read implements io.Reader.
func (v *Verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	// Never hand on more than desc.Size bytes; read one byte beyond to
	// notice a longer stream. (Compared without remaining+1, which
	// overflows for a descriptor size near MaxInt64.)
	if remaining := v.desc.Size - v.n; int64(len(p))-1 > remaining {
		p = p[:remaining+1]
	}
	n, err := v.rc.Read(p)
	if v.n+int64(n) > v.desc.Size {
		v.err = fmt.Errorf("blob %s: more than the %d bytes its descriptor says: %w", v.desc.Digest, v.desc.Size, ErrSizeMismatch)
		return 0, v.err
	}
	v.n += int64(n)
	v.hash.Write(p[:n])
	switch {
	case err == io.EOF:
		if v.n != v.desc.Size {
			v.err = fmt.Errorf("blob %s: stream ended after %d of %d bytes (truncated download): %w", v.desc.Digest, v.n, v.desc.Size, ErrSizeMismatch)
			return n, v.err
		}
		if got := digest.NewDigest(v.desc.Digest.Algorithm(), v.hash); got != v.desc.Digest {
			v.err = fmt.Errorf("blob %s: content has digest %s: %w", v.desc.Digest, got, ErrDigestMismatch)
			return n, v.err
		}
		v.verified = true
		v.err = io.EOF
		return n, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		// The connection closed before the promised Content-Length: a
		// truncated download, as much a size mismatch as a short stream.
		v.err = fmt.Errorf("blob %s: stream broke off after %d of %d bytes (truncated download): %w: %w", v.desc.Digest, v.n, v.desc.Size, ErrSizeMismatch, err)
		return n, v.err
	case err != nil:
		v.err = fmt.Errorf("reading blob %s: %w", v.desc.Digest, err)
		return n, v.err
	}
	return n, nil
}

// Verified reports whether the whole stream was read and matched.
func (v *Verifier) Verified() bool { return v.verified }

// Close closes the underlying stream.
func (v *Verifier) Close() error { return v.rc.Close() }
