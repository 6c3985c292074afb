package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// testImages are small manager images for two platforms, with stand-ins
// for the binary and the CA bundle.
func testImages() []Image {
	return []Image{
		Manager("linux", "amd64", []byte("amd64 binary"), []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")),
		Manager("linux", "arm64", []byte("arm64 binary"), []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")),
	}
}

func writeLayout(t *testing.T, dir, tag string, images []Image) digest.Digest {
	t.Helper()
	d, err := WriteLayout(dir, tag, images)
	if err != nil {
		t.Fatalf("WriteLayout(%s): %v", dir, err)
	}
	return d
}

// readRawJSON decodes the blob of desc, checking its size and digest
// itself rather than through ReadLayout, so that the test does not trust
// the package's own reader.
func readRawJSON(t *testing.T, dir string, desc v1.Descriptor, v any) []byte {
	t.Helper()
	data := rawBlob(t, dir, desc)
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("blob %s is not JSON: %v", desc.Digest, err)
	}
	return data
}

func rawBlob(t *testing.T, dir string, desc v1.Descriptor) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", desc.Digest.Encoded()))
	if err != nil {
		t.Fatalf("the layout lacks blob %s: %v", desc.Digest, err)
	}
	if int64(len(data)) != desc.Size {
		t.Errorf("blob %s: %d bytes, the descriptor says %d", desc.Digest, len(data), desc.Size)
	}
	if got := digest.FromBytes(data); got != desc.Digest {
		t.Errorf("blob %s has digest %s", desc.Digest, got)
	}
	return data
}

// TestLayoutStructure checks the layout against the image-layout spec:
// oci-layout, index.json naming the tagged index, every blob present with
// the digest and size its descriptor says, diff_ids matching the
// uncompressed layers, and no blob that nothing refers to.
func TestLayoutStructure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	got := writeLayout(t, dir, "v1", testImages())

	var layout v1.ImageLayout
	data, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil || json.Unmarshal(data, &layout) != nil || layout.Version != "1.0.0" {
		t.Fatalf("oci-layout: %s (%v); want {\"imageLayoutVersion\":\"1.0.0\"}", data, err)
	}

	var top v1.Index
	data, err = os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil || json.Unmarshal(data, &top) != nil {
		t.Fatalf("index.json: %s (%v)", data, err)
	}
	if top.SchemaVersion != 2 || top.MediaType != v1.MediaTypeImageIndex || len(top.Manifests) != 1 {
		t.Fatalf("index.json: %s; want schemaVersion 2, an index media type and one entry", data)
	}
	entry := top.Manifests[0]
	if entry.MediaType != v1.MediaTypeImageIndex || entry.Digest != got {
		t.Errorf("index.json entry: %s %s; want %s %s, what WriteLayout returned", entry.MediaType, entry.Digest, v1.MediaTypeImageIndex, got)
	}
	if tag := entry.Annotations[v1.AnnotationRefName]; tag != "v1" {
		t.Errorf("index.json entry %s = %q, want v1", v1.AnnotationRefName, tag)
	}

	used := map[string]bool{entry.Digest.Encoded(): true}
	var index v1.Index
	readRawJSON(t, dir, entry, &index)
	var platforms []string
	for _, m := range index.Manifests {
		used[m.Digest.Encoded()] = true
		if m.MediaType != v1.MediaTypeImageManifest || m.Platform == nil {
			t.Fatalf("index entry %+v: want an image manifest with a platform", m)
		}
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		var manifest v1.Manifest
		readRawJSON(t, dir, m, &manifest)
		if manifest.SchemaVersion != 2 || manifest.MediaType != v1.MediaTypeImageManifest || manifest.Config.MediaType != v1.MediaTypeImageConfig {
			t.Errorf("manifest %s: schemaVersion %d, media type %q, config %q", m.Digest, manifest.SchemaVersion, manifest.MediaType, manifest.Config.MediaType)
		}
		used[manifest.Config.Digest.Encoded()] = true
		var config v1.Image
		readRawJSON(t, dir, manifest.Config, &config)
		if config.OS != m.Platform.OS || config.Architecture != m.Platform.Architecture {
			t.Errorf("config of %s says %s/%s", platforms[len(platforms)-1], config.OS, config.Architecture)
		}
		if len(manifest.Layers) != len(config.RootFS.DiffIDs) || config.RootFS.Type != "layers" {
			t.Fatalf("manifest %s has %d layers, its config %d diff_ids (rootfs type %q)", m.Digest, len(manifest.Layers), len(config.RootFS.DiffIDs), config.RootFS.Type)
		}
		for i, l := range manifest.Layers {
			used[l.Digest.Encoded()] = true
			if l.MediaType != v1.MediaTypeImageLayerGzip {
				t.Errorf("layer %s media type %q, want %s", l.Digest, l.MediaType, v1.MediaTypeImageLayerGzip)
			}
			if got := digest.FromBytes(gunzip(t, rawBlob(t, dir, l))); got != config.RootFS.DiffIDs[i] {
				t.Errorf("layer %s uncompresses to %s, diff_id says %s", l.Digest, got, config.RootFS.DiffIDs[i])
			}
		}
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Errorf("index platforms %v, want %v", platforms, want)
	}

	blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if !used[b.Name()] {
			t.Errorf("blob %s is not referred to", b.Name())
		}
	}
	if len(blobs) != len(used) {
		t.Errorf("%d blobs, %d referred to", len(blobs), len(used))
	}
}

