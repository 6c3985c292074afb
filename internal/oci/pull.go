package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultMaxUnpackedBytes bounds what one directory layer may expand to,
// so a small gzip bomb cannot fill a disk.
const DefaultMaxUnpackedBytes = 1 << 30

// PullOptions say which manifest and layers to pull and how much.
type PullOptions struct {
	// Platform picks a manifest from an index; nil takes the only entry.
	Platform *Platform
	// MediaType selects layers of this media type; empty selects every
	// layer that has a title. A selector that matches nothing is an error.
	MediaType string
	// MaxBytes bounds the total size of the selected layers; 0 means no
	// bound beyond what the disk holds.
	MaxBytes int64
	// MaxUnpackedBytes bounds each directory layer's extracted size; 0
	// means DefaultMaxUnpackedBytes.
	MaxUnpackedBytes int64
	// Extract also unpacks layers whose media type says tar and whose
	// content is a tar or tar+gzip archive into a folder named by their
	// title; other layers stay files (see decideLayer).
	Extract bool
	// Concurrency is how many layers are downloaded at once; 0 means
	// DefaultPullConcurrency. The registry's in-flight limit
	// (transport.Options.Limits) still applies on top.
	Concurrency int
	// Check, when set, is called once the manifest is fetched and before
	// any layer is downloaded or anything written; its error stops the
	// pull. The CLI verifies signatures of t.Root here, so that what it
	// verified is what it pulls (by digest, whatever a tag does).
	Check func(ctx context.Context, t *Target) error
}

// Target is what a reference resolved to.
type Target struct {
	// Root is the descriptor the reference names: a manifest, or an index.
	Root ocispec.Descriptor
	// Descriptor is the image manifest's descriptor (Root unless Root is
	// an index).
	Descriptor ocispec.Descriptor
	Manifest   *Manifest
}

// FetchTarget fetches and decodes the manifest ref names, going through an
// index to the manifest for platform when ref names an index.
func (r *Repository) FetchTarget(ctx context.Context, ref string, platform *Platform) (*Target, error) {
	root, data, err := r.FetchManifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	t := &Target{Root: root, Descriptor: root}
	if IsIndexMediaType(root.MediaType) {
		idx, err := DecodeIndex(root.MediaType, data)
		if err != nil {
			return nil, fmt.Errorf("%s:%s: %w: %w", r, ref, ErrInvalidManifest, err)
		}
		if t.Descriptor, err = SelectPlatform(idx, platform); err != nil {
			return nil, fmt.Errorf("%s:%s: %w", r, ref, err)
		}
		if !IsManifestMediaType(t.Descriptor.MediaType) || IsIndexMediaType(t.Descriptor.MediaType) {
			return nil, fmt.Errorf("%s:%s: the index entry for %s has media type %q, not an image manifest: %w", r, ref, platformOf(t.Descriptor), t.Descriptor.MediaType, ErrUnsupported)
		}
		if data, err = r.FetchManifestDescriptor(ctx, t.Descriptor); err != nil {
			return nil, err
		}
	}
	if t.Manifest, err = DecodeManifest(t.Descriptor.MediaType, data); err != nil {
		return nil, fmt.Errorf("%s@%s: %w: %w", r, t.Descriptor.Digest, ErrInvalidManifest, err)
	}
	return t, nil
}

// SelectLayers returns the layers that ORAS would write as files: those
// with a title, and of mediaType when it is not empty.
func SelectLayers(m *Manifest, mediaType string) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	types := map[string]bool{}
	for _, l := range m.Layers {
		if l.Annotations[AnnotationTitle] == "" {
			continue
		}
		types[l.MediaType] = true
		if mediaType == "" || l.MediaType == mediaType {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		if mediaType == "" {
			return nil, errors.New("the artifact has no layer with a title (org.opencontainers.image.title), so there is no file to write")
		}
		var have []string
		for t := range types {
			have = append(have, t)
		}
		if len(have) == 0 {
			return nil, fmt.Errorf("no layer has media type %q; the artifact has no titled layers", mediaType)
		}
		return nil, fmt.Errorf("no layer has media type %q; titled layers have %s", mediaType, strings.Join(sortedStrings(have), ", "))
	}
	return out, nil
}

