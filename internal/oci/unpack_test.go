package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// rawEntry is a tar entry for hostile archives: size, when set, is what
// the header claims whatever the body holds (the archive is then cut off
// after the header).
type rawEntry struct {
	name     string
	typ      byte
	body     string
	linkname string
	size     int64
	pax      map[string]string
}

// buildTar writes entries as a tar, gzip-compressed when gz is set.
func buildTar(t testing.TB, gz bool, entries ...rawEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	truncated := false
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.linkname, PAXRecords: e.pax}
		if e.typ == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Typeflag: e.typ, PAXRecords: e.pax}
		}
		if e.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if e.size != 0 {
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.size != 0 {
			truncated = true
			break
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if !truncated {
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !gz {
		return buf.Bytes()
	}
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	if _, err := gw.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// unpackBox unpacks archive into PARENT/out with an outside.txt beside it
// and returns the result, the out folder and the parent's snapshot before.
// With prefix "d" the ORAS rule applies; with "" the Extract rule.
func unpackBox(t *testing.T, archive []byte, prefix string, limit int64) (string, map[string]string, error) {
	t.Helper()
	parent := t.TempDir()
	if err := os.WriteFile(filepath.Join(parent, "outside.txt"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(blob, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, parent)
	out := filepath.Join(parent, "out")
	return out, before, unpackBlob(blob, out, prefix, limit)
}

// unpackBlob writes the blob file to out through placeLayer, as a pull
// would: with prefix set, as an ORAS directory titled prefix; with "", as
// a tar layer pulled with Extract (which is written as a file when its
// content is no tar).
func unpackBlob(blob, out, prefix string, limit int64) error {
	l := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Annotations: map[string]string{AnnotationTitle: "out"}}
	name := "out"
	if prefix != "" {
		l.Annotations = map[string]string{AnnotationTitle: prefix, AnnotationUnpack: "true"}
		name = filepath.FromSlash(prefix)
	}
	_, err := placeLayer(blob, out, name, l, PullOptions{Extract: prefix == "", MaxUnpackedBytes: limit})
	return err
}

// TestUnpackHardening runs hostile and awkward archives through both rules
// (ORAS prefix "d/" and Extract's relative entries), plain and gzip.
func TestUnpackHardening(t *testing.T) {
	reg := func(name, body string) rawEntry { return rawEntry{name: name, typ: tar.TypeReg, body: body} }
	dir := func(name string) rawEntry { return rawEntry{name: name, typ: tar.TypeDir} }
	sym := func(name, target string) rawEntry {
		return rawEntry{name: name, typ: tar.TypeSymlink, linkname: target}
	}
	hard := func(name, target string) rawEntry { return rawEntry{name: name, typ: tar.TypeLink, linkname: target} }
	typ := func(name string, flag byte) rawEntry { return rawEntry{name: name, typ: flag} }
	zeros := func(name string, n int) rawEntry {
		return rawEntry{name: name, typ: tar.TypeReg, body: string(make([]byte, n))}
	}

	tests := []struct {
		name    string
		entries []rawEntry // names are relative; "d/" is prepended for the ORAS rule
		limit   int64
		wantErr error
		errHas  string
		want    map[string]string // for successes: the tree under out
	}{
		{name: "character device", entries: []rawEntry{typ("null", tar.TypeChar)}, wantErr: ErrUnsupported, errHas: "character device"},
		{name: "block device", entries: []rawEntry{typ("sda", tar.TypeBlock)}, wantErr: ErrUnsupported, errHas: "block device"},
		{name: "fifo", entries: []rawEntry{reg("f", "x"), typ("p", tar.TypeFifo)}, wantErr: ErrUnsupported, errHas: "fifo"},
		{name: "unknown type", entries: []rawEntry{typ("q", 'Z')}, wantErr: ErrUnsupported, errHas: "unknown type"},
		{name: "huge header size", entries: []rawEntry{{name: "big", typ: tar.TypeReg, size: 1 << 40}}, limit: 1 << 20, wantErr: ErrTooLarge},
		{name: "gzip bomb in one file", entries: []rawEntry{zeros("bomb", 4<<20)}, limit: 1 << 20, wantErr: ErrTooLarge},
		{name: "gzip bomb over many files", entries: []rawEntry{zeros("a", 400<<10), zeros("b", 400<<10), zeros("c", 400<<10)}, limit: 1 << 20, wantErr: ErrTooLarge},
		{name: "hard links cost no budget", entries: []rawEntry{reg("f", "12345"), hard("h", "f")}, limit: 5, want: map[string]string{"f": "-rw-r--r-- 12345", "h": "-rw-r--r-- 12345"}},
		{name: "dot-dot", entries: []rawEntry{reg("a/../../evil", "x")}, errHas: "outside"},
		{name: "absolute symlink", entries: []rawEntry{sym("l", "/etc")}, errHas: "absolute"},
		{name: "symlink without target", entries: []rawEntry{sym("l", "")}, errHas: "no target"},
		{name: "hard link to an absolute path", entries: []rawEntry{hard("h", "/etc/passwd")}, errHas: "outside"},
		{name: "hard link to itself", entries: []rawEntry{reg("f", "x"), hard("f", "f")}, errHas: "itself"},
		{name: "later file replaces earlier file", entries: []rawEntry{reg("f", "one"), reg("f", "two")}, want: map[string]string{"f": "-rw-r--r-- two"}},
		{name: "file in place of a folder", entries: []rawEntry{dir("s/"), reg("s", "x")}, errHas: "replace a folder"},
		{name: "file in place of a non-empty folder", entries: []rawEntry{reg("s/f", "x"), reg("s", "x")}, errHas: "replace a folder"},
		{name: "folder in place of a file", entries: []rawEntry{reg("s", "x"), dir("s/")}, errHas: "in place of an earlier file"},
		{name: "folder in place of a symlink", entries: []rawEntry{dir("real/"), sym("s", "real"), dir("s/")}, errHas: "in place of an earlier symbolic link"},
		{name: "symlink in place of a folder", entries: []rawEntry{reg("s/f", "x"), sym("s", ".")}, errHas: "replace a folder"},
		// A symlink then a file written through it, in both orders: the
		// link first as a parent, and the file's folder first, then a link
		// over it, then the file again.
		{name: "file through an earlier symlink", entries: []rawEntry{dir("real/"), sym("s", "real"), reg("s/f", "x")}, errHas: "below the symbolic link"},
		{name: "folder replaced by a symlink then written through", entries: []rawEntry{dir("s/"), sym("s", "."), reg("s/f", "x")}, errHas: "replace a folder"},
		{name: "file of a symlink's name replaces the link, not its target", entries: []rawEntry{reg("f", "orig"), sym("l", "f"), reg("l", "new")}, want: map[string]string{"f": "-rw-r--r-- orig", "l": "-rw-r--r-- new"}},
		{name: "symlink replaces a file", entries: []rawEntry{reg("f", "orig"), reg("l", "x"), sym("l", "f")}, want: map[string]string{"f": "-rw-r--r-- orig", "l": "link -> f"}},
		{name: "pax global header is skipped", entries: []rawEntry{{name: "pax_global_header", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "abc"}}, reg("f", "x")}, want: map[string]string{"f": "-rw-r--r-- x"}},
		{name: "leading dot-slash", entries: []rawEntry{dir("./"), dir("./s/"), reg("./s/f", "x")}, want: map[string]string{"s": "dir", "s/f": "-rw-r--r-- x"}},
	}
	for _, tt := range tests {
		for _, prefix := range []string{"d", ""} {
			for _, gz := range []bool{true, false} {
				mode := "extract"
				if prefix != "" {
					mode = "oras"
				}
				if gz {
					mode += "+gzip"
				}
				t.Run(tt.name+"/"+mode, func(t *testing.T) {
					entries := append([]rawEntry(nil), tt.entries...)
					if prefix != "" {
						for i := range entries {
							if entries[i].typ == tar.TypeXGlobalHeader {
								continue
							}
							entries[i].name = prefix + "/" + strings.TrimPrefix(entries[i].name, "./")
							if entries[i].typ == tar.TypeLink && !strings.HasPrefix(entries[i].linkname, "/") {
								entries[i].linkname = prefix + "/" + entries[i].linkname
							}
						}
					}
					limit := tt.limit
					if limit == 0 {
						limit = DefaultMaxUnpackedBytes
					}
					out, before, err := unpackBox(t, buildTar(t, gz, entries...), prefix, limit)
					parent := filepath.Dir(out)
					if tt.want != nil {
						if err != nil {
							t.Fatalf("unpack: %v", err)
						}
						got := snapshot(t, out)
						delete(got, ".")
						if !reflect.DeepEqual(got, tt.want) {
							t.Errorf("unpacked\n%v\nwant\n%v", got, tt.want)
						}
						return
					}
					if err == nil {
						t.Fatalf("unpack succeeded: %v", snapshot(t, out))
					}
					if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
						t.Errorf("err = %v, want %v", err, tt.wantErr)
					}
					if !strings.Contains(err.Error(), tt.errHas) {
						t.Errorf("err = %q, want it to mention %q", err, tt.errHas)
					}
					// Nothing is left in place, not even inside out: a partial
					// tree could hold links that lead out.
					if after := snapshot(t, parent); !reflect.DeepEqual(after, before) {
						t.Errorf("the folder around the target changed:\nbefore %v\nafter  %v", before, after)
					}
				})
			}
		}
	}
}

// TestUnpackCountsBytesWritten feeds a header that understates its content:
// the budget follows what is written, not what the header says.
func TestUnpackCountsBytesWritten(t *testing.T) {
	tests := []struct {
		name    string
		budget  int64
		wantErr error
	}{
		{name: "over the budget", budget: 10, wantErr: ErrTooLarge},
		{name: "within the budget but not the header", budget: 1000, wantErr: ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			root, err := os.OpenRoot(dest)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			u := &unpacker{root: root, dest: dest, budget: tt.budget, links: map[string]bool{}}
			body := strings.Repeat("x", 100)
			err = u.extract(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 1}, strings.NewReader(body))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			fi, err := os.Stat(filepath.Join(dest, "f"))
			if err == nil && fi.Size() > tt.budget+1 {
				t.Errorf("%d bytes written with a budget of %d", fi.Size(), tt.budget)
			}
		})
	}
}