func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header has name %q and mtime %v; both vary between builds", zr.Name, zr.ModTime)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer does not uncompress: %v", err)
	}
	return out
}

// TestManagerImage checks the config and files of the manager image as
// they come back from the layout.
func TestManagerImage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	writeLayout(t, dir, "latest", testImages())
	_, images, err := ReadLayout(dir, "latest")
	if err != nil {
		t.Fatal(err)
	}
	if len(images) != 2 {
		t.Fatalf("%d images, want 2", len(images))
	}
	for _, img := range images {
		t.Run(img.Platform(), func(t *testing.T) {
			if img.User != "65532:65532" || !slices.Equal(img.Entrypoint, []string{"/ocisync"}) || img.Cmd != nil || img.WorkingDir != "/" {
				t.Errorf("config User %q Entrypoint %q Cmd %q WorkingDir %q; want 65532:65532, [/ocisync], none, /", img.User, img.Entrypoint, img.Cmd, img.WorkingDir)
			}
			wantEnv := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
			if !slices.Equal(img.Env, wantEnv) {
				t.Errorf("Env %q, want %q", img.Env, wantEnv)
			}
			if !img.ModTime.IsZero() {
				t.Errorf("config created %v; want none, so that rebuilds give the same digest", img.ModTime)
			}
			type entry struct {
				mode     fs.FileMode
				uid, gid int
			}
			got := map[string]entry{}
			var order []string
			for _, f := range img.Files {
				got[f.Path] = entry{f.Mode, f.UID, f.GID}
				order = append(order, f.Path)
			}
			want := map[string]entry{
				"/etc":                               {fs.ModeDir | 0o755, 0, 0},
				"/etc/group":                         {0o644, 0, 0},
				"/etc/passwd":                        {0o644, 0, 0},
				"/etc/ssl":                           {fs.ModeDir | 0o755, 0, 0},
				"/etc/ssl/certs":                     {fs.ModeDir | 0o755, 0, 0},
				"/etc/ssl/certs/ca-certificates.crt": {0o644, 0, 0},
				"/home":                              {fs.ModeDir | 0o755, 0, 0},
				"/home/nonroot":                      {fs.ModeDir | 0o700, 65532, 65532},
				"/ocisync":                           {0o755, 0, 0},
				"/root":                              {fs.ModeDir | 0o700, 0, 0},
				"/tmp":                               {fs.ModeDir | fs.ModeSticky | 0o777, 0, 0},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("files:\n got %v\nwant %v", got, want)
			}
			if !slices.IsSorted(order) {
				t.Errorf("tar entries are not sorted: %v", order)
			}
			for _, f := range img.Files {
				if f.Path == "/ocisync" && string(f.Data) != img.Arch+" binary" {
					t.Errorf("/ocisync of %s holds %q", img.Platform(), f.Data)
				}
				if f.Path == "/etc/passwd" && !bytes.Contains(f.Data, []byte("\nnonroot:x:65532:65532:")) {
					t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", f.Data)
				}
			}
		})
	}
}

