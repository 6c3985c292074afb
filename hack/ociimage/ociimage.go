// Package ociimage writes container images as an OCI image layout without
// a container engine: make image builds the manager image with it (see
// hack/image), and tests build small images of test binaries with it.
//
// Everything it writes is reproducible: the same images give the same
// bytes, so the same digests. Tar entries are sorted by path and carry
// fixed modification times and explicit numeric owners (no user or group
// names), layers are gzip-compressed at a fixed level without a name or
// time in the header, and the config holds no build time unless one is
// given.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "crypto/sha256" // go-digest's sha256 needs it registered
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one entry of an image's file system.
type File struct {
	// Path is absolute and clean, such as /etc/passwd.
	Path string
	// Mode holds the permission bits and the type: fs.ModeDir for a
	// folder, fs.ModeSymlink for a symbolic link (Data is its target),
	// neither for a regular file. fs.ModeSticky, fs.ModeSetuid and
	// fs.ModeSetgid are kept.
	Mode     fs.FileMode
	UID, GID int
	// Data is the content of a regular file, the target of a link.
	Data []byte
}

// Image is one platform's image: a single layer of Files and the config
// that runs it.
type Image struct {
	OS, Arch, Variant string
	// Files need not list their parent folders: missing ones are added as
	// root-owned 0755 folders.
	Files                []File
	Entrypoint, Cmd, Env []string
	User, WorkingDir     string
	Labels               map[string]string
	// ModTime is the modification time of every file and the config's
	// created time. Zero means the Unix epoch for the files and no created
	// time, so that rebuilding gives the same digests.
	ModTime time.Time
}

// Platform is the image's platform as os/arch[/variant].
func (img Image) Platform() string {
	p := img.OS + "/" + img.Arch
	if img.Variant != "" {
		p += "/" + img.Variant
	}
	return p
}

// compressionLevel is fixed: another level gives other layer bytes, so
// other digests.
const compressionLevel = gzip.DefaultCompression

// WriteLayout writes images (one per platform) as one multi-platform image
// index tagged tag into an OCI image layout at dir, and returns the digest
// of that index. The layout is written into a temporary folder beside dir
// and renamed into place, so dir is either what it was or the new layout,
// never half written. An existing dir is replaced only when it is an OCI
// layout (it has an oci-layout file) or empty, so that a wrong path cannot
// delete unrelated files.
func WriteLayout(dir, tag string, images []Image) (digest.Digest, error) {
	if tag == "" {
		return "", errors.New("ociimage: empty tag; give the tag that index.json should name the image by, such as latest")
	}
	if len(images) == 0 {
		return "", errors.New("ociimage: no images to write; give one per platform")
	}
	if err := replaceable(dir); err != nil {
		return "", err
	}
	parent, base := filepath.Split(filepath.Clean(dir))
	if parent == "" {
		parent = "."
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("ociimage: creating the folder of %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-")
	if err != nil {
		return "", fmt.Errorf("ociimage: creating a temporary folder beside %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp) // gone after a successful rename; the leftovers of a failure otherwise
	// MkdirTemp makes the folder 0700; a layout is as readable as any build output.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("ociimage: %w", err)
	}
	idx, err := write(tmp, tag, images)
	if err != nil {
		return "", err
	}
	if err := replace(tmp, dir); err != nil {
		return "", err
	}
	return idx, nil
}

// replaceable fails unless dir is missing, empty or an OCI layout.
func replaceable(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("ociimage: reading %s before replacing it: %w", dir, err)
	case len(entries) == 0:
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, v1.ImageLayoutFile)); err != nil {
		return fmt.Errorf("ociimage: refusing to replace %s: it is not an OCI image layout (no %s file); remove it or choose another folder", dir, v1.ImageLayoutFile)
	}
	return nil
}