func TestIsTarMediaType(t *testing.T) {
	tests := map[string]bool{
		ocispec.MediaTypeImageLayer:                                    true,
		ocispec.MediaTypeImageLayerGzip:                                true,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": true,
		"application/vnd.docker.image.rootfs.diff.tar":                 true,
		"application/vnd.docker.image.rootfs.diff.tar.gzip":            true,
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":    true,
		"application/vnd.cncf.flux.content.v1.tar+gzip":                true,
		"application/vnd.example.bundle+tar":                           true,
		"application/x-tar":                                            true,
		"Application/X-Tar; charset=binary":                            true,
		"application/vnd.example.site.tar.gz":                          true,
		ocispec.MediaTypeImageLayerZstd:                                false,
		"application/gzip":                                             false,
		"text/plain":                                                   false,
		"application/vnd.example.tarball":                              false,
		"application/json+gzip":                                        false,
		"":                                                             false,
	}
	for mt, want := range tests {
		if got := isTarMediaType(mt); got != want {
			t.Errorf("isTarMediaType(%q) = %v, want %v", mt, got, want)
		}
	}
}

// TestPullExtract pulls tar layers without ORAS's annotation with and
// without PullOptions.Extract, and ORAS directories as plain tar.
func TestPullExtract(t *testing.T) {
	files := []rawEntry{
		{name: "./", typ: tar.TypeDir},
		{name: "./a.txt", typ: tar.TypeReg, body: "A"},
		{name: "sub/b.txt", typ: tar.TypeReg, body: "B"},
	}
	tarBlob := buildTar(t, false, files...)
	gzBlob := buildTar(t, true, files...)
	orasPlain := buildTar(t, false, rawEntry{name: "o/", typ: tar.TypeDir}, rawEntry{name: "o/c.txt", typ: tar.TypeReg, body: "C"})
	text := []byte("just text")
	oras := layerDesc(ocispec.MediaTypeImageLayer, "o", orasPlain)
	oras.Annotations[AnnotationUnpack] = "true"
	layers := []ocispec.Descriptor{
		layerDesc(ocispec.MediaTypeImageLayer, "plain", tarBlob),
		layerDesc("application/vnd.cncf.flux.content.v1.tar+gzip", "flux", gzBlob),
		layerDesc("text/plain", "notes.txt", text),
		oras,
	}
	contents := [][]byte{tarBlob, gzBlob, text, orasPlain}
	extracted := map[string]string{
		".": "dir", "plain": "dir", "plain/a.txt": "-rw-r--r-- A", "plain/sub": "dir", "plain/sub/b.txt": "-rw-r--r-- B",
		"flux": "dir", "flux/a.txt": "-rw-r--r-- A", "flux/sub": "dir", "flux/sub/b.txt": "-rw-r--r-- B",
		"notes.txt": "-rw-r--r-- just text", "o": "dir", "o/c.txt": "-rw-r--r-- C",
	}
	asFiles := map[string]string{
		".": "dir", "plain": "-rw-r--r-- " + string(tarBlob), "flux": "-rw-r--r-- " + string(gzBlob),
		"notes.txt": "-rw-r--r-- just text", "o": "dir", "o/c.txt": "-rw-r--r-- C",
	}
	for _, tt := range []struct {
		extract bool
		want    map[string]string
	}{{true, extracted}, {false, asFiles}} {
		t.Run("extract="+map[bool]string{true: "true", false: "false"}[tt.extract], func(t *testing.T) {
			f := newFakeRegistry(t)
			f.pushArtifact(t, testRepo, "v1", layers, contents)
			out := filepath.Join(t.TempDir(), "out")
			res, err := f.repo(t).PullToDir(context.Background(), "v1", out, PullOptions{Extract: tt.extract})
			if err != nil {
				t.Fatalf("PullToDir: %v", err)
			}
			if got := snapshot(t, out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("pulled\n%v\nwant\n%v", got, tt.want)
			}
			if want := []string{"plain", "flux", "notes.txt", "o"}; !reflect.DeepEqual(res.Files, want) {
				t.Errorf("Files = %q, want %q", res.Files, want)
			}
		})
	}
}

