package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// snapshot records a tree: files with content and mode, folders, links.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + target
		case info.IsDir():
			out[rel] = "dir"
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = info.Mode().Perm().String() + " " + string(data)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot of %s: %v", root, err)
	}
	return out
}

// leftovers lists .ocisync-pull-* folders in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, ".ocisync-pull-*"))
	if err != nil {
		t.Fatal(err)
	}
	return matches
}

type tarEntry struct {
	name     string
	typ      byte
	body     string
	linkname string
	mode     int64
}

// tarGz builds a tar+gzip of entries and returns it with the digest of the
// uncompressed tar.
func tarGz(t *testing.T, entries ...tarEntry) ([]byte, digest.Digest) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if e.typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: mode, Linkname: e.linkname}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gzBuf bytes.Buffer
	gw := gzip.NewWriter(&gzBuf)
	if _, err := gw.Write(tarBuf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	return gzBuf.Bytes(), digest.FromBytes(tarBuf.Bytes())
}

// dirLayer describes a directory layer the way ORAS annotates it.
func dirLayer(title string, gz []byte, tarDigest digest.Digest) ocispec.Descriptor {
	d := layerDesc(ocispec.MediaTypeImageLayerGzip, title, gz)
	d.Annotations[AnnotationUnpack] = "true"
	if tarDigest != "" {
		d.Annotations[AnnotationContentDigest] = tarDigest.String()
	}
	return d
}

// existingDir makes dir with some content and returns its snapshot.
func existingDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"a.txt": "old a", "keep.txt": "keep me", "old/x": "old x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return snapshot(t, dir)
}

