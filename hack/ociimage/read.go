package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReadLayout reads back the images of the index tagged tag in the OCI
// image layout at dir, as WriteLayout writes them (one layer per image),
// checking the digest and size of every blob it reads and each layer's
// diff_id. It returns the index's digest and its images in index order,
// their Files including the folders.
func ReadLayout(dir, tag string) (digest.Digest, []Image, error) {
	var top v1.Index
	if err := readJSON(filepath.Join(dir, v1.ImageIndexFile), &top); err != nil {
		return "", nil, err
	}
	var indexDesc *v1.Descriptor
	for i, m := range top.Manifests {
		if m.Annotations[v1.AnnotationRefName] == tag {
			indexDesc = &top.Manifests[i]
		}
	}
	if indexDesc == nil {
		return "", nil, fmt.Errorf("ociimage: %s names no image %q (annotation %s)", filepath.Join(dir, v1.ImageIndexFile), tag, v1.AnnotationRefName)
	}
	var index v1.Index
	if err := readBlobJSON(dir, *indexDesc, v1.MediaTypeImageIndex, &index); err != nil {
		return "", nil, err
	}
	var images []Image
	for _, m := range index.Manifests {
		img, err := readImage(dir, m)
		if err != nil {
			return "", nil, err
		}
		images = append(images, img)
	}
	return indexDesc.Digest, images, nil
}

func readImage(dir string, desc v1.Descriptor) (Image, error) {
	var manifest v1.Manifest
	if err := readBlobJSON(dir, desc, v1.MediaTypeImageManifest, &manifest); err != nil {
		return Image{}, err
	}
	var config v1.Image
	if err := readBlobJSON(dir, manifest.Config, v1.MediaTypeImageConfig, &config); err != nil {
		return Image{}, err
	}
	if len(manifest.Layers) != 1 || len(config.RootFS.DiffIDs) != 1 {
		return Image{}, fmt.Errorf("ociimage: manifest %s has %d layers and %d diff_ids; ReadLayout reads images of one layer", desc.Digest, len(manifest.Layers), len(config.RootFS.DiffIDs))
	}
	img := Image{
		OS:         config.OS,
		Arch:       config.Architecture,
		Variant:    config.Variant,
		Entrypoint: config.Config.Entrypoint,
		Cmd:        config.Config.Cmd,
		Env:        config.Config.Env,
		User:       config.Config.User,
		WorkingDir: config.Config.WorkingDir,
		Labels:     config.Config.Labels,
	}
	if config.Created != nil {
		img.ModTime = *config.Created
	}
	if p := desc.Platform; p == nil || p.OS != img.OS || p.Architecture != img.Arch || p.Variant != img.Variant {
		return Image{}, fmt.Errorf("ociimage: the index lists manifest %s with platform %+v, its config says %s", desc.Digest, p, img.Platform())
	}
	files, err := readLayer(dir, manifest.Layers[0], config.RootFS.DiffIDs[0])
	if err != nil {
		return Image{}, err
	}
	img.Files = files
	return img, nil
}

// readLayer reads the entries of a tar+gzip layer, checking that the
// uncompressed tar has digest diffID.
func readLayer(dir string, desc v1.Descriptor, diffID digest.Digest) ([]File, error) {
	if desc.MediaType != v1.MediaTypeImageLayerGzip {
		return nil, fmt.Errorf("ociimage: layer %s has media type %q, want %s", desc.Digest, desc.MediaType, v1.MediaTypeImageLayerGzip)
	}
	data, err := readBlob(dir, desc)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("ociimage: layer %s: %w", desc.Digest, err)
	}
	tarData, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("ociimage: layer %s: %w", desc.Digest, err)
	}
	if got := digest.SHA256.FromBytes(tarData); got != diffID {
		return nil, fmt.Errorf("ociimage: layer %s uncompresses to %s, the config's diff_id is %s", desc.Digest, got, diffID)
	}
	var files []File
	tr := tar.NewReader(bytes.NewReader(tarData))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ociimage: layer %s: %w", desc.Digest, err)
		}
		f := File{Path: path.Clean("/" + h.Name), Mode: h.FileInfo().Mode() &^ fs.ModeType, UID: h.Uid, GID: h.Gid}
		switch h.Typeflag {
		case tar.TypeDir:
			f.Mode |= fs.ModeDir
		case tar.TypeSymlink:
			f.Mode |= fs.ModeSymlink
			f.Data = []byte(h.Linkname)
		case tar.TypeReg:
			if f.Data, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("ociimage: layer %s, %s: %w", desc.Digest, h.Name, err)
			}
		default:
			return nil, fmt.Errorf("ociimage: layer %s has %s of tar type %q; ReadLayout reads files, folders and symbolic links", desc.Digest, h.Name, h.Typeflag)
		}
		files = append(files, f)
	}
}

// readBlob reads the blob desc names and checks its size and digest.
func readBlob(dir string, desc v1.Descriptor) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("ociimage: descriptor digest %q: %w", desc.Digest, err)
	}
	p := filepath.Join(dir, v1.ImageBlobsDir, desc.Digest.Algorithm().String(), desc.Digest.Encoded())
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	if int64(len(data)) != desc.Size {
		return nil, fmt.Errorf("ociimage: blob %s has %d bytes, its descriptor says %d", desc.Digest, len(data), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return nil, fmt.Errorf("ociimage: blob %s has digest %s", p, got)
	}
	return data, nil
}

func readBlobJSON(dir string, desc v1.Descriptor, mediaType string, v any) error {
	if desc.MediaType != mediaType {
		return fmt.Errorf("ociimage: %s has media type %q, want %s", desc.Digest, desc.MediaType, mediaType)
	}
	data, err := readBlob(dir, desc)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("ociimage: decoding %s: %w", desc.Digest, err)
	}
	return nil
}

func readJSON(p string, v any) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("ociimage: decoding %s: %w", p, err)
	}
	return nil
}