// replace moves the finished layout tmp to dir. Linux cannot rename a
// folder over a non-empty one, so an existing dir is first moved aside
// and put back if the second rename fails.
func replace(tmp, dir string) error {
	old := tmp + ".old"
	moved := false
	if err := os.Rename(dir, old); err == nil {
		moved = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ociimage: moving the old layout %s aside: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if moved {
			if rerr := os.Rename(old, dir); rerr != nil {
				return fmt.Errorf("ociimage: moving the new layout to %s: %w; the old layout is left at %s (%v)", dir, err, old, rerr)
			}
		}
		return fmt.Errorf("ociimage: moving the new layout to %s: %w", dir, err)
	}
	if moved {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("ociimage: removing the old layout %s: %w; the new one is in place, remove it by hand", old, err)
		}
	}
	return nil
}

// write writes the layout into the empty folder dir.
func write(dir, tag string, images []Image) (digest.Digest, error) {
	blobs := filepath.Join(dir, v1.ImageBlobsDir, string(digest.SHA256))
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return "", fmt.Errorf("ociimage: %w", err)
	}
	put := func(mediaType string, data []byte) (v1.Descriptor, error) {
		d := digest.SHA256.FromBytes(data)
		if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), data, 0o644); err != nil {
			return v1.Descriptor{}, fmt.Errorf("ociimage: writing blob %s: %w", d, err)
		}
		return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
	}

	seen := map[string]bool{}
	for _, img := range images {
		if img.OS == "" || img.Arch == "" {
			return "", fmt.Errorf("ociimage: an image has platform %q; set OS and Arch, such as linux and amd64", img.Platform())
		}
		if seen[img.Platform()] {
			return "", fmt.Errorf("ociimage: two images for platform %s; an index holds one per platform", img.Platform())
		}
		seen[img.Platform()] = true
	}

	// Compressing is most of the time; the platforms' layers compress in
	// parallel.
	type result struct {
		layer  []byte
		diffID digest.Digest
		err    error
	}
	layers := make([]result, len(images))
	var wg sync.WaitGroup
	for i, img := range images {
		wg.Go(func() {
			l, d, err := Layer(img.Files, img.ModTime)
			layers[i] = result{l, d, err}
		})
	}
	wg.Wait()

	var manifests []v1.Descriptor
	for i, img := range images {
		layer, diffID, err := layers[i].layer, layers[i].diffID, layers[i].err
		if err != nil {
			return "", fmt.Errorf("ociimage: the %s image: %w", img.Platform(), err)
		}
		layerDesc, err := put(v1.MediaTypeImageLayerGzip, layer)
		if err != nil {
			return "", err
		}
		config, err := json.Marshal(configOf(img, diffID))
		if err != nil {
			return "", fmt.Errorf("ociimage: encoding the %s config: %w", img.Platform(), err)
		}
		configDesc, err := put(v1.MediaTypeImageConfig, config)
		if err != nil {
			return "", err
		}
		manifest, err := json.Marshal(v1.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: v1.MediaTypeImageManifest,
			Config:    configDesc,
			Layers:    []v1.Descriptor{layerDesc},
		})
		if err != nil {
			return "", fmt.Errorf("ociimage: encoding the %s manifest: %w", img.Platform(), err)
		}
		desc, err := put(v1.MediaTypeImageManifest, manifest)
		if err != nil {
			return "", err
		}
		desc.Platform = &v1.Platform{OS: img.OS, Architecture: img.Arch, Variant: img.Variant}
		manifests = append(manifests, desc)
	}

	index, err := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: manifests,
	})
	if err != nil {
		return "", fmt.Errorf("ociimage: encoding the image index: %w", err)
	}
	indexDesc, err := put(v1.MediaTypeImageIndex, index)
	if err != nil {
		return "", err
	}
	indexDesc.Annotations = map[string]string{v1.AnnotationRefName: tag}
	top, err := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{indexDesc},
	})
	if err != nil {
		return "", fmt.Errorf("ociimage: encoding index.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, v1.ImageIndexFile), top, 0o644); err != nil {
		return "", fmt.Errorf("ociimage: %w", err)
	}
	layout, err := json.Marshal(v1.ImageLayout{Version: v1.ImageLayoutVersion})
	if err != nil {
		return "", fmt.Errorf("ociimage: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, v1.ImageLayoutFile), layout, 0o644); err != nil {
		return "", fmt.Errorf("ociimage: %w", err)
	}
	return indexDesc.Digest, nil
}

// configOf is the image config of img with its one layer.
func configOf(img Image, diffID digest.Digest) v1.Image {
	c := v1.Image{
		Platform: v1.Platform{OS: img.OS, Architecture: img.Arch, Variant: img.Variant},
		Config: v1.ImageConfig{
			User:       img.User,
			Env:        img.Env,
			Entrypoint: img.Entrypoint,
			Cmd:        img.Cmd,
			WorkingDir: img.WorkingDir,
			Labels:     img.Labels,
		},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	}
	if !img.ModTime.IsZero() {
		created := img.ModTime.UTC().Truncate(time.Second)
		c.Created = &created
	}
	return c
}

// Layer returns files as a gzip-compressed tar (an OCI layer) and the
// digest of the uncompressed tar (its diff_id). Entries are sorted by path,
// missing parent folders are added, and every entry has mtime modTime (the
// Unix epoch when zero) and only numeric owners.
func Layer(files []File, modTime time.Time) (layer []byte, diffID digest.Digest, err error) {
	entries, err := complete(files)
	if err != nil {
		return nil, "", err
	}
	if modTime.IsZero() {
		modTime = time.Unix(0, 0)
	}
	modTime = modTime.UTC().Truncate(time.Second)

	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, f := range entries {
		name := strings.TrimPrefix(f.Path, "/")
		h := &tar.Header{
			Name:    name,
			Mode:    tarMode(f.Mode),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: modTime,
		}
		switch {
		case f.Mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case f.Mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, string(f.Data)
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, "", fmt.Errorf("writing the tar entry of %s: %w", f.Path, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, "", fmt.Errorf("writing %s into the tar: %w", f.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", fmt.Errorf("closing the tar: %w", err)
	}

	var gzBuf bytes.Buffer
	// A gzip.Writer writes no name and a zero mtime unless its Header says
	// otherwise.
	zw, err := gzip.NewWriterLevel(&gzBuf, compressionLevel)
	if err != nil {
		return nil, "", err
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, "", fmt.Errorf("compressing the layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, "", fmt.Errorf("compressing the layer: %w", err)
	}
	return gzBuf.Bytes(), digest.SHA256.FromBytes(tarBuf.Bytes()), nil
}

// complete checks files and returns them sorted by path with their missing
// parent folders added.
func complete(files []File) ([]File, error) {
	byPath := map[string]File{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("file path %q: want an absolute, clean path below /, such as /etc/passwd", f.Path)
		}
		if _, dup := byPath[f.Path]; dup {
			return nil, fmt.Errorf("file %s is listed twice", f.Path)
		}
		if t := f.Mode.Type(); t != 0 && t != fs.ModeDir && t != fs.ModeSymlink {
			return nil, fmt.Errorf("file %s has mode %s: only regular files, folders and symbolic links are supported", f.Path, f.Mode)
		}
		if f.Mode.IsDir() && len(f.Data) > 0 {
			return nil, fmt.Errorf("folder %s has data; list the files in it as their own entries", f.Path)
		}
		if f.UID < 0 || f.GID < 0 {
			return nil, fmt.Errorf("file %s has owner %d:%d; want non-negative ids", f.Path, f.UID, f.GID)
		}
		byPath[f.Path] = f
	}
	for p := range byPath {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if parent, ok := byPath[d]; ok {
				if !parent.Mode.IsDir() {
					return nil, fmt.Errorf("%s is inside %s, which is not a folder", p, d)
				}
				continue
			}
			byPath[d] = File{Path: d, Mode: fs.ModeDir | 0o755}
		}
	}
	out := make([]File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	// By path elements, so that a folder comes before what it holds (byte
	// order would put /a.b between /a and /a/b).
	slices.SortFunc(out, func(a, b File) int {
		return slices.Compare(strings.Split(a.Path, "/"), strings.Split(b.Path, "/"))
	})
	return out, nil
}

// tarMode is the tar header mode of m: the permission bits and the
// setuid, setgid and sticky bits at their Unix positions.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