func TestPullToDir(t *testing.T) {
	a, b, c := []byte("content of a"), []byte("content of b"), []byte("untitled")
	cfgLayer := layerDesc("application/vnd.example.config", "conf.json", []byte(`{"k":1}`))
	goodDirGz, goodDirTar := tarGz(t,
		tarEntry{name: "tree/", typ: tar.TypeDir},
		tarEntry{name: "tree/sub/", typ: tar.TypeDir},
		tarEntry{name: "tree/sub/f.txt", typ: tar.TypeReg, body: "in sub"},
		tarEntry{name: "tree/run.sh", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
		tarEntry{name: "tree/link", typ: tar.TypeSymlink, linkname: "sub/f.txt"},
		tarEntry{name: "tree/hard", typ: tar.TypeLink, linkname: "tree/sub/f.txt"},
		tarEntry{name: "./tree/dot.txt", typ: tar.TypeReg, body: "dot"},
	)

	type layer struct {
		desc ocispec.Descriptor
		data []byte
	}
	plain := func(title string, data []byte) layer {
		return layer{layerDesc(ocispec.MediaTypeImageLayer, title, data), data}
	}
	tests := []struct {
		name      string
		layers    []layer
		opts      PullOptions
		existing  bool                  // DIR exists with content beforehand
		tamper    func(f *fakeRegistry) // after pushing
		wantFiles []string
		want      map[string]string // entries expected in DIR (beyond keep checks)
		wantErr   error
		errHas    string
	}{
		{
			name:      "titled layers, untitled skipped",
			layers:    []layer{plain("a.txt", a), plain("", c), plain("b.txt", b)},
			wantFiles: []string{"a.txt", "b.txt"},
			want:      map[string]string{".": "dir", "a.txt": "-rw-r--r-- content of a", "b.txt": "-rw-r--r-- content of b"},
		},
		{
			name:      "into an existing folder",
			layers:    []layer{plain("a.txt", a), plain("b.txt", b)},
			existing:  true,
			wantFiles: []string{"a.txt", "b.txt"},
			want:      map[string]string{".": "dir", "a.txt": "-rw-r--r-- content of a", "b.txt": "-rw-r--r-- content of b", "keep.txt": "-rw-r--r-- keep me", "old": "dir", "old/x": "-rw-r--r-- old x"},
		},
		{
			name:      "nested title",
			layers:    []layer{plain("sub/dir/a.txt", a)},
			wantFiles: []string{"sub/dir/a.txt"},
			want:      map[string]string{".": "dir", "sub": "dir", "sub/dir": "dir", "sub/dir/a.txt": "-rw-r--r-- content of a"},
		},
		{
			name:      "media type filter",
			layers:    []layer{plain("a.txt", a), {cfgLayer, []byte(`{"k":1}`)}},
			opts:      PullOptions{MediaType: "application/vnd.example.config"},
			wantFiles: []string{"conf.json"},
			want:      map[string]string{".": "dir", "conf.json": `-rw-r--r-- {"k":1}`},
		},
		{
			name:     "selector matching nothing",
			layers:   []layer{plain("a.txt", a)},
			opts:     PullOptions{MediaType: "application/x-none"},
			existing: true,
			errHas:   ocispec.MediaTypeImageLayer,
		},
		{
			name:     "no titled layer",
			layers:   []layer{plain("", a)},
			existing: true,
			errHas:   "title",
		},
		{name: "title with ..", layers: []layer{plain("a.txt", a), plain("../evil.txt", b)}, existing: true, errHas: "../evil.txt"},
		{name: "title with inner ..", layers: []layer{plain("x/../../evil.txt", b)}, existing: true, errHas: "evil.txt"},
		{name: "absolute title", layers: []layer{plain("/tmp/evil.txt", b)}, existing: true, errHas: "/tmp/evil.txt"},
		{name: "title .", layers: []layer{plain(".", b)}, existing: true, errHas: "not a relative path"},
		{name: "title a/..", layers: []layer{plain("a/..", b)}, existing: true, errHas: "not a relative path"},
		{name: "directory layer titled .", layers: []layer{{dirLayer(".", mustTarGz(t, tarEntry{name: "./f", typ: tar.TypeReg, body: "x"}), ""), mustTarGz(t, tarEntry{name: "./f", typ: tar.TypeReg, body: "x"})}}, existing: true, errHas: "not a relative path"},
		{
			name:     "second blob tampered",
			layers:   []layer{plain("a.txt", a), plain("b.txt", b)},
			existing: true,
			tamper: func(f *fakeRegistry) {
				f.mu.Lock()
				f.blobs[testRepo+"@"+digest.FromBytes(b).String()] = bytes.ToUpper(b)
				f.mu.Unlock()
			},
			wantErr: ErrDigestMismatch,
		},
		{
			name:     "second blob missing",
			layers:   []layer{plain("a.txt", a), plain("b.txt", b)},
			existing: true,
			tamper: func(f *fakeRegistry) {
				f.mu.Lock()
				delete(f.blobs, testRepo+"@"+digest.FromBytes(b).String())
				f.mu.Unlock()
			},
			wantErr: ErrBlobUnknown,
		},
		{name: "MaxBytes exceeded", layers: []layer{plain("a.txt", a), plain("b.txt", b)}, opts: PullOptions{MaxBytes: int64(len(a)+len(b)) - 1}, existing: true, wantErr: ErrTooLarge},
		{name: "MaxBytes exact", layers: []layer{plain("a.txt", a), plain("b.txt", b)}, opts: PullOptions{MaxBytes: int64(len(a) + len(b))}, wantFiles: []string{"a.txt", "b.txt"}},
		{name: "duplicate titles", layers: []layer{plain("a.txt", a), plain("a.txt", b)}, existing: true, errHas: "overwrite each other"},
		{name: "title below another", layers: []layer{plain("x", a), plain("x/y", b)}, existing: true, errHas: "overwrite each other"},
		{name: "title above another", layers: []layer{plain("x/y", a), plain("x", b)}, existing: true, errHas: "overwrite each other"},
		{
			name:      "directory layer",
			layers:    []layer{plain("a.txt", a), {dirLayer("tree", goodDirGz, goodDirTar), goodDirGz}},
			wantFiles: []string{"a.txt", "tree"},
			want: map[string]string{
				"a.txt":          "-rw-r--r-- content of a",
				"tree":           "dir",
				"tree/sub":       "dir",
				"tree/sub/f.txt": "-rw-r--r-- in sub",
				"tree/run.sh":    "-rwxr-xr-x #!/bin/sh\n",
				"tree/link":      "link -> sub/f.txt",
				"tree/hard":      "-rw-r--r-- in sub",
				"tree/dot.txt":   "-rw-r--r-- dot",
				".":              "dir",
			},
		},
		{
			name:      "directory layer replaces an existing folder",
			layers:    []layer{{dirLayer("old", mustTarGz(t, tarEntry{name: "old/new", typ: tar.TypeReg, body: "new"}), ""), mustTarGz(t, tarEntry{name: "old/new", typ: tar.TypeReg, body: "new"})}},
			existing:  true,
			wantFiles: []string{"old"},
			want:      map[string]string{".": "dir", "old": "dir", "old/new": "-rw-r--r-- new", "keep.txt": "-rw-r--r-- keep me", "a.txt": "-rw-r--r-- old a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			var descs []ocispec.Descriptor
			var datas [][]byte
			for _, l := range tt.layers {
				descs = append(descs, l.desc)
				datas = append(datas, l.data)
			}
			f.pushArtifact(t, testRepo, "v1", descs, datas)
			if tt.tamper != nil {
				tt.tamper(f)
			}
			parent := t.TempDir()
			dir := filepath.Join(parent, "out", "dir")
			var before map[string]string
			if tt.existing {
				before = existingDir(t, dir)
			}
			res, err := f.repo(t).PullToDir(context.Background(), "v1", dir, tt.opts)
			if left := leftovers(t, filepath.Dir(dir)); len(left) > 0 {
				t.Errorf("temporary folders left beside DIR: %q", left)
			}
			if tt.wantErr != nil || tt.errHas != "" {
				if err == nil {
					t.Fatalf("PullToDir succeeded with %v, want an error", res.Files)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errHas) {
					t.Errorf("err = %q, want it to mention %q", err, tt.errHas)
				}
				if tt.existing {
					if after := snapshot(t, dir); !reflect.DeepEqual(after, before) {
						t.Errorf("DIR changed on failure:\nbefore %v\nafter  %v", before, after)
					}
				} else if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("DIR was created on failure (%v)", err)
				}
				if _, err := os.Lstat(filepath.Join(parent, "out", "evil.txt")); err == nil {
					t.Error("a file escaped DIR")
				}
				return
			}
			if err != nil {
				t.Fatalf("PullToDir: %v", err)
			}
			if tt.wantFiles != nil && !reflect.DeepEqual(res.Files, tt.wantFiles) {
				t.Errorf("Files = %q, want %q", res.Files, tt.wantFiles)
			}
			got := snapshot(t, dir)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("DIR/%s = %q, want %q", k, got[k], v)
				}
			}
			if tt.want != nil && len(got) != len(tt.want) {
				t.Errorf("DIR holds %v, want exactly %v", got, tt.want)
			}
			if res.Target == nil || res.Target.Manifest == nil {
				t.Error("result has no target")
			}
		})
	}
}