// TestTarHeaders checks what makes layers reproducible and portable:
// numeric owners only, a fixed mtime, the sticky bit and folders marked as
// such.
func TestTarHeaders(t *testing.T) {
	for _, tt := range []struct {
		name    string
		modTime time.Time
		want    time.Time
	}{
		{"epoch by default", time.Time{}, time.Unix(0, 0)},
		{"SOURCE_DATE_EPOCH", time.Unix(1700000000, 999), time.Unix(1700000000, 0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			layer, _, err := Layer([]File{
				{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
				{Path: "/a/b/c", Mode: 0o600, UID: 7, GID: 8, Data: []byte("c")},
				{Path: "/a/link", Mode: fs.ModeSymlink | 0o777, Data: []byte("b/c")},
				{Path: "/a.b", Mode: 0o644},
			}, tt.modTime)
			if err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(bytes.NewReader(gunzip(t, layer)))
			var names []string
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, h.Name)
				if h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(tt.want) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
					t.Errorf("%s: uname %q gname %q mtime %v atime %v ctime %v; want no names, mtime %v and no other times", h.Name, h.Uname, h.Gname, h.ModTime, h.AccessTime, h.ChangeTime, tt.want)
				}
				switch h.Name {
				case "tmp/":
					if h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
						t.Errorf("tmp/: type %q mode %o, want a folder of mode 1777", h.Typeflag, h.Mode)
					}
				case "a/b/c":
					if h.Uid != 7 || h.Gid != 8 || h.Mode != 0o600 {
						t.Errorf("a/b/c: owner %d:%d mode %o, want 7:8 600", h.Uid, h.Gid, h.Mode)
					}
				case "a/link":
					if h.Typeflag != tar.TypeSymlink || h.Linkname != "b/c" {
						t.Errorf("a/link: type %q target %q, want a symbolic link to b/c", h.Typeflag, h.Linkname)
					}
				case "a/", "a/b/":
					if h.Typeflag != tar.TypeDir || h.Mode != 0o755 || h.Uid != 0 {
						t.Errorf("%s: the added parent folder has type %q mode %o uid %d, want a root folder of mode 755", h.Name, h.Typeflag, h.Mode, h.Uid)
					}
				}
			}
			if want := []string{"a/", "a/b/", "a/b/c", "a/link", "a.b", "tmp/"}; !slices.Equal(names, want) {
				t.Errorf("tar entries %q, want %q: sorted, a folder before what it holds", names, want)
			}
		})
	}
}

// TestReproducible writes the same images twice, into different folders,
// and compares every byte; a different mtime must change the digest.
func TestReproducible(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "b")
	da := writeLayout(t, a, "latest", testImages())
	db := writeLayout(t, b, "latest", testImages())
	if da != db {
		t.Fatalf("two writes of the same images: index %s and %s", da, db)
	}
	if fa, fb := tree(t, a), tree(t, b); !reflect.DeepEqual(fa, fb) {
		t.Errorf("the layouts differ:\n%v\n%v", keys(fa), keys(fb))
	}

	later := testImages()
	for i := range later {
		later[i].ModTime = time.Unix(1700000000, 0)
	}
	if dc := writeLayout(t, filepath.Join(t.TempDir(), "c"), "latest", later); dc == da {
		t.Errorf("another ModTime gave the same index %s", dc)
	}
}

// tree returns the files under dir by relative path.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestTag checks the tag annotation across writes and TagOf on the
// references the Makefile's IMG takes.
func TestTag(t *testing.T) {
	for _, tt := range []struct {
		ref, tag string
	}{
		{"ocisync:latest", "latest"},
		{"ocisync", "latest"},
		{"127.0.0.1:5000/ocisync:e2e", "e2e"},
		{"localhost:5000/team/ocisync", "latest"},
		{"registry.example.com/ocisync:v0.1.0@sha256:" + strings.Repeat("a", 64), "v0.1.0"},
	} {
		tag, err := TagOf(tt.ref)
		if err != nil || tag != tt.tag {
			t.Errorf("TagOf(%q) = %q, %v; want %q", tt.ref, tag, err, tt.tag)
			continue
		}
		dir := filepath.Join(t.TempDir(), "layout")
		want := writeLayout(t, dir, tag, testImages()[:1])
		got, _, err := ReadLayout(dir, tt.tag)
		if err != nil || got != want {
			t.Errorf("ReadLayout(%s) = %s, %v; want %s", tt.tag, got, err, want)
		}
	}
	for _, ref := range []string{"", "ocisync:", "ocisync:-x", "ocisync:a+b", "ocisync:" + strings.Repeat("x", 129)} {
		if tag, err := TagOf(ref); err == nil {
			t.Errorf("TagOf(%q) = %q; want an error", ref, tag)
		}
	}
}

