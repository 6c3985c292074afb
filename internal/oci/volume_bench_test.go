package oci

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci/reference"
)

// BenchmarkPullToVolume pulls a four-file artifact of 16 and 64 MiB into a
// fresh volume folder per iteration. B/op should be about the same for
// both sizes: layers are streamed to disk, never held in memory.
func BenchmarkPullToVolume(b *testing.B) {
	for _, size := range []int{16 << 20, 64 << 20} {
		b.Run(strconv.Itoa(size>>20)+"MiB", func(b *testing.B) {
			const nLayers = 4
			blobs := map[string][]byte{}
			var layers []ocispec.Descriptor
			for i := range nLayers {
				data := make([]byte, size/nLayers)
				if _, err := rand.Read(data); err != nil {
					b.Fatal(err)
				}
				d := digest.FromBytes(data)
				blobs[d.String()] = data
				layers = append(layers, ocispec.Descriptor{
					MediaType:   "application/octet-stream",
					Digest:      d,
					Size:        int64(len(data)),
					Annotations: map[string]string{AnnotationTitle: "file-" + strconv.Itoa(i) + ".bin"},
				})
			}
			manifest, err := json.Marshal(ocispec.Manifest{
				Versioned: imageVersioned(),
				MediaType: ocispec.MediaTypeImageManifest,
				Config:    ocispec.DescriptorEmptyJSON,
				Layers:    layers,
			})
			if err != nil {
				b.Fatal(err)
			}
			mDigest := digest.FromBytes(manifest)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case strings.HasSuffix(r.URL.Path, "/manifests/latest"), strings.HasSuffix(r.URL.Path, "/manifests/"+mDigest.String()):
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Header().Set("Docker-Content-Digest", mDigest.String())
					http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(manifest))
				case strings.Contains(r.URL.Path, "/blobs/"):
					data, ok := blobs[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]
					if !ok {
						http.NotFound(w, r)
						return
					}
					http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			c, err := NewClient(Options{PlainHTTP: true})
			if err != nil {
				b.Fatal(err)
			}
			repo := c.Repository(reference.Reference{Registry: strings.TrimPrefix(srv.URL, "http://"), Repository: "bench/volume"})
			dir := b.TempDir()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				i++
				root := filepath.Join(dir, strconv.Itoa(i))
				if _, err := repo.PullToVolume(context.Background(), "latest", root, PullOptions{}); err != nil {
					b.Fatal(err)
				}
				// Keep disk use to one copy at a time.
				b.StopTimer()
				if err := os.RemoveAll(root); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
