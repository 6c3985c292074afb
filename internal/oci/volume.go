package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Names PullToVolume uses under the volume root.
const (
	// VolumeStoreDir holds one folder per pulled version, named by the
	// hex part of its root digest.
	VolumeStoreDir = ".ocisync"
	// VolumeCurrentLink is the symlink readers follow to the live version.
	VolumeCurrentLink = "current"
)

// stagingPrefix starts the names of unfinished versions in VolumeStoreDir;
// a digest hex never starts with a dot, so they cannot be mistaken for one.
const stagingPrefix = ".staging-"

// PullToVolume pulls ref into the volume root so that readers of
// root/current never see half a version. The layers are written and
// verified into a staging folder under root/.ocisync, renamed to
// root/.ocisync/<hex> (hex of the resolved root digest), and then the
// symlink root/current is replaced atomically by a rename to point at it.
// Versions other than the new one and the one current pointed at before
// are removed afterwards.
//
// When current already points at the resolved digest nothing is
// downloaded. On failure before the swap, current and its target are
// untouched and the staging folder is removed. If only the removal of old
// versions fails, the new version is live and both the result and an
// error are returned.
func (r *Repository) PullToVolume(ctx context.Context, ref, root string, opts PullOptions) (*PullResult, error) {
	root = filepath.Clean(root)
	// Checked before any network work, so a wrong root fails fast.
	prev, err := currentVersion(root)
	if err != nil {
		return nil, err
	}
	t, err := r.FetchTarget(ctx, ref, opts.Platform)
	if err != nil {
		return nil, err
	}
	layers, err := r.pullLayers(t, opts)
	if err != nil {
		return nil, err
	}
	res := &PullResult{Target: t}
	for _, l := range layers {
		name, err := ValidateTitle(l.Annotations[AnnotationTitle])
		if err != nil {
			return nil, fmt.Errorf("%s: layer %s: %w", r, l.Digest, err)
		}
		res.Files = append(res.Files, filepath.ToSlash(name))
	}

	hex := t.Root.Digest.Encoded()
	if !isDigestHex(hex) {
		return nil, fmt.Errorf("%s:%s: resolved digest %q has no usable hex part for a folder name: %w", r, ref, t.Root.Digest, ErrUnsupported)
	}
	store := filepath.Join(root, VolumeStoreDir)
	final := filepath.Join(store, hex)
	if prev == hex {
		if fi, err := os.Stat(final); err == nil && fi.IsDir() {
			return res, nil
		}
	}

	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", store, err)
	}
	staging, err := os.MkdirTemp(store, stagingPrefix)
	if err != nil {
		return nil, fmt.Errorf("creating a staging folder in %s: %w", store, err)
	}
	defer os.RemoveAll(staging)

	items, err := r.writeLayers(ctx, layers, staging, opts)
	if err != nil {
		return nil, err
	}
	res.Files = res.Files[:0]
	for _, it := range items {
		res.Files = append(res.Files, filepath.ToSlash(it.name))
	}
	content := filepath.Join(staging, "content")
	if err := os.MkdirAll(content, 0o755); err != nil {
		return nil, fmt.Errorf("preparing %s: %w", content, err)
	}
	// A folder of this name that current does not point at is an older
	// copy nobody reads; the fresh, verified download replaces it.
	if err := os.RemoveAll(final); err != nil {
		return nil, fmt.Errorf("replacing the unused copy %s: %w", final, err)
	}
	if err := os.Rename(content, final); err != nil {
		return nil, fmt.Errorf("moving the pulled version into %s: %w", final, err)
	}
	if err := swapCurrent(root, hex); err != nil {
		_ = os.RemoveAll(final)
		return nil, err
	}
	if err := pruneVersions(store, hex, prev); err != nil {
		return res, fmt.Errorf("%s@%s is live in %s, but removing older versions failed: %w", r, t.Root.Digest, filepath.Join(root, VolumeCurrentLink), err)
	}
	return res, nil
}

// currentVersion returns the version folder root/current points at, or ""
// when there is no current link or it points outside the store.
func currentVersion(root string) (string, error) {
	link := filepath.Join(root, VolumeCurrentLink)
	fi, err := os.Lstat(link)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("checking %s: %w", link, err)
	case fi.Mode()&os.ModeSymlink == 0:
		return "", fmt.Errorf("%s exists and is not a symlink; the versioned layout owns that name, so move it away or pull into another folder", link)
	}
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("reading the symlink %s: %w", link, err)
	}
	dir, name := filepath.Split(filepath.Clean(target))
	if filepath.Clean(dir) != VolumeStoreDir || !isDigestHex(name) {
		return "", nil
	}
	return name, nil
}

// swapCurrent points root/current at the version hex: a new symlink under
// a temporary name is renamed over current, which replaces it atomically.
func swapCurrent(root, hex string) error {
	link := filepath.Join(root, VolumeCurrentLink)
	tmp := filepath.Join(root, "."+VolumeCurrentLink+"-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	// Relative, so the link stays right wherever the volume is mounted.
	if err := os.Symlink(filepath.Join(VolumeStoreDir, hex), tmp); err != nil {
		return fmt.Errorf("creating a symlink beside %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replacing %s: %w", link, err)
	}
	return nil
}

// pruneVersions removes version folders in store other than keep; names
// that are not digest hex (staging folders, anything else) are left alone.
func pruneVersions(store string, keep ...string) error {
	entries, err := os.ReadDir(store)
	if err != nil {
		return fmt.Errorf("listing %s: %w", store, err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !isDigestHex(name) || slices.Contains(keep, name) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(store, name)); err != nil {
			errs = append(errs, fmt.Errorf("removing old version %s: %w", filepath.Join(store, name), err))
		}
	}
	return errors.Join(errs...)
}

func isDigestHex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}