// TestReplace checks that an existing layout is replaced whole, that a
// failed write leaves it as it was, that a folder which is not a layout is
// never replaced, and that nothing is left beside the layout.
func TestReplace(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "layout")
	first := writeLayout(t, dir, "one", testImages())
	before := tree(t, dir)

	if _, err := WriteLayout(dir, "two", []Image{{OS: "linux"}}); err == nil {
		t.Fatal("WriteLayout of an image without Arch succeeded")
	}
	if !reflect.DeepEqual(tree(t, dir), before) {
		t.Errorf("a failed write changed the layout")
	}

	images := testImages()[:1]
	second := writeLayout(t, dir, "two", images)
	if second == first {
		t.Fatalf("a different image gave the same index %s", first)
	}
	if _, _, err := ReadLayout(dir, "one"); err == nil {
		t.Errorf("the old tag is still in the replaced layout")
	}
	if got, _, err := ReadLayout(dir, "two"); err != nil || got != second {
		t.Errorf("ReadLayout(two) = %s, %v; want %s", got, err, second)
	}
	blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil || len(blobs) != 4 { // index, manifest, config, layer
		t.Errorf("the replaced layout has %d blobs (%v), want 4: old blobs must go", len(blobs), err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("beside the layout: %v; want only the layout, no temporary folders", names)
	}

	notLayout := filepath.Join(parent, "src")
	if err := os.MkdirAll(notLayout, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notLayout, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = WriteLayout(notLayout, "latest", images)
	if err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Errorf("WriteLayout over a folder with other files: %v; want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(notLayout, "keep")); err != nil {
		t.Errorf("the folder that is not a layout was changed: %v", err)
	}
}

// TestInvalid checks that images WriteLayout cannot write correctly are
// refused with an error naming the problem.
func TestInvalid(t *testing.T) {
	img := func(files ...File) []Image {
		return []Image{{OS: "linux", Arch: "amd64", Files: files}}
	}
	for _, tt := range []struct {
		name   string
		tag    string
		images []Image
		want   string
	}{
		{"no images", "latest", nil, "no images"},
		{"no tag", "", img(), "empty tag"},
		{"no arch", "latest", []Image{{OS: "linux"}}, "set OS and Arch"},
		{"same platform twice", "latest", append(img(), img()...), "two images for platform linux/amd64"},
		{"relative path", "latest", img(File{Path: "etc/passwd"}), "absolute, clean path"},
		{"unclean path", "latest", img(File{Path: "/etc/../passwd"}), "absolute, clean path"},
		{"root", "latest", img(File{Path: "/", Mode: fs.ModeDir}), "absolute, clean path"},
		{"duplicate", "latest", img(File{Path: "/a"}, File{Path: "/a"}), "listed twice"},
		{"device", "latest", img(File{Path: "/dev/null", Mode: fs.ModeDevice}), "only regular files"},
		{"file as parent", "latest", img(File{Path: "/a"}, File{Path: "/a/b"}), "not a folder"},
		{"folder with data", "latest", img(File{Path: "/a", Mode: fs.ModeDir, Data: []byte("x")}), "has data"},
		{"negative owner", "latest", img(File{Path: "/a", UID: -1}), "non-negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			_, err := WriteLayout(dir, tt.tag, tt.images)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("WriteLayout: %v; want an error containing %q", err, tt.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed write left %s (%v)", dir, err)
			}
		})
	}
}

// TestCABundle checks the concatenation update-ca-certificates does: sorted
// by file name, each certificate ending in a newline.
func TestCABundle(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "usr", "share", "ca-certificates", "mozilla")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pem := func(s string) string { return "-----BEGIN CERTIFICATE-----\n" + s + "\n-----END CERTIFICATE-----" }
	files := map[string]string{
		"b.crt":          pem("b") + "\n",
		"A.crt":          pem("A"), // no final newline
		"a_c.crt":        pem("a_c") + "\n",
		"not-a-cert.txt": "ignored",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := CABundle(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := pem("A") + "\n" + pem("a_c") + "\n" + pem("b") + "\n"; string(got) != want {
		t.Errorf("bundle:\n%s\nwant:\n%s", got, want)
	}

	if _, err := CABundle(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no certificates") {
		t.Errorf("CABundle of an empty folder: %v; want an error", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.crt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CABundle(root); err == nil || !strings.Contains(err.Error(), "not a PEM certificate") {
		t.Errorf("CABundle with a file that is not PEM: %v; want an error", err)
	}
}
