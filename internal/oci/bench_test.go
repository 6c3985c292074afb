package oci

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci/reference"
)

// BenchmarkFetchBlob streams a 32 MiB blob through FetchBlob and the
// Verifier. B/op is the memory target: it must stay far below the blob
// size, since blobs are never buffered whole.
func BenchmarkFetchBlob(b *testing.B) {
	const size = 32 << 20
	blob := make([]byte, size)
	if _, err := rand.Read(blob); err != nil {
		b.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(blob), Size: size}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/blobs/"+desc.Digest.String()) {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	}))
	defer srv.Close()
	c, err := NewClient(Options{PlainHTTP: true})
	if err != nil {
		b.Fatal(err)
	}
	repo := c.Repository(reference.Reference{Registry: strings.TrimPrefix(srv.URL, "http://"), Repository: "bench/blob"})
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rc, err := repo.FetchBlob(context.Background(), desc, size)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

// BenchmarkVerifier measures hashing and size checking alone.
func BenchmarkVerifier(b *testing.B) {
	const size = 8 << 20
	blob := make([]byte, size)
	desc := ocispec.Descriptor{Digest: digest.FromBytes(blob), Size: size}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		v := NewVerifier(io.NopCloser(bytes.NewReader(blob)), desc)
		if _, err := io.Copy(io.Discard, v); err != nil {
			b.Fatal(err)
		}
	}
}