func mustTarGz(t *testing.T, entries ...tarEntry) []byte {
	gz, _ := tarGz(t, entries...)
	return gz
}

// TestUnpackSafety pulls one directory layer titled "d" per case into an
// existing DIR and checks refusals leave DIR and its surroundings alone.
func TestUnpackSafety(t *testing.T) {
	reg := func(name, body string) tarEntry { return tarEntry{name: name, typ: tar.TypeReg, body: body} }
	link := func(name, target string) tarEntry {
		return tarEntry{name: name, typ: tar.TypeSymlink, linkname: target}
	}
	hard := func(name, target string) tarEntry { return tarEntry{name: name, typ: tar.TypeLink, linkname: target} }
	dir := func(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir} }

	tests := []struct {
		name       string
		entries    []tarEntry
		badDigest  bool
		maxUnpack  int64
		maxEntries int
		wantErr    error
		errHas     string
		ok         bool // extraction must succeed
	}{
		{name: "well formed", entries: []tarEntry{dir("d/"), reg("d/f", "x"), link("d/l", "f"), link("d/up", "sub/../f")}, ok: true},
		{name: "entry outside the prefix", entries: []tarEntry{dir("d/"), reg("other/f", "x")}, errHas: "outside the directory"},
		{name: "prefix look-alike", entries: []tarEntry{reg("dd/f", "x")}, errHas: "outside the directory"},
		{name: "dot-dot escape", entries: []tarEntry{reg("d/../evil.txt", "x")}, errHas: "outside the directory"},
		{name: "deep dot-dot escape", entries: []tarEntry{reg("d/a/../../../evil.txt", "x")}, errHas: "outside the directory"},
		{name: "absolute entry", entries: []tarEntry{reg("/d/f", "x")}, errHas: "outside the directory"},
		{name: "absolute symlink", entries: []tarEntry{link("d/l", "/etc/passwd")}, errHas: "absolute"},
		{name: "escaping symlink", entries: []tarEntry{link("d/l", "../evil.txt")}, errHas: "outside"},
		{name: "escaping symlink from a subfolder", entries: []tarEntry{dir("d/s/"), link("d/s/l", "../../x")}, errHas: "outside"},
		{name: "symlink escaping through another symlink", entries: []tarEntry{link("d/self", "."), link("d/l", "self/..")}, errHas: "outside"},
		{name: "symlink escaping through a later symlink", entries: []tarEntry{link("d/l", "self/.."), link("d/self", ".")}, errHas: "outside"},
		{name: "symlink escaping through a symlink in a subfolder", entries: []tarEntry{dir("d/a/"), link("d/a/up", ".."), link("d/l", "a/up/..")}, errHas: "outside"},
		{name: "symlink escaping through a symlink chain", entries: []tarEntry{dir("d/a/"), link("d/a/up", ".."), link("d/s", "a/up"), link("d/l", "s/..")}, errHas: "outside"},
		{name: "symlink loop", entries: []tarEntry{link("d/x", "y"), link("d/y", "x")}, errHas: "loop"},
		{name: "symlinks through symlinks that stay inside", entries: []tarEntry{dir("d/a/b/"), link("d/a/up", ".."), link("d/s", "a/up"), link("d/l", "s/a/b"), link("d/dangling", "nowhere/x")}, ok: true},
		{name: "root entry is a symlink", entries: []tarEntry{link("d", "."), reg("d/f", "x")}, errHas: "d"},
		{name: "root entry is a file", entries: []tarEntry{reg("d", "x")}, errHas: "d"},
		{name: "entry below a symlink", entries: []tarEntry{dir("d/real/"), link("d/l", "real"), reg("d/l/f", "x")}, errHas: "below the symbolic link"},
		{name: "entry below a symlink to outside", entries: []tarEntry{link("d/l", "."), reg("d/l/f", "x")}, errHas: "below the symbolic link"},
		{name: "hard link outside the prefix", entries: []tarEntry{reg("d/f", "x"), hard("d/h", "../outside.txt")}, errHas: "outside the directory"},
		{name: "hard link to another prefix", entries: []tarEntry{reg("d/f", "x"), hard("d/h", "e/f")}, errHas: "outside the directory"},
		{name: "hard link to a symlink", entries: []tarEntry{link("d/l", "f"), reg("d/f", "x"), hard("d/h", "d/l")}, errHas: "symbolic link"},
		{name: "hard link to a missing file", entries: []tarEntry{hard("d/h", "d/nope")}, errHas: "not a file extracted before"},
		{name: "content digest mismatch", entries: []tarEntry{reg("d/f", "x")}, badDigest: true, wantErr: ErrDigestMismatch},
		{name: "unpacked size over the limit", entries: []tarEntry{reg("d/f", "12345"), reg("d/g", "67890")}, maxUnpack: 9, wantErr: ErrTooLarge},
		{name: "too many entries", entries: []tarEntry{dir("d/"), reg("d/a", ""), reg("d/b", ""), reg("d/c", "")}, maxEntries: 3, wantErr: ErrTooLarge},
		{name: "entries at the limit", entries: []tarEntry{dir("d/"), reg("d/a", ""), reg("d/b", "")}, maxEntries: 3, ok: true},
		{name: "unpacked size at the limit", entries: []tarEntry{reg("d/f", "12345"), reg("d/g", "67890")}, maxUnpack: 10, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.maxEntries > 0 {
				defer func(n int) { maxUnpackEntries = n }(maxUnpackEntries)
				maxUnpackEntries = tt.maxEntries
			}
			f := newFakeRegistry(t)
			gz, tarDigest := tarGz(t, tt.entries...)
			if tt.badDigest {
				tarDigest = digest.FromString("not the tar")
			}
			f.pushArtifact(t, testRepo, "v1", []ocispec.Descriptor{dirLayer("d", gz, tarDigest)}, [][]byte{gz})
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			if err := os.WriteFile(filepath.Join(parent, "outside.txt"), []byte("outside"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := existingDir(t, out)
			parentBefore := snapshot(t, parent)

			_, err := f.repo(t).PullToDir(context.Background(), "v1", out, PullOptions{MaxUnpackedBytes: tt.maxUnpack})
			if left := leftovers(t, parent); len(left) > 0 {
				t.Errorf("temporary folders left: %q", left)
			}
			if tt.ok {
				if err != nil {
					t.Fatalf("PullToDir: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("PullToDir extracted %v", snapshot(t, out))
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("err = %q, want it to mention %q", err, tt.errHas)
			}
			if after := snapshot(t, out); !reflect.DeepEqual(after, before) {
				t.Errorf("DIR changed:\nbefore %v\nafter  %v", before, after)
			}
			if after := snapshot(t, parent); !reflect.DeepEqual(after, parentBefore) {
				t.Errorf("the folder around DIR changed:\nbefore %v\nafter  %v", parentBefore, after)
			}
		})
	}
}

func TestUnpackNotGzip(t *testing.T) {
	f := newFakeRegistry(t)
	data := []byte("plain text, not gzip")
	f.pushArtifact(t, testRepo, "v1", []ocispec.Descriptor{dirLayer("d", data, "")}, [][]byte{data})
	_, err := f.repo(t).PullToDir(context.Background(), "v1", filepath.Join(t.TempDir(), "out"), PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("err = %v, want a gzip error", err)
	}
}

func TestUnpackInvalidDigestAnnotation(t *testing.T) {
	f := newFakeRegistry(t)
	gz, _ := tarGz(t, tarEntry{name: "d/f", typ: tar.TypeReg, body: "x"})
	l := dirLayer("d", gz, "")
	l.Annotations[AnnotationContentDigest] = "sha256:nope"
	f.pushArtifact(t, testRepo, "v1", []ocispec.Descriptor{l}, [][]byte{gz})
	_, err := f.repo(t).PullToDir(context.Background(), "v1", filepath.Join(t.TempDir(), "out"), PullOptions{})
	if err == nil || !strings.Contains(err.Error(), AnnotationContentDigest) {
		t.Fatalf("err = %v, want one naming the annotation", err)
	}
}

func TestPullToDirNotAFolder(t *testing.T) {
	f := newFakeRegistry(t)
	f.pushArtifact(t, testRepo, "v1", []ocispec.Descriptor{layerDesc(ocispec.MediaTypeImageLayer, "a", []byte("a"))}, [][]byte{[]byte("a")})
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("i am a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := f.repo(t).PullToDir(context.Background(), "v1", file, PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Fatalf("err = %v", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "i am a file" {
		t.Errorf("the file was changed: %q", data)
	}
	if left := leftovers(t, filepath.Dir(file)); len(left) > 0 {
		t.Errorf("temporary folders left: %q", left)
	}
}

func TestSelectLayers(t *testing.T) {
	m := &Manifest{Layers: []ocispec.Descriptor{
		layerDesc("a/x", "one", []byte("1")),
		layerDesc("a/y", "two", []byte("2")),
		layerDesc("a/z", "", []byte("3")),
		layerDesc("a/x", "four", []byte("4")),
	}}
	titles := func(ds []ocispec.Descriptor) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Annotations[AnnotationTitle])
		}
		return out
	}
	if got, err := SelectLayers(m, ""); err != nil || !reflect.DeepEqual(titles(got), []string{"one", "two", "four"}) {
		t.Errorf("SelectLayers(all) = %q, %v", titles(got), err)
	}
	if got, err := SelectLayers(m, "a/x"); err != nil || !reflect.DeepEqual(titles(got), []string{"one", "four"}) {
		t.Errorf("SelectLayers(a/x) = %q, %v", titles(got), err)
	}
	if _, err := SelectLayers(m, "a/z"); err == nil || !strings.Contains(err.Error(), "a/x, a/y") {
		t.Errorf("SelectLayers(a/z) err = %v, want one listing the titled types", err)
	}
	if _, err := SelectLayers(&Manifest{}, "a/z"); err == nil || !strings.Contains(err.Error(), "no titled layers") {
		t.Errorf("SelectLayers on no layers: %v", err)
	}
}

func TestValidateTitle(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"a.txt", "a.txt", true},
		{"dir/a.txt", filepath.FromSlash("dir/a.txt"), true},
		{"dir/./a.txt", filepath.FromSlash("dir/a.txt"), true},
		{"a/../b", "b", true},
		{"a/..", "", false},
		{"", "", false},
		{".", "", false},
		{"..", "", false},
		{"../a", "", false},
		{"a/../../b", "", false},
		{"/abs", "", false},
		{"a\x00b", "", false},
	}
	for _, tt := range tests {
		got, err := ValidateTitle(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ValidateTitle(%q) = %q, %v", tt.in, got, err)
		}
	}
}
