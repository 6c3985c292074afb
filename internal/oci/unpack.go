package oci

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// maxUnpackEntries bounds the entries of one directory layer: an archive
// of millions of empty files would exhaust inodes within any byte limit.
var maxUnpackEntries = 100000

// unpackDirectory extracts the tar+gzip at blobPath, a directory layer
// titled name, into dest. ORAS writes its entries as name/..., so every
// entry must be name or below it; anything that would land outside dest —
// by path, symlink or hard link — is refused, as are more than limit bytes
// of content. When tarDigest is set, the uncompressed tar must match it.
func unpackDirectory(blobPath, dest, name, tarDigest string, limit int64) error {
	var want digest.Digest
	if tarDigest != "" {
		var err error
		if want, err = digest.Parse(tarDigest); err != nil {
			return fmt.Errorf("annotation %s is not a valid digest: %w", AnnotationContentDigest, err)
		}
	}
	f, err := os.Open(blobPath)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("layer is not gzip: %w", err)
	}
	defer gz.Close()

	var stream io.Reader = gz
	var verifier digest.Verifier
	if want != "" {
		verifier = want.Verifier()
		stream = io.TeeReader(gz, verifier)
	}
	u := &unpacker{dest: dest, prefix: filepath.ToSlash(name), budget: limit, links: map[string]bool{}}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(stream)
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if entries == maxUnpackEntries {
			return fmt.Errorf("the directory has more than %d entries: %w", maxUnpackEntries, ErrTooLarge)
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := u.extract(hdr, tr); err != nil {
			return err
		}
	}
	// Each link was checked lexically when made, but a target that goes
	// through another link (made before or after it) can still lead out.
	for rel := range u.links {
		if err := u.resolveInside(rel); err != nil {
			return err
		}
	}
	if verifier != nil {
		// The digest covers the whole tar, padding after the end marker
		// included.
		if _, err := io.Copy(io.Discard, stream); err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if !verifier.Verified() {
			return fmt.Errorf("uncompressed content does not match %s %s: %w", AnnotationContentDigest, want, ErrDigestMismatch)
		}
	}
	return nil
}

type unpacker struct {
	dest   string
	prefix string
	budget int64
	links  map[string]bool // relative paths of symlinks created so far
}

// rel maps a tar entry name to a clean slash path relative to dest, or
// fails if it is not the directory itself or below it.
func (u *unpacker) rel(entry string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(entry, "./"))
	if clean == u.prefix {
		return ".", nil
	}
	rest, ok := strings.CutPrefix(clean, u.prefix+"/")
	if !ok || !filepath.IsLocal(filepath.FromSlash(rest)) {
		return "", fmt.Errorf("tar entry %q is outside the directory %q; refusing to extract it", entry, u.prefix)
	}
	return rest, nil
}

// checkParents refuses entries below a symlink this archive created: a
// link to elsewhere must not be a way out of dest.
func (u *unpacker) checkParents(rel string) error {
	for dir := path.Dir(rel); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if u.links[dir] {
			return fmt.Errorf("tar entry %q is below the symbolic link %q; refusing to extract it", rel, dir)
		}
	}
	return nil
}

func (u *unpacker) extract(hdr *tar.Header, r io.Reader) error {
	rel, err := u.rel(hdr.Name)
	if err != nil {
		return err
	}
	if err := u.checkParents(rel); err != nil {
		return err
	}
	if rel == "." && hdr.Typeflag != tar.TypeDir {
		// A link or file in place of the folder itself would make the
		// paths below it lead elsewhere.
		return fmt.Errorf("tar entry %q is the directory %q itself but is not a folder; refusing to extract it", hdr.Name, u.prefix)
	}
	target := filepath.Join(u.dest, filepath.FromSlash(rel))
	mode := os.FileMode(0o644)
	if hdr.Mode&0o111 != 0 {
		mode = 0o755
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return os.MkdirAll(target, 0o755)
	case tar.TypeReg:
		if hdr.Size > u.budget {
			return fmt.Errorf("the directory expands to more than the limit of unpacked bytes: %w", ErrTooLarge)
		}
		u.budget -= hdr.Size
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		_ = os.Remove(target) // a later entry of the same name replaces an earlier one
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return fmt.Errorf("extracting %s: %w", hdr.Name, err)
		}
		return f.Close()
	case tar.TypeSymlink:
		if path.IsAbs(hdr.Linkname) {
			return fmt.Errorf("tar entry %q is a symbolic link to the absolute path %q; refusing to extract it", hdr.Name, hdr.Linkname)
		}
		resolved := path.Join(path.Dir(rel), hdr.Linkname)
		if !filepath.IsLocal(filepath.FromSlash(resolved)) {
			return fmt.Errorf("tar entry %q is a symbolic link that points outside the directory; refusing to extract it", hdr.Name)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		_ = os.Remove(target)
		u.links[rel] = true
		return os.Symlink(hdr.Linkname, target)
	case tar.TypeLink:
		linkRel, err := u.rel(hdr.Linkname)
		if err != nil {
			return err
		}
		if err := u.checkParents(linkRel); err != nil || u.links[linkRel] {
			return fmt.Errorf("tar entry %q is a hard link through a symbolic link; refusing to extract it", hdr.Name)
		}
		src := filepath.Join(u.dest, filepath.FromSlash(linkRel))
		if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("tar entry %q is a hard link to %q, which is not a file extracted before it", hdr.Name, hdr.Linkname)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		_ = os.Remove(target)
		return os.Link(src, target)
	default:
		// Devices, fifos and the like have no place in an artifact.
		return nil
	}
}

// maxLinkHops bounds how many symbolic links resolveInside follows, so a
// loop of links ends.
const maxLinkHops = 255

// resolveInside follows rel (a slash path relative to dest) through the
// symbolic links on disk, as the kernel would, and fails if any step leads
// out of dest or the links loop. A missing component ends the lookup there:
// nothing below a missing path can lead anywhere.
func (u *unpacker) resolveInside(rel string) error {
	var at []string // resolved components below dest
	pending := strings.Split(rel, "/")
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(at) == 0 {
				return fmt.Errorf("the symbolic link %q leads outside the directory through other links; refusing to extract it", rel)
			}
			at = at[:len(at)-1]
			continue
		}
		p := filepath.Join(u.dest, filepath.Join(at...), c)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			at = append(at, c)
			continue
		}
		if hops++; hops > maxLinkHops {
			return fmt.Errorf("the symbolic link %q is part of a loop of links; refusing to extract it", rel)
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if path.IsAbs(target) {
			return fmt.Errorf("the symbolic link %q leads to an absolute path through other links; refusing to extract it", rel)
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	return nil
}
