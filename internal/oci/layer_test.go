package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gw := gzip.NewWriter(&buf)
	if _, err := gw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// formatTar writes one file as a tar in format.
func formatTar(t testing.TB, format tar.Format) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "a.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Format: format}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte("A")); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// setChecksum writes the checksum of the header block b[:512].
func setChecksum(b []byte) {
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// v7Tar is a tar with an old V7 header: no magic, nothing after the link
// name. archive/tar writes no V7, so a USTAR header is cut down to one.
func v7Tar(t testing.TB) []byte {
	t.Helper()
	b := formatTar(t, tar.FormatUSTAR)
	clear(b[257:512])
	setChecksum(b)
	if hdr, err := tar.NewReader(bytes.NewReader(b)).Next(); err != nil || hdr.Format&(tar.FormatUSTAR|tar.FormatPAX|tar.FormatGNU) != 0 || hdr.Name != "a.txt" {
		t.Fatalf("the V7 archive reads back as %+v, %v", hdr, err)
	}
	return b
}

// cutGzipTar is a tar+gzip cut off midway: its first header decompresses
// fine, the rest is missing.
func cutGzipTar(t testing.TB) []byte {
	t.Helper()
	gz := buildTar(t, true, rawEntry{name: "big.bin", typ: tar.TypeReg, body: string(randomData(t, 64<<10))})
	cut := gz[:len(gz)/2]
	if kind, s, err := decideLayer(layerDesc(ocispec.MediaTypeImageLayerGzip, "x", nil), true, bytes.NewReader(cut)); err != nil || kind != layerArchive {
		t.Fatalf("the cut archive is decided %v, %v; want an archive", kind, err)
	} else {
		s.Close()
	}
	return cut
}

func randomData(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	// A fixed sequence that deflate cannot shrink much, so that cutting
	// the gzip cuts the content too.
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// noRead fails the test when read: decideLayer must not look at the
// content of layers it writes as files anyway.
type noRead struct{ t *testing.T }

func (r noRead) Read([]byte) (int, error) {
	r.t.Error("decideLayer read the content of a layer that is a file by its metadata")
	return 0, io.EOF
}

// TestDecideLayer is the rule that decides, for every pull, whether a layer
// is unpacked or written as a file.
func TestDecideLayer(t *testing.T) {
	realTar := buildTar(t, false, rawEntry{name: "./", typ: tar.TypeDir}, rawEntry{name: "./a.txt", typ: tar.TypeReg, body: "A"})
	text := []byte("just some notes\n")
	longText := bytes.Repeat([]byte("a line of text, long enough to fill a tar header block\n"), 20)
	// "ustar" where the magic goes, but no header: a text file can say it.
	fakeMagic := append(bytes.Repeat([]byte("x"), 257), []byte("ustar\x0000")...)
	fakeMagic = append(fakeMagic, bytes.Repeat([]byte("y"), 512-len(fakeMagic))...)
	badChecksum := bytes.Clone(realTar)
	badChecksum[0] = 'b' // the name changes, the checksum does not
	shortWithMagic := bytes.Clone(realTar[:300])
	orasTar := buildTar(t, false, rawEntry{name: "d/", typ: tar.TypeDir}, rawEntry{name: "d/f", typ: tar.TypeReg, body: "F"})
	zeros := make([]byte, 1024)

	const (
		ociTar    = ocispec.MediaTypeImageLayer
		ociTarGz  = ocispec.MediaTypeImageLayerGzip
		ociTarZst = ocispec.MediaTypeImageLayerZstd
		dockerTar = "application/vnd.docker.image.rootfs.diff.tar"
		dockerGz  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	)
	tests := []struct {
		name      string
		mediaType string
		title     string // default "x"; "-" for none
		folder    bool   // ORAS's unpack annotation
		extract   bool
		content   []byte
		want      layerKind
		wantTar   []byte // the tar the stream reads, for folders and archives
		unread    bool   // the metadata decide: content must not be read
		errHas    string
	}{
		// Extract and a tar media type: the content decides.
		{name: "tar type, real tar", mediaType: ociTar, extract: true, content: realTar, want: layerArchive, wantTar: realTar},
		{name: "tar type, GNU tar", mediaType: ociTar, extract: true, content: formatTar(t, tar.FormatGNU), want: layerArchive, wantTar: formatTar(t, tar.FormatGNU)},
		{name: "tar type, PAX tar", mediaType: ociTar, extract: true, content: formatTar(t, tar.FormatPAX), want: layerArchive, wantTar: formatTar(t, tar.FormatPAX)},
		{name: "tar type, V7 tar", mediaType: ociTar, extract: true, content: v7Tar(t), want: layerArchive, wantTar: v7Tar(t)},
		{name: "tar type, gzip of a tar", mediaType: ociTar, extract: true, content: gzipBytes(t, realTar), want: layerArchive, wantTar: realTar},
		{name: "tar type, plain text (ORAS's default type)", mediaType: ociTar, extract: true, content: text, want: layerFile},
		{name: "tar type, text longer than a header", mediaType: ociTar, extract: true, content: longText, want: layerFile},
		{name: "tar type, empty file", mediaType: ociTar, extract: true, content: nil, want: layerFile},
		{name: "tar type, one byte", mediaType: ociTar, extract: true, content: []byte{0x1f}, want: layerFile},
		{name: "tar type, shorter than the magic's end (262 bytes)", mediaType: ociTar, extract: true, content: bytes.Repeat([]byte("z"), 261), want: layerFile},
		{name: "tar type, a tar header cut at 300 bytes", mediaType: ociTar, extract: true, content: shortWithMagic, want: layerFile},
		{name: "tar type, ustar magic in text", mediaType: ociTar, extract: true, content: fakeMagic, want: layerFile},
		{name: "tar type, header with a wrong checksum", mediaType: ociTar, extract: true, content: badChecksum, want: layerFile},
		{name: "tar type, zeros (an empty tar, or a file of zeros)", mediaType: ociTar, extract: true, content: zeros, want: layerFile},
		{name: "tar type, gzip of text", mediaType: ociTar, extract: true, content: gzipBytes(t, text), want: layerFile},
		{name: "tar+gzip type, gzip of a tar", mediaType: ociTarGz, extract: true, content: gzipBytes(t, realTar), want: layerArchive, wantTar: realTar},
		{name: "tar+gzip type, plain tar", mediaType: ociTarGz, extract: true, content: realTar, want: layerArchive, wantTar: realTar},
		{name: "tar+gzip type, plain text", mediaType: ociTarGz, extract: true, content: text, want: layerFile},
		{name: "tar+gzip type, gzip of text", mediaType: ociTarGz, extract: true, content: gzipBytes(t, longText), want: layerFile},
		{name: "tar+gzip type, gzip magic then garbage", mediaType: ociTarGz, extract: true, content: append([]byte{0x1f, 0x8b}, longText...), want: layerFile},
		{name: "tar+gzip type, gzip of a tar cut short", mediaType: ociTarGz, extract: true, content: cutGzipTar(t), want: layerArchive},
		{name: "docker tar type, real tar", mediaType: dockerTar, extract: true, content: realTar, want: layerArchive, wantTar: realTar},
		{name: "docker tar.gzip type, gzip of a tar", mediaType: dockerGz, extract: true, content: gzipBytes(t, realTar), want: layerArchive, wantTar: realTar},
		// Not candidates: no zstd decoder, a type that is no tar, no Extract.
		{name: "tar+zstd type", mediaType: ociTarZst, extract: true, unread: true, want: layerFile},
		{name: "text type", mediaType: "text/plain", extract: true, unread: true, want: layerFile},
		{name: "tar type without extract", mediaType: ociTar, unread: true, want: layerFile},
		// ORAS folders are unpacked with or without Extract; their content
		// must be a tar.
		{name: "folder, gzip of a tar", mediaType: ociTarGz, folder: true, content: gzipBytes(t, orasTar), want: layerFolder, wantTar: orasTar},
		{name: "folder, plain tar, with extract", mediaType: ociTarGz, folder: true, extract: true, content: orasTar, want: layerFolder, wantTar: orasTar},
		{name: "folder, an empty tar", mediaType: ociTar, folder: true, content: zeros, want: layerFolder, wantTar: zeros},
		{name: "folder, plain text", mediaType: ociTarGz, folder: true, extract: true, content: text, errHas: "marked as a folder (io.deis.oras.content.unpack=true) but is neither gzip-compressed nor a tar archive (16 bytes"},
		{name: "folder, gzip of text", mediaType: ociTarGz, folder: true, content: gzipBytes(t, longText), errHas: "gzip-compressed but holds no tar archive"},
		{name: "folder, broken gzip", mediaType: ociTarGz, folder: true, content: []byte{0x1f, 0x8b, 0, 0}, errHas: "not valid gzip"},
		// A layer needs a title to name what it becomes.
		{name: "no title, plain text", mediaType: ociTar, title: "-", extract: true, content: text, errHas: "has no title (org.opencontainers.image.title)"},
		{name: "no title, real tar", mediaType: ociTar, title: "-", extract: true, content: realTar, errHas: "push it with a title"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := layerDesc(tt.mediaType, "x", tt.content)
			if tt.title == "-" {
				l.Annotations = map[string]string{}
			}
			if tt.folder {
				l.Annotations[AnnotationUnpack] = "true"
			}
			var content io.Reader = bytes.NewReader(tt.content)
			if tt.unread {
				content = noRead{t}
			}
			kind, s, err := decideLayer(l, tt.extract, content)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("decideLayer = %v, %v; want an error mentioning %q", kind, err, tt.errHas)
				}
				if s != nil {
					t.Error("decideLayer returned a stream with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("decideLayer: %v", err)
			}
			if kind != tt.want {
				t.Fatalf("decided %v, want %v", kind, tt.want)
			}
			if kind == layerFile {
				if s != nil {
					t.Error("a file came with a tar stream")
				}
				return
			}
			defer s.Close()
			if tt.wantTar == nil {
				return
			}
			// The bytes looked at to decide are part of the stream.
			got, err := io.ReadAll(s.r)
			if err != nil {
				t.Fatalf("reading the tar stream: %v", err)
			}
			if !bytes.Equal(got, tt.wantTar) {
				t.Errorf("the stream reads %d bytes that differ from the %d-byte tar", len(got), len(tt.wantTar))
			}
		})
	}
}

// TestIsTarHeaderNeverDisagreesWithArchiveTar: whatever the sniff takes
// for a tar header, archive/tar reads as one.
func TestIsTarHeaderNeverDisagreesWithArchiveTar(t *testing.T) {
	for _, b := range [][]byte{
		formatTar(t, tar.FormatUSTAR), formatTar(t, tar.FormatPAX), formatTar(t, tar.FormatGNU), v7Tar(t),
		sparseTar(t, "s", 1<<20),
		buildTar(t, false, rawEntry{typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "x"}}, rawEntry{name: "f", typ: tar.TypeReg, body: "x"}),
	} {
		if !isTarHeader(b) {
			t.Errorf("isTarHeader misses the header %q", b[:100])
			continue
		}
		if _, err := tar.NewReader(bytes.NewReader(b)).Next(); err != nil {
			t.Errorf("archive/tar refuses a header isTarHeader takes: %v", err)
		}
	}
}

