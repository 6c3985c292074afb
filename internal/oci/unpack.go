package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// maxUnpackEntries bounds the entries of one directory layer: an archive
// of millions of empty files would exhaust inodes within any byte limit.
var maxUnpackEntries = 100000

// unpackArchive extracts the tar stream r into dest with the hardened
// rules: prefix is the folder every entry must be in (the title, for an
// ORAS directory, whose entries are written as title/...), or "" when
// entries are relative to dest (a leading "./" is fine), as Flux writes
// them. Anything that would land outside dest, by path, symlink or hard
// link, is refused, as are device files, more than limit bytes of content
// and more than maxUnpackEntries entries. When want is set, the tar must
// match it.
func unpackArchive(r io.Reader, dest, prefix string, want digest.Digest, limit int64) (err error) {
	// A refused archive may have left links that lead out: remove what
	// this call made, so no caller can trip over it.
	if _, statErr := os.Lstat(dest); errors.Is(statErr, fs.ErrNotExist) {
		defer func() {
			if err != nil {
				_ = os.RemoveAll(dest)
			}
		}()
	}
	stream := r
	var verifier digest.Verifier
	if want != "" {
		verifier = want.Verifier()
		stream = io.TeeReader(stream, verifier)
	}

	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	// Every change goes through an os.Root, so even a check missed below
	// cannot make the kernel write outside dest.
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{root: root, dest: dest, prefix: prefix, budget: limit, links: map[string]bool{}}
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
	root   *os.Root
	dest   string
	prefix string // "" when entries are relative to dest itself
	budget int64  // content bytes still allowed
	links  map[string]bool
}

// where names the folder entries must be in, for error messages.
func (u *unpacker) where() string {
	if u.prefix == "" {
		return "layer's folder"
	}
	return fmt.Sprintf("directory %q", u.prefix)
}