// ValidateTitle checks that a layer title is a file name that stays inside
// the folder it is written to, and returns it in local form.
func ValidateTitle(title string) (string, error) {
	local := filepath.FromSlash(title)
	// "." (or "a/..") is local but names the output folder itself, which
	// a layer must not replace.
	if title == "" || !filepath.IsLocal(local) || filepath.Clean(local) == "." || strings.ContainsRune(title, 0) {
		return "", fmt.Errorf("layer title %q is not a relative path inside the output folder; refusing to write it", title)
	}
	return filepath.Clean(local), nil
}

// PullResult says what PullToDir wrote.
type PullResult struct {
	Target *Target
	// Files are the titles written, in manifest order.
	Files []string
}

// PullToDir writes the selected layers of ref into dir, each under its
// title; directory layers (AnnotationUnpack) are extracted, and with
// opts.Extract tar archives too (see decideLayer). Everything is
// downloaded (opts.Concurrency layers at once) and verified into a
// temporary folder beside dir first and moved into place only when all
// of it succeeded, so on failure dir is as it was.
func (r *Repository) PullToDir(ctx context.Context, ref, dir string, opts PullOptions) (*PullResult, error) {
	t, err := r.fetchChecked(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	layers, err := r.pullLayers(t, opts)
	if err != nil {
		return nil, err
	}

	dir = filepath.Clean(dir)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", parent, err)
	}
	staging, err := os.MkdirTemp(parent, ".ocisync-pull-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary folder beside %s: %w", dir, err)
	}
	defer os.RemoveAll(staging)

	items, err := r.writeLayers(ctx, layers, staging, opts)
	if err != nil {
		return nil, err
	}
	if err := moveIntoPlace(staging, dir, items); err != nil {
		return nil, err
	}
	res := &PullResult{Target: t}
	for _, it := range items {
		res.Files = append(res.Files, filepath.ToSlash(it.name))
	}
	return res, nil
}

// fetchChecked fetches the target and runs opts.Check on it.
func (r *Repository) fetchChecked(ctx context.Context, ref string, opts PullOptions) (*Target, error) {
	t, err := r.FetchTarget(ctx, ref, opts.Platform)
	if err != nil {
		return nil, err
	}
	if opts.Check != nil {
		if err := opts.Check(ctx, t); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// pullLayers selects the layers to pull and checks them against
// opts.MaxBytes before anything is downloaded.
func (r *Repository) pullLayers(t *Target, opts PullOptions) ([]ocispec.Descriptor, error) {
	layers, err := SelectLayers(t.Manifest, opts.MediaType)
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", r, t.Descriptor.Digest, err)
	}
	var total int64
	for _, l := range layers {
		total += l.Size
	}
	if opts.MaxBytes > 0 && total > opts.MaxBytes {
		return nil, fmt.Errorf("%s@%s: the selected layers hold %d bytes, over the %d-byte limit: %w", r, t.Descriptor.Digest, total, opts.MaxBytes, ErrTooLarge)
	}
	return layers, nil
}

type pulledItem struct {
	name  string // local relative path
	isDir bool
}

// DefaultPullConcurrency is how many layers a pull downloads at once when
// PullOptions.Concurrency is 0. One stream rarely fills a fast link, and
// ORAS downloads three at once too; a few more would only compete for the
// registry's per-host slots (transport.Hosts) with other pulls.
const DefaultPullConcurrency = 3

// writeLayers downloads the layers into staging and places each under
// staging/content by its title, up to opts.Concurrency at once. Items come
// back in the order of layers whatever order the downloads end in. The
// first failure cancels the other downloads and is the error returned once
// they have all stopped; the caller removes staging.
func (r *Repository) writeLayers(ctx context.Context, layers []ocispec.Descriptor, staging string, opts PullOptions) ([]pulledItem, error) {
	// Every title is checked before the first byte is downloaded: a bad
	// artifact should fail at once, not after gigabytes.
	names := make([]string, len(layers))
	seen := map[string]bool{}
	for i, l := range layers {
		name, err := ValidateTitle(l.Annotations[AnnotationTitle])
		if err != nil {
			return nil, fmt.Errorf("%s: layer %s: %w", r, l.Digest, err)
		}
		for other := range seen {
			if other == name || strings.HasPrefix(name, other+string(filepath.Separator)) || strings.HasPrefix(other, name+string(filepath.Separator)) {
				return nil, fmt.Errorf("%s: layers titled %q and %q would overwrite each other", r, other, name)
			}
		}
		seen[name] = true
		names[i] = name
	}

	limit := opts.Concurrency
	if limit <= 0 {
		limit = DefaultPullConcurrency
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		// Only the first failure counts: it cancels the others, whose
		// "context canceled" says nothing about what went wrong.
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	items := make([]pulledItem, len(layers))
	// Each download holds a token; the requests themselves also wait for
	// a slot of the registry's in-flight limit (transport.Hosts), as
	// they go through the same client.
	tokens := make(chan struct{}, limit)
	for i, l := range layers {
		select {
		case tokens <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			// A download failed (then this is ignored), or the caller
			// gave up: start no more.
			fail(fmt.Errorf("%s: pulling layer %q: %w", r, filepath.ToSlash(names[i]), ctx.Err()))
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-tokens }()
			isDir, err := r.writeLayer(ctx, l, names[i], staging, opts)
			if err != nil {
				fail(err)
				return
			}
			items[i] = pulledItem{name: names[i], isDir: isDir}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return items, nil
}

// writeLayer downloads one layer and places it at staging/content/name.
func (r *Repository) writeLayer(ctx context.Context, l ocispec.Descriptor, name, staging string, opts PullOptions) (bool, error) {
	blobPath, err := r.downloadBlob(ctx, l, staging, opts.MaxBytes)
	if err != nil {
		return false, fmt.Errorf("layer %q: %w", filepath.ToSlash(name), err)
	}
	dest := filepath.Join(staging, "content", name)
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return false, fmt.Errorf("creating folder for %s: %w", name, err)
	}
	isDir, err := placeLayer(blobPath, dest, name, l, opts)
	if err != nil {
		return false, fmt.Errorf("%s: writing layer %s (%s): %w", r, l.Digest, name, err)
	}
	_ = os.Remove(blobPath) // unpacked; a file was renamed away already
	return isDir, nil
}

// copyBuffers are the buffers blob downloads copy through: large enough
// that a fast registry is read and written in few calls, few enough (one
// per download in flight) that memory stays flat.
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 256<<10)
	return &b
}}