// mixedArtifact is the user's case: an ORAS folder, a real tar pushed as a
// tar, plain files that ORAS pushed with its default type (the OCI tar
// layer type), and a file of its own type.
type mixedArtifact struct {
	layers   []ocispec.Descriptor
	contents [][]byte
	// Trees of PullToDir's output, with and without Extract.
	extracted, asFiles map[string]string
	files              []string // titles in manifest order
}

func newMixedArtifact(t *testing.T) mixedArtifact {
	t.Helper()
	orasDir, orasDigest := tarGz(t,
		tarEntry{name: "dir/", typ: tar.TypeDir},
		tarEntry{name: "dir/a.txt", typ: tar.TypeReg, body: "A"},
		tarEntry{name: "dir/sub/", typ: tar.TypeDir},
		tarEntry{name: "dir/sub/b.txt", typ: tar.TypeReg, body: "B"},
	)
	bundle := buildTar(t, false, rawEntry{name: "./", typ: tar.TypeDir}, rawEntry{name: "./c.txt", typ: tar.TypeReg, body: "C"}, rawEntry{name: "etc/d.conf", typ: tar.TypeReg, body: "D"})
	site := buildTar(t, true, rawEntry{name: "index.html", typ: tar.TypeReg, body: "<p>hi</p>"})
	notes := []byte("notes pushed without a media type\n")
	zeros := make([]byte, 2048)
	csvGz := gzipBytes(t, []byte("a,b\n1,2\n"))
	yaml := []byte("key: value\n")
	dl := dirLayer("dir", orasDir, orasDigest)
	m := mixedArtifact{
		layers: []ocispec.Descriptor{
			dl,
			layerDesc(ocispec.MediaTypeImageLayer, "bundle.tar", bundle),
			layerDesc(ocispec.MediaTypeImageLayerGzip, "site.tar.gz", site),
			layerDesc(ocispec.MediaTypeImageLayer, "notes.txt", notes),
			layerDesc(ocispec.MediaTypeImageLayer, "empty.txt", nil),
			layerDesc(ocispec.MediaTypeImageLayer, "disk.img", zeros),
			layerDesc(ocispec.MediaTypeImageLayer, "data.csv.gz", csvGz),
			layerDesc("application/yaml", "config.yaml", yaml),
		},
		contents: [][]byte{orasDir, bundle, site, notes, nil, zeros, csvGz, yaml},
		files:    []string{"dir", "bundle.tar", "site.tar.gz", "notes.txt", "empty.txt", "disk.img", "data.csv.gz", "config.yaml"},
	}
	common := map[string]string{
		".": "dir", "dir": "dir", "dir/a.txt": "-rw-r--r-- A", "dir/sub": "dir", "dir/sub/b.txt": "-rw-r--r-- B",
		"notes.txt": "-rw-r--r-- " + string(notes), "empty.txt": "-rw-r--r-- ", "disk.img": "-rw-r--r-- " + string(zeros),
		"data.csv.gz": "-rw-r--r-- " + string(csvGz), "config.yaml": "-rw-r--r-- " + string(yaml),
	}
	m.extracted = merge(common, map[string]string{
		"bundle.tar": "dir", "bundle.tar/c.txt": "-rw-r--r-- C", "bundle.tar/etc": "dir", "bundle.tar/etc/d.conf": "-rw-r--r-- D",
		"site.tar.gz": "dir", "site.tar.gz/index.html": "-rw-r--r-- <p>hi</p>",
	})
	m.asFiles = merge(common, map[string]string{"bundle.tar": "-rw-r--r-- " + string(bundle), "site.tar.gz": "-rw-r--r-- " + string(site)})
	return m
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestPullMixedArtifact pulls the mixed artifact with PullToDir and
// PullToVolume, with and without Extract: the folder is unpacked either
// way, the real tars with Extract, and the plain files that carry a tar
// media type are written byte for byte. Before the content was sniffed,
// Extract failed on notes.txt ("neither gzip-compressed nor a tar").
func TestPullMixedArtifact(t *testing.T) {
	m := newMixedArtifact(t)
	f := newFakeRegistry(t)
	f.pushArtifact(t, testRepo, "v1", m.layers, m.contents)
	for _, extract := range []bool{true, false} {
		want := m.asFiles
		if extract {
			want = m.extracted
		}
		opts := PullOptions{Extract: extract}
		t.Run(fmt.Sprintf("PullToDir/extract=%v", extract), func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			res, err := f.repo(t).PullToDir(context.Background(), "v1", out, opts)
			if err != nil {
				t.Fatalf("PullToDir: %v", err)
			}
			if got := snapshot(t, out); !reflect.DeepEqual(got, want) {
				t.Errorf("pulled\n%v\nwant\n%v", got, want)
			}
			if !slices.Equal(res.Files, m.files) {
				t.Errorf("Files = %q, want %q", res.Files, m.files)
			}
			if l := leftovers(t, parent); len(l) > 0 {
				t.Errorf("left behind: %q", l)
			}
		})
		t.Run(fmt.Sprintf("PullToVolume/extract=%v", extract), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "vol")
			res, err := f.repo(t).PullToVolume(context.Background(), "v1", root, opts)
			if err != nil {
				t.Fatalf("PullToVolume: %v", err)
			}
			if got := snapshot(t, filepath.Join(root, VolumeCurrentLink)+string(filepath.Separator)); !reflect.DeepEqual(got, want) {
				t.Errorf("current holds\n%v\nwant\n%v", got, want)
			}
			if !slices.Equal(res.Files, m.files) {
				t.Errorf("Files = %q, want %q", res.Files, m.files)
			}
		})
	}
}

