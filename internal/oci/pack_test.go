package oci

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// makeTree writes a folder with a subfolder, an executable file and a
// relative symlink under root/name and returns its path.
func makeTree(t *testing.T, root, name string) string {
	t.Helper()
	dir := filepath.Join(root, name)
	for _, d := range []string{dir, filepath.Join(dir, "sub"), filepath.Join(dir, "sub", "deeper"), filepath.Join(dir, "empty")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []struct {
		path string
		data string
		mode os.FileMode
	}{
		{"README.md", "# readme\n", 0o644},
		{"run.sh", "#!/bin/sh\necho hi\n", 0o755},
		{"sub/data.bin", strings.Repeat("\x00\x01binary", 5000), 0o644},
		{"sub/deeper/x.txt", "deep", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // umask-proof
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../README.md", filepath.Join(dir, "sub", "readme-link")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPushFilesPullToDirRoundTrip(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // PushFiles stages directory tarballs in the temp folder
	src := t.TempDir()
	tree := makeTree(t, src, "tree")
	single := filepath.Join(src, "config.yaml")
	if err := os.WriteFile(single, []byte("key: value\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(single, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name         string
		opts         PushOptions
		wantConfigMT string
		wantArtifact string
	}{
		{name: "without artifact type", opts: PushOptions{Annotations: map[string]string{"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}}, wantConfigMT: MediaTypeUnknownConfig},
		{name: "with artifact type", opts: PushOptions{ArtifactType: "application/vnd.example.thing"}, wantConfigMT: ocispec.MediaTypeEmptyJSON, wantArtifact: "application/vnd.example.thing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			r := f.repo(t)
			ctx := context.Background()
			desc, err := r.PushFiles(ctx, "v1", []File{{Path: single}, {Path: tree}}, tt.opts)
			if err != nil {
				t.Fatalf("PushFiles: %v", err)
			}
			stored, dg, ok := f.manifest(testRepo, "v1")
			if !ok || dg != desc.Digest.String() || desc.MediaType != ocispec.MediaTypeImageManifest || desc.Size != int64(len(stored.data)) {
				t.Fatalf("tag v1 -> %s (%v), PushFiles returned %+v", dg, ok, desc)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(stored.data, &m); err != nil {
				t.Fatal(err)
			}
			if m.Config.MediaType != tt.wantConfigMT || m.ArtifactType != tt.wantArtifact {
				t.Errorf("config media type %q, artifactType %q; want %q, %q", m.Config.MediaType, m.ArtifactType, tt.wantConfigMT, tt.wantArtifact)
			}
			if tt.wantArtifact != "" && (m.Config.Digest != ocispec.DescriptorEmptyJSON.Digest || m.Config.Size != 2) {
				t.Errorf("config %+v is not the empty descriptor", m.Config)
			}
			if _, ok := f.blob(testRepo, m.Config.Digest); !ok {
				t.Errorf("config blob %s was not pushed", m.Config.Digest)
			}
			if !reflect.DeepEqual(m.Annotations, tt.opts.Annotations) {
				t.Errorf("annotations %v, want %v", m.Annotations, tt.opts.Annotations)
			}
			if _, err := DecodeManifest(ocispec.MediaTypeImageManifest, stored.data); err != nil {
				t.Errorf("pushed manifest does not decode: %v", err)
			}
			if len(m.Layers) != 2 {
				t.Fatalf("%d layers, want 2", len(m.Layers))
			}
			fileLayer, dirLayer := m.Layers[0], m.Layers[1]
			if fileLayer.MediaType != ocispec.MediaTypeImageLayer || fileLayer.Annotations[AnnotationTitle] != "config.yaml" || fileLayer.Annotations[AnnotationUnpack] != "" {
				t.Errorf("file layer %+v", fileLayer)
			}
			if dirLayer.MediaType != ocispec.MediaTypeImageLayerGzip || dirLayer.Annotations[AnnotationTitle] != "tree" ||
				dirLayer.Annotations[AnnotationUnpack] != "true" || !strings.HasPrefix(dirLayer.Annotations[AnnotationContentDigest], "sha256:") {
				t.Errorf("directory layer %+v", dirLayer)
			}
			for _, l := range m.Layers {
				if _, ok := f.blob(testRepo, l.Digest); !ok {
					t.Errorf("layer %s was not pushed", l.Digest)
				}
			}

			out := filepath.Join(t.TempDir(), "out")
			res, err := r.PullToDir(ctx, "v1", out, PullOptions{})
			if err != nil {
				t.Fatalf("PullToDir: %v", err)
			}
			if !reflect.DeepEqual(res.Files, []string{"config.yaml", "tree"}) {
				t.Errorf("pulled %q", res.Files)
			}
			if got, want := snapshot(t, filepath.Join(out, "tree")), snapshot(t, tree); !reflect.DeepEqual(got, want) {
				t.Errorf("directory differs after the round trip:\n got %v\nwant %v", got, want)
			}
			if got, want := snapshot(t, filepath.Join(out, "config.yaml")), snapshot(t, single); !reflect.DeepEqual(got, want) {
				t.Errorf("file differs after the round trip: got %v, want %v", got, want)
			}

			// Pushing the same content again uploads nothing new.
			before := len(f.reqs("", "/blobs/uploads/"))
			if _, err := r.PushFiles(ctx, "v2", []File{{Path: single}, {Path: tree}}, tt.opts); err != nil {
				t.Fatal(err)
			}
			if after := len(f.reqs("", "/blobs/uploads/")); after != before {
				t.Errorf("a second push of the same content made %d upload requests", after-before)
			}
		})
	}
}

func TestPushFilesErrors(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	src := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, d, "same.txt"), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		files  []File
		errHas string
	}{
		{name: "no files", files: nil, errHas: "no files"},
		{name: "same base name twice", files: []File{{Path: filepath.Join(src, "a", "same.txt")}, {Path: filepath.Join(src, "b", "same.txt")}}, errHas: "same.txt"},
		{name: "missing file", files: []File{{Path: filepath.Join(src, "missing")}}, errHas: "missing"},
		{name: "root folder has no name", files: []File{{Path: "/"}}, errHas: "no file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			_, err := f.repo(t).PushFiles(context.Background(), "v1", tt.files, PushOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.errHas)
			}
			if n := len(f.reqs(http.MethodPut, "/manifests/")); n != 0 {
				t.Errorf("a manifest was pushed despite the error")
			}
		})
	}
}

// TestPushFilesSymlinkToFolder pushes a symlink that names a folder: the
// folder's content is what gets packed, under the symlink's name.
func TestPushFilesSymlinkToFolder(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	src := t.TempDir()
	tree := makeTree(t, src, "real")
	alias := filepath.Join(src, "alias")
	if err := os.Symlink("real", alias); err != nil {
		t.Fatal(err)
	}
	f := newFakeRegistry(t)
	r := f.repo(t)
	if _, err := r.PushFiles(context.Background(), "v1", []File{{Path: alias}}, PushOptions{}); err != nil {
		t.Fatalf("PushFiles: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out")
	res, err := r.PullToDir(context.Background(), "v1", out, PullOptions{})
	if err != nil {
		t.Fatalf("PullToDir: %v", err)
	}
	if !reflect.DeepEqual(res.Files, []string{"alias"}) {
		t.Errorf("pulled %q, want [alias]", res.Files)
	}
	if got, want := snapshot(t, filepath.Join(out, "alias")), snapshot(t, tree); !reflect.DeepEqual(got, want) {
		t.Errorf("pulled folder differs:\n got %v\nwant %v", got, want)
	}
}
