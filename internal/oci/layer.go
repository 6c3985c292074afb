package oci

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layerKind is how a pulled layer is written under its title.
type layerKind int

const (
	// layerFile is the blob as it is, a file.
	layerFile layerKind = iota
	// layerFolder is an ORAS directory (AnnotationUnpack): a tar or
	// tar+gzip whose entries are the title and what is below it.
	layerFolder
	// layerArchive is a tar or tar+gzip that PullOptions.Extract unpacks
	// into a folder named by the title; its entries are relative to it.
	layerArchive
)

func (k layerKind) String() string {
	switch k {
	case layerFile:
		return "file"
	case layerFolder:
		return "folder"
	case layerArchive:
		return "archive"
	}
	return "layerKind(" + strconv.Itoa(int(k)) + ")"
}

// tarStream is a layer's content opened as a tar archive.
type tarStream struct {
	// r reads the tar from its first byte, decompressed.
	r  io.Reader
	gz *gzip.Reader // nil unless the content is gzip-compressed
}

func (s *tarStream) Close() error {
	if s == nil || s.gz == nil {
		return nil
	}
	return s.gz.Close()
}

// decideLayer is the one place that decides how a layer is written; every
// pull (PullToDir, PullToVolume, hence the CLI and the volume sync Job)
// goes through it. content reads the layer's blob, already verified
// against its digest, from its start; it is read only as far as needed.
//
//   - A layer with ORAS's unpack annotation is a folder, whatever extract
//     says; content that is no tar archive is an error.
//   - With extract, a layer whose media type says tar (isTarMediaType) is
//     unpacked when its content is a tar: a valid tar header in the first
//     512 bytes, plain or inside gzip. Anything else is written as the
//     file it is: ORAS gives every file pushed without a media type the
//     OCI tar layer type, so the type alone proves nothing. That includes
//     gzip whose content is not a tar (a .gz of a text file), and an
//     archive of zero blocks only, which an empty tar and a file of zeros
//     share: written as a file, neither loses a byte.
//   - Every other layer is a file.
//
// For a folder or archive the returned stream reads the tar, including the
// bytes looked at to decide; the caller closes it.
func decideLayer(l ocispec.Descriptor, extract bool, content io.Reader) (layerKind, *tarStream, error) {
	if l.Annotations[AnnotationTitle] == "" {
		// Selection skips untitled layers; this guards any new caller.
		return 0, nil, fmt.Errorf("layer %s (%s) has no title (%s) to name the file or folder it would become; push it with a title, as oras push and ocisync push do, or select other layers by media type", l.Digest, l.MediaType, AnnotationTitle)
	}
	folder := l.Annotations[AnnotationUnpack] == "true"
	mayBeArchive := extract && isTarMediaType(l.MediaType)
	if !folder && !mayBeArchive {
		return layerFile, nil, nil
	}
	s, found, why := sniffTar(bufio.NewReader(content))
	switch {
	case folder && (found == tarHeader || found == tarEnd):
		return layerFolder, s, nil
	case folder:
		s.Close()
		return 0, nil, fmt.Errorf("the layer is marked as a folder (%s=true) but %s; push the folder again with oras push or ocisync push, or push the file without that annotation", AnnotationUnpack, why)
	case found == tarHeader:
		return layerArchive, s, nil
	}
	s.Close()
	return layerFile, nil, nil
}

// isTarMediaType reports whether mediaType says tar, plain or compressed
// with gzip: the layers PullOptions.Extract considers, and unpacks when
// their content is a tar (see decideLayer). Zstd is left out: there is no
// zstd decoder here, so such layers are written as files.
func isTarMediaType(mediaType string) bool {
	mt, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(mediaType)), ";")
	mt = strings.TrimSpace(mt)
	for _, suffix := range []string{"+gzip", ".gzip", ".gz"} {
		if s, ok := strings.CutSuffix(mt, suffix); ok {
			mt = s
			break
		}
	}
	// Covers the OCI and Docker layer types (…v1.tar, …diff.tar), Flux's
	// …content.v1.tar, and generic application/x-tar.
	return strings.HasSuffix(mt, ".tar") || strings.HasSuffix(mt, "+tar") ||
		mt == "application/tar" || mt == "application/x-tar"
}

// tarStart is what a layer's content starts with.
type tarStart int

const (
	notTar    tarStart = iota
	tarHeader          // a valid tar header
	tarEnd             // a zero block: a tar's end marker, or just zeros
)

// gzipMagic starts every gzip stream (RFC 1952).
var gzipMagic = []byte{0x1f, 0x8b}

// tarBlockSize is the size of a tar header and of its end-marker blocks.
const tarBlockSize = 512

