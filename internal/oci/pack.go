package oci

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one path to push: a file becomes a layer named by its base name,
// a directory a tar+gzip layer that ORAS unpacks on pull.
type File struct {
	Path string
	// MediaType of the layer; empty means image-spec's tar layer type for
	// a file and its tar+gzip type for a directory, as ORAS does.
	MediaType string
}

// PushOptions describe the manifest PushFiles writes.
type PushOptions struct {
	// ArtifactType makes an image-spec v1.1 artifact manifest (empty
	// config, artifactType set). Without it the manifest has ORAS's
	// unknown config media type, as artifacts made before v1.1 do.
	ArtifactType string
	// Annotations go on the manifest.
	Annotations map[string]string
}

// PushFiles pushes files as the layers of one manifest and tags it with
// tag (empty: push by digest only). It returns the manifest descriptor.
func (r *Repository) PushFiles(ctx context.Context, tag string, files []File, opts PushOptions) (ocispec.Descriptor, error) {
	if len(files) == 0 {
		return ocispec.Descriptor{}, fmt.Errorf("pushing to %s: no files given", r)
	}
	tmp, err := os.MkdirTemp("", "ocisync-push-")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer os.RemoveAll(tmp)

	titles := map[string]bool{}
	var layers []ocispec.Descriptor
	var paths []string
	for i, f := range files {
		layer, blobPath, err := describeFile(f, tmp, i)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		title := layer.Annotations[AnnotationTitle]
		if titles[title] {
			return ocispec.Descriptor{}, fmt.Errorf("pushing to %s: two files are named %q; layer titles must be unique", r, title)
		}
		titles[title] = true
		layers = append(layers, layer)
		paths = append(paths, blobPath)
	}
	for i, l := range layers {
		if err := r.pushFileBlob(ctx, l, paths[i]); err != nil {
			return ocispec.Descriptor{}, err
		}
	}

	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Layers:      layers,
		Annotations: opts.Annotations,
	}
	var configBytes []byte
	if opts.ArtifactType != "" {
		m.ArtifactType = opts.ArtifactType
		m.Config = ocispec.DescriptorEmptyJSON
		configBytes = []byte("{}")
	} else {
		configBytes = []byte("{}")
		m.Config = ocispec.Descriptor{MediaType: MediaTypeUnknownConfig, Digest: digest.FromBytes(configBytes), Size: int64(len(configBytes))}
	}
	cfg := m.Config
	cfg.Data = nil
	if err := r.PushBlob(ctx, cfg, strings.NewReader(string(configBytes))); err != nil {
		return ocispec.Descriptor{}, err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return r.PushManifest(ctx, tag, m.MediaType, data)
}

func (r *Repository) pushFileBlob(ctx context.Context, desc ocispec.Descriptor, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return r.PushBlob(ctx, desc, f)
}

// describeFile hashes a file, or packs a directory into tmp first, and
// returns its layer descriptor and the path of the blob to upload.
func describeFile(f File, tmp string, i int) (ocispec.Descriptor, string, error) {
	info, err := os.Stat(f.Path)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("reading %s: %w", f.Path, err)
	}
	title := filepath.Base(filepath.Clean(f.Path))
	if title == "." || title == string(filepath.Separator) || title == ".." {
		return ocispec.Descriptor{}, "", fmt.Errorf("cannot push %q: it has no file name to use as the layer title", f.Path)
	}
	annotations := map[string]string{AnnotationTitle: title}
	blobPath := f.Path
	mt := f.MediaType
	if info.IsDir() {
		if mt == "" {
			mt = ocispec.MediaTypeImageLayerGzip
		}
		blobPath = filepath.Join(tmp, fmt.Sprintf("dir-%d.tar.gz", i))
		// Walking a symlink does not descend into it: pack the folder it
		// names, under the name given.
		real, err := filepath.EvalSymlinks(f.Path)
		if err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("reading %s: %w", f.Path, err)
		}
		tarDigest, err := packDirectory(real, title, blobPath)
		if err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("packing %s: %w", f.Path, err)
		}
		annotations[AnnotationUnpack] = "true"
		annotations[AnnotationContentDigest] = tarDigest.String()
	} else if !info.Mode().IsRegular() {
		return ocispec.Descriptor{}, "", fmt.Errorf("cannot push %s: not a regular file or folder", f.Path)
	}
	if mt == "" {
		mt = ocispec.MediaTypeImageLayer
	}
	d, size, err := digestFile(blobPath)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: size, Annotations: annotations}, blobPath, nil
}

func digestFile(path string) (digest.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return digest.NewDigest(digest.SHA256, h), n, nil
}

// packDirectory writes dir as a tar+gzip with entries under prefix/, the
// way ORAS does (owner ids cleared), and returns the uncompressed tar's
// digest for AnnotationContentDigest.
func packDirectory(dir, prefix, out string) (digest.Digest, error) {
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, h))
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(filepath.Join(prefix, rel))
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			if _, err := io.Copy(tw, src); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}