// TestPullExtractSniffsVerifiedContent: the registry serves a real tar in
// place of a plain file, of another size (notes.txt) and of the same size
// (disk.img, 2048 zeros). Sniffing looks at verified content only, so the
// pull fails on the size or digest and unpacks nothing the registry
// substituted.
func TestPullExtractSniffsVerifiedContent(t *testing.T) {
	m := newMixedArtifact(t)
	planted := buildTar(t, false, rawEntry{name: "planted.txt", typ: tar.TypeReg, body: "planted"})
	for _, title := range []string{"notes.txt", "disk.img"} {
		i := slices.Index(m.files, title)
		victim := m.layers[i]
		if title == "disk.img" && int64(len(planted)) != victim.Size {
			t.Fatalf("the planted tar has %d bytes, want %d", len(planted), victim.Size)
		}
		for _, volume := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/volume=%v", title, volume), func(t *testing.T) {
				f := newFakeRegistry(t)
				f.pushArtifact(t, testRepo, "v1", m.layers, m.contents)
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+victim.Digest.String()) {
						return false
					}
					w.Header().Set("Docker-Content-Digest", victim.Digest.String())
					_, _ = w.Write(planted)
					return true
				})
				parent := t.TempDir()
				out := filepath.Join(parent, "out")
				pull := f.repo(t).PullToDir
				if volume {
					pull = f.repo(t).PullToVolume
				}
				_, err := pull(context.Background(), "v1", out, PullOptions{Extract: true})
				if !errors.Is(err, ErrDigestMismatch) && !errors.Is(err, ErrSizeMismatch) {
					t.Fatalf("pull = %v, want a digest or size mismatch", err)
				}
				_ = filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
					if err == nil && d.Name() == "planted.txt" {
						t.Errorf("the substituted tar was unpacked: %s", p)
					}
					return nil
				})
				if !volume {
					if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("the failed pull made %s", out)
					}
				}
			})
		}
	}
}

// TestPlaceLayerChecksFolderDigest: the folder's content digest is still
// verified over the tar the sniffed stream reads, peeked bytes included.
func TestPlaceLayerChecksFolderDigest(t *testing.T) {
	gz, tarDigest := tarGz(t, tarEntry{name: "d/", typ: tar.TypeDir}, tarEntry{name: "d/f", typ: tar.TypeReg, body: "F"})
	for _, tt := range []struct {
		name    string
		digest  digest.Digest
		wantErr error
	}{
		{"matching", tarDigest, nil},
		{"other", digest.FromString("other"), ErrDigestMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			blob := filepath.Join(t.TempDir(), "blob")
			if err := os.WriteFile(blob, gz, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "d")
			_, err := placeLayer(blob, out, "d", dirLayer("d", gz, tt.digest), PullOptions{})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("placeLayer = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