// sniffTar looks at the start of br, decompressing gzip, and says whether
// it is a tar archive. The returned stream (nil when the content is not
// a tar) reads the tar from its first byte: peeked bytes are not lost.
// why says, for messages, what the content is when it is no tar.
func sniffTar(br *bufio.Reader) (*tarStream, tarStart, string) {
	s := &tarStream{r: br}
	what := "is neither gzip-compressed nor a tar archive"
	if magic, _ := br.Peek(len(gzipMagic)); bytes.Equal(magic, gzipMagic) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, notTar, "starts like gzip but is not valid gzip: " + err.Error()
		}
		gbr := bufio.NewReader(gz)
		s.r, s.gz = gbr, gz
		br, what = gbr, "is gzip-compressed but holds no tar archive"
	}
	block, err := br.Peek(tarBlockSize)
	if len(block) < tarBlockSize {
		s.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			// Read errors of the verified file on disk, or corrupt
			// gzip: either way no tar header can be read.
			return nil, notTar, what + " (reading its start: " + err.Error() + ")"
		}
		return nil, notTar, fmt.Sprintf("%s (%d bytes, shorter than one %d-byte tar header)", what, len(block), tarBlockSize)
	}
	switch {
	case isTarHeader(block):
		return s, tarHeader, ""
	case isZeroBlock(block):
		return s, tarEnd, ""
	}
	s.Close()
	return nil, notTar, what + " (its first 512 bytes are no tar header)"
}

func isZeroBlock(block []byte) bool {
	for _, c := range block {
		if c != 0 {
			return false
		}
	}
	return true
}

// isTarHeader reports whether block holds a tar header whose checksum is
// right: a POSIX ustar or GNU header ("ustar" at offset 257), or an old
// V7 one, which has no magic and is taken only with a name, a V7 entry
// type and zeros where the magic would be. The checksum alone rules out
// text and nearly all binary files; archive/tar checks it as well, so a
// header that passes here also passes there.
func isTarHeader(block []byte) bool {
	if len(block) < tarBlockSize {
		return false
	}
	block = block[:tarBlockSize]
	const chksumStart, chksumEnd, typeflag, magicStart = 148, 156, 156, 257
	want, ok := parseOctal(block[chksumStart:chksumEnd])
	if !ok {
		return false
	}
	// The sum of the header's bytes with the checksum field taken as
	// spaces; some old tars summed signed chars, which archive/tar accepts
	// too.
	var unsigned, signed int64
	for i, c := range block {
		if i >= chksumStart && i < chksumEnd {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	if want != unsigned && want != signed {
		return false
	}
	if bytes.HasPrefix(block[magicStart:], []byte("ustar")) {
		return true
	}
	t := block[typeflag]
	return block[0] != 0 && (t == 0 || ('0' <= t && t <= '7')) && isZeroBlock(block[magicStart:])
}

// parseOctal parses a tar numeric field as archive/tar does: octal digits
// padded with spaces or NULs. An empty field is not a number here.
func parseOctal(field []byte) (int64, bool) {
	s := strings.Trim(string(field), " \x00")
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 8, 64)
	return n, err == nil
}

// placeLayer writes the layer l, whose blob at blobPath has been verified
// in full, to dest as decideLayer says: a folder or archive is unpacked
// into dest (name is the title, local form), a file is the blob renamed
// to dest. It reports whether dest is a folder.
func placeLayer(blobPath, dest, name string, l ocispec.Descriptor, opts PullOptions) (bool, error) {
	f, err := os.Open(blobPath)
	if err != nil {
		return false, fmt.Errorf("reading the downloaded blob: %w", err)
	}
	defer f.Close()
	kind, s, err := decideLayer(l, opts.Extract, f)
	if err != nil {
		return false, err
	}
	if kind == layerFile {
		// Closed first: an open file cannot be renamed on every system.
		f.Close()
		if err := os.Rename(blobPath, dest); err != nil {
			return false, fmt.Errorf("placing %s: %w", name, err)
		}
		return false, nil
	}
	defer s.Close()
	limit := opts.MaxUnpackedBytes
	if limit <= 0 {
		limit = DefaultMaxUnpackedBytes
	}
	if kind == layerArchive {
		return true, unpackArchive(s.r, dest, "", "", limit)
	}
	var want digest.Digest
	if tarDigest := l.Annotations[AnnotationContentDigest]; tarDigest != "" {
		if want, err = digest.Parse(tarDigest); err != nil {
			return false, fmt.Errorf("annotation %s is not a valid digest: %w", AnnotationContentDigest, err)
		}
	}
	return true, unpackArchive(s.r, dest, filepath.ToSlash(name), want, limit)
}