// downloadBlob streams one blob into a file under staging and returns its
// path once the whole blob has been verified.
func (r *Repository) downloadBlob(ctx context.Context, desc ocispec.Descriptor, staging string, maxSize int64) (string, error) {
	rc, err := r.FetchBlob(ctx, desc, maxSize)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	f, err := os.CreateTemp(staging, "blob-")
	if err != nil {
		return "", fmt.Errorf("creating a temporary file for blob %s: %w", desc.Digest, err)
	}
	buf := copyBuffers.Get().(*[]byte)
	// Wrapped so that io.CopyBuffer uses buf: *os.File's ReadFrom would
	// copy through a 32 KiB buffer of its own, eight times the read and
	// write calls.
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, rc, *buf)
	copyBuffers.Put(buf)
	if err != nil {
		f.Close()
		return "", fmt.Errorf("downloading blob %s from %s: %w", desc.Digest, r, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("writing blob %s: %w", desc.Digest, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return "", fmt.Errorf("writing blob %s: %w", desc.Digest, err)
	}
	return f.Name(), nil
}

// moveIntoPlace renames the staged items into dir. A missing dir is
// created by one rename of the whole staged tree; into an existing dir each
// item replaces what has its name.
func moveIntoPlace(staging, dir string, items []pulledItem) error {
	content := filepath.Join(staging, "content")
	if err := os.MkdirAll(content, 0o755); err != nil {
		return fmt.Errorf("preparing %s: %w", dir, err)
	}
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Rename(content, dir); err != nil {
			return fmt.Errorf("moving the pulled files into %s: %w", dir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("checking %s: %w", dir, err)
	case !info.IsDir():
		return fmt.Errorf("%s exists and is not a folder; choose another output folder", dir)
	}
	for _, it := range items {
		target := filepath.Join(dir, it.name)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("creating the folder for %s: %w", target, err)
		}
		if fi, err := os.Lstat(target); err == nil && (it.isDir || fi.IsDir()) {
			if err := os.RemoveAll(target); err != nil {
				return fmt.Errorf("replacing %s: %w", target, err)
			}
		}
		if err := os.Rename(filepath.Join(content, it.name), target); err != nil {
			return fmt.Errorf("moving %s into place: %w", target, err)
		}
	}
	return nil
}