// TestPullExtractRefusalLeavesDirAlone pulls hostile or broken tar layers
// with Extract into an existing DIR: each is refused and nothing changes
// in or around DIR. Content that is no tar at all is written as a file
// (TestPullMixedArtifact), unless ORAS's annotation says folder.
func TestPullExtractRefusalLeavesDirAlone(t *testing.T) {
	tests := []struct {
		name    string
		blob    []byte
		folder  bool // annotated as an ORAS directory
		wantErr error
		errHas  string
	}{
		{name: "gzip bomb", blob: buildTar(t, true, rawEntry{name: "a", typ: tar.TypeReg, body: "ok"}, rawEntry{name: "bomb", typ: tar.TypeReg, body: string(make([]byte, 4<<20))}), wantErr: ErrTooLarge},
		{name: "escape", blob: buildTar(t, false, rawEntry{name: "../a.txt", typ: tar.TypeReg, body: "evil"}), errHas: "outside"},
		{name: "device", blob: buildTar(t, true, rawEntry{name: "dev", typ: tar.TypeChar}), wantErr: ErrUnsupported},
		// The sniffed header is right, the rest is not: a tar cut short,
		// and one whose second header is garbage.
		{name: "gzip tar cut short", blob: cutGzipTar(t), wantErr: io.ErrUnexpectedEOF},
		{name: "corrupt second header", blob: append(buildTar(t, false, rawEntry{name: "a", typ: tar.TypeReg, body: "ok"})[:1024], bytes.Repeat([]byte("x"), 1024)...), errHas: "reading tar"},
		// ORAS's annotation says folder: content that is no tar is an
		// error, not a file.
		{name: "folder that is not a tar", blob: []byte("not a tar at all"), folder: true, errHas: "marked as a folder"},
		{name: "folder that is gzip of text", blob: gzipBytes(t, []byte("not a tar at all")), folder: true, errHas: "gzip-compressed but holds no tar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			l := layerDesc(ocispec.MediaTypeImageLayerGzip, "site", tt.blob)
			if tt.folder {
				l.Annotations[AnnotationUnpack] = "true"
			}
			f.pushArtifact(t, testRepo, "v1", []ocispec.Descriptor{l}, [][]byte{tt.blob})
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			existingDir(t, out)
			before := snapshot(t, parent)
			_, err := f.repo(t).PullToDir(context.Background(), "v1", out, PullOptions{Extract: true, MaxUnpackedBytes: 1 << 20})
			if err == nil {
				t.Fatalf("PullToDir extracted %v", snapshot(t, out))
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("err = %q, want it to mention %q", err, tt.errHas)
			}
			if after := snapshot(t, parent); !reflect.DeepEqual(after, before) {
				t.Errorf("DIR or its surroundings changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// sparseTar builds a tar holding one PAX (0.1) sparse file that claims
// realSize bytes but stores a single byte at its end, as GNU tar writes
// sparse files. archive/tar's writer cannot make one, so the PAX header
// is made as a regular entry whose type flag is patched afterwards.
func sparseTar(t *testing.T, name string, realSize int64) []byte {
	t.Helper()
	record := func(k, v string) string {
		// "<len> k=v\n", where len counts itself.
		body := " " + k + "=" + v + "\n"
		n := len(body) + 1
		for len(strconv.Itoa(n))+len(body) != n {
			n++
		}
		return strconv.Itoa(n) + body
	}
	pax := record("GNU.sparse.major", "0") + record("GNU.sparse.minor", "1") +
		record("GNU.sparse.name", name) + record("GNU.sparse.size", strconv.FormatInt(realSize, 10)) +
		record("GNU.sparse.numblocks", "1") +
		record("GNU.sparse.map", strconv.FormatInt(realSize-1, 10)+",1")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name, body string
	}{{"PaxHeaders/" + name, pax}, {name, "x"}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.body)), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// The first header becomes a PAX extended header: type 'x', with its
	// checksum (the sum of the header's bytes, the field taken as spaces)
	// written again.
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	// The archive must read back as the claim it makes.
	hdr, err := tar.NewReader(bytes.NewReader(b)).Next()
	if err != nil || hdr.Size != realSize || hdr.Name != name {
		t.Fatalf("the sparse archive reads back as %+v, %v; want %s of %d bytes", hdr, err, name, realSize)
	}
	return b
}

// TestUnpackSparseClaim: a sparse file that claims a terabyte expands, as
// archive/tar reads it, to that many zeros. The byte budget stops it, for
// both rules, and nothing is written outside the target.
func TestUnpackSparseClaim(t *testing.T) {
	const limit = 1 << 20
	for _, prefix := range []string{"d", ""} {
		name := "huge.img"
		if prefix != "" {
			name = prefix + "/" + name
		}
		out, before, err := unpackBox(t, sparseTar(t, name, 1<<40), prefix, limit)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("prefix %q: err = %v, want %v", prefix, err, ErrTooLarge)
		}
		parent := filepath.Dir(out)
		after := snapshot(t, parent)
		for p := range after {
			if _, ok := before[p]; !ok && p != "out" && !strings.HasPrefix(p, "out/") {
				t.Errorf("prefix %q: %s was written outside the target", prefix, p)
			}
		}
		_ = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil && fi.Size() > limit {
					t.Errorf("prefix %q: %s holds %d bytes, over the %d-byte budget", prefix, p, fi.Size(), limit)
				}
			}
			return nil
		})
	}
}