// rel maps a tar entry name to a clean slash path relative to dest, or
// fails if it is not the directory itself or below it.
func (u *unpacker) rel(entry string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(entry, "./"))
	rest := clean
	if u.prefix != "" {
		if clean == u.prefix {
			return ".", nil
		}
		var ok bool
		if rest, ok = strings.CutPrefix(clean, u.prefix+"/"); !ok {
			rest = "/" // fails below
		}
	}
	if rest == "." {
		return ".", nil
	}
	if !filepath.IsLocal(filepath.FromSlash(rest)) || strings.ContainsRune(rest, 0) {
		return "", fmt.Errorf("tar entry %q is outside the %s; refusing to extract it", entry, u.where())
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

// typeName names tar entry types that are refused.
func typeName(flag byte) string {
	switch flag {
	case tar.TypeChar:
		return "a character device"
	case tar.TypeBlock:
		return "a block device"
	case tar.TypeFifo:
		return "a named pipe (fifo)"
	case tar.TypeCont:
		return "a contiguous file"
	}
	return fmt.Sprintf("of unknown type %q", flag)
}

// clear makes way for a new non-folder entry at rel: an earlier file or
// link of that name is removed (later entries win, as with tar), but a
// folder is not replaced, since what is below it came from this archive.
func (u *unpacker) clear(name, rel string) error {
	fi, err := u.root.Lstat(filepath.FromSlash(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("extracting %s: %w", name, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("tar entry %q would replace a folder an earlier entry made; refusing to extract it", name)
	}
	delete(u.links, rel)
	if err := u.root.Remove(filepath.FromSlash(rel)); err != nil {
		return fmt.Errorf("replacing %s: %w", name, err)
	}
	return nil
}

func (u *unpacker) mkdirParent(name, rel string) error {
	if dir := path.Dir(rel); dir != "." {
		if err := u.root.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
			return fmt.Errorf("creating the folder for %s: %w", name, err)
		}
	}
	return nil
}

func (u *unpacker) extract(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		// Metadata only (git archive writes one); nothing to extract.
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeLink:
	default:
		// Devices, fifos and the like have no place in an artifact, and
		// skipping them silently would hide a broken or hostile archive.
		return fmt.Errorf("tar entry %q is %s; only files, folders and links can be extracted: %w", hdr.Name, typeName(hdr.Typeflag), ErrUnsupported)
	}
	rel, err := u.rel(hdr.Name)
	if err != nil {
		return err
	}
	if err := u.checkParents(rel); err != nil {
		return err
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			// A link or file in place of the folder itself would make
			// the paths below it lead elsewhere.
			return fmt.Errorf("tar entry %q is the %s itself but is not a folder; refusing to extract it", hdr.Name, u.where())
		}
		return nil
	}
	local := filepath.FromSlash(rel)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if u.links[rel] {
			return fmt.Errorf("tar entry %q is a folder in place of an earlier symbolic link; refusing to extract it", hdr.Name)
		}
		if fi, err := u.root.Lstat(local); err == nil && !fi.IsDir() {
			return fmt.Errorf("tar entry %q is a folder in place of an earlier file; refusing to extract it", hdr.Name)
		}
		if err := u.root.MkdirAll(local, 0o755); err != nil {
			return fmt.Errorf("creating folder %s: %w", hdr.Name, err)
		}
		return nil
	case tar.TypeReg, tar.TypeGNUSparse:
		// Refuse before writing: a sparse or lying header may claim far
		// more than the archive holds.
		if hdr.Size > u.budget {
			return fmt.Errorf("tar entry %q (%d bytes) takes the directory over the limit of unpacked bytes: %w", hdr.Name, hdr.Size, ErrTooLarge)
		}
		if err := u.mkdirParent(hdr.Name, rel); err != nil {
			return err
		}
		if err := u.clear(hdr.Name, rel); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if hdr.Mode&0o111 != 0 {
			mode = 0o755
		}
		// O_EXCL: never open (and follow) anything already there.
		f, err := u.root.OpenFile(local, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
		if err != nil {
			return fmt.Errorf("extracting %s: %w", hdr.Name, err)
		}
		// Count what is actually written, not what the header says.
		n, err := io.Copy(f, io.LimitReader(r, u.budget+1))
		u.budget -= n
		if err != nil {
			f.Close()
			return fmt.Errorf("extracting %s: %w", hdr.Name, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("extracting %s: %w", hdr.Name, err)
		}
		if u.budget < 0 {
			return fmt.Errorf("tar entry %q takes the directory over the limit of unpacked bytes: %w", hdr.Name, ErrTooLarge)
		}
		if n != hdr.Size {
			return fmt.Errorf("tar entry %q holds %d bytes but its header says %d: %w", hdr.Name, n, hdr.Size, ErrSizeMismatch)
		}
		return nil
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("tar entry %q is a symbolic link with no target; refusing to extract it", hdr.Name)
		}
		if path.IsAbs(hdr.Linkname) {
			return fmt.Errorf("tar entry %q is a symbolic link to the absolute path %q; refusing to extract it", hdr.Name, hdr.Linkname)
		}
		resolved := path.Join(path.Dir(rel), hdr.Linkname)
		if !filepath.IsLocal(filepath.FromSlash(resolved)) || strings.ContainsRune(hdr.Linkname, 0) {
			return fmt.Errorf("tar entry %q is a symbolic link that points outside the %s; refusing to extract it", hdr.Name, u.where())
		}
		if err := u.mkdirParent(hdr.Name, rel); err != nil {
			return err
		}
		if err := u.clear(hdr.Name, rel); err != nil {
			return err
		}
		u.links[rel] = true
		if err := u.root.Symlink(hdr.Linkname, local); err != nil {
			return fmt.Errorf("extracting %s: %w", hdr.Name, err)
		}
		return nil
	default: // tar.TypeLink
		linkRel, err := u.rel(hdr.Linkname)
		if err != nil {
			return err
		}
		if err := u.checkParents(linkRel); err != nil || u.links[linkRel] {
			return fmt.Errorf("tar entry %q is a hard link through a symbolic link; refusing to extract it", hdr.Name)
		}
		if linkRel == rel {
			return fmt.Errorf("tar entry %q is a hard link to itself; refusing to extract it", hdr.Name)
		}
		if fi, err := u.root.Lstat(filepath.FromSlash(linkRel)); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("tar entry %q is a hard link to %q, which is not a file extracted before it", hdr.Name, hdr.Linkname)
		}
		if err := u.mkdirParent(hdr.Name, rel); err != nil {
			return err
		}
		if err := u.clear(hdr.Name, rel); err != nil {
			return err
		}
		if err := u.root.Link(filepath.FromSlash(linkRel), local); err != nil {
			return fmt.Errorf("extracting %s: %w", hdr.Name, err)
		}
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
				return fmt.Errorf("the symbolic link %q leads outside the %s through other links; refusing to extract it", rel, u.where())
			}
			at = at[:len(at)-1]
			continue
		}
		p := filepath.Join(append(append([]string{}, at...), c)...)
		fi, err := u.root.Lstat(p)
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
		target, err := u.root.Readlink(p)
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
