package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	// VolumeStoreDir holds one folder per pulled version (see
	// PullToVolume for their names) and the lock file.
	VolumeStoreDir = ".ocisync"
	// VolumeCurrentLink is the symlink readers follow to the live version.
	VolumeCurrentLink = "current"
	// VolumeLockFile, in VolumeStoreDir, is flocked by the pull that writes
	// the volume. It is never removed: a lock on a removed file locks
	// nothing for the next pull that creates it anew.
	VolumeLockFile = "lock"
)

// stagingPrefix starts the names of unfinished versions in VolumeStoreDir;
// a digest hex never starts with a dot, so they cannot be mistaken for one.
const stagingPrefix = ".staging-"

// tmpLinkPrefix starts the name of the symlink swapCurrent renames over
// current; one is left in the root only by a pull killed in between.
const tmpLinkPrefix = "." + VolumeCurrentLink + "-"

// optionsHashLen is how many hex digits of the options hash a version
// name carries: 48 bits, plenty for the few option sets one volume sees.
const optionsHashLen = 12

// PruneError is returned by PullToVolume together with its result when the
// new version is live but cleaning up afterwards failed: removing older
// versions, or leftovers of an interrupted pull. The pull itself
// succeeded, so callers may report it as a warning.
type PruneError struct {
	// Live names what is live, e.g. "registry/repo@sha256:..."; Link is
	// the root's current symlink that points at it.
	Live, Link string
	Err        error
}

func (e *PruneError) Error() string {
	return fmt.Sprintf("%s is live in %s, but cleaning up the volume failed; remove what is named here by hand, or fix its permissions, to free its space: %v", e.Live, e.Link, e.Err)
}

func (e *PruneError) Unwrap() error { return e.Err }

// PullToVolume pulls ref into the volume root so that readers of
// root/current never see half a version. The layers are written and
// verified into a staging folder under root/.ocisync, renamed to
// root/.ocisync/<version>, and then the symlink root/current is replaced
// atomically by a rename to point at it. Versions other than the new one
// and the one current pointed at before are removed afterwards.
//
// A version is named by the hex of the resolved root digest when opts
// selects nothing (no MediaType, no Platform, no Extract), and otherwise
// by <hex>-<h>, where h is the first 12 hex digits of the SHA-256 of a
// canonical JSON encoding of those three options: the same digest pulled
// with other options is other content, and must not pass for up to date.
//
// Pulls into one root are serialized by an exclusive flock on
// root/.ocisync/lock, held from after the manifest is fetched until the
// old versions are removed. A pull waits for the lock until ctx ends.
// Holding it, a pull removes staging folders that interrupted pulls left
// behind, as only the holder writes any.
//
// When current already points at the version nothing is downloaded. On
// failure before the swap, current and its target are untouched and the
// staging folder is removed. If only the cleanup after the swap fails,
// the new version is live and both the result and a *PruneError are
// returned.
func (r *Repository) PullToVolume(ctx context.Context, ref, root string, opts PullOptions) (*PullResult, error) {
	root = filepath.Clean(root)
	// Checked before any network work, so a wrong root fails fast.
	if _, err := currentVersion(root); err != nil {
		return nil, err
	}
	t, err := r.fetchChecked(ctx, ref, opts)
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

	digestHex := t.Root.Digest.Encoded()
	if !isDigestHex(digestHex) {
		return nil, fmt.Errorf("%s:%s: resolved digest %q has no usable hex part for a folder name: %w", r, ref, t.Root.Digest, ErrUnsupported)
	}
	version := versionName(digestHex, opts)
	store := filepath.Join(root, VolumeStoreDir)
	final := filepath.Join(store, version)

	unlock, err := lockVolume(ctx, store)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Failing to remove leftovers does not stop the pull; it is reported
	// with the result like a failed prune.
	cleanupErr := removeLeftovers(root)
	pruneErr := func(err error) error {
		if err = errors.Join(cleanupErr, err); err == nil {
			return nil
		}
		return &PruneError{Live: r.String() + "@" + t.Root.Digest.String(), Link: filepath.Join(root, VolumeCurrentLink), Err: err}
	}
	// Read again under the lock: the pull we waited for may have changed
	// current, even to this very version.
	prev, err := currentVersion(root)
	if err != nil {
		return nil, err
	}
	if prev == version {
		if fi, err := os.Stat(final); err == nil && fi.IsDir() {
			return res, pruneErr(nil)
		}
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
	if err := swapCurrent(root, version); err != nil {
		_ = os.RemoveAll(final)
		return nil, err
	}
	return res, pruneErr(pruneVersions(store, version, prev))
}

// versionName names the version folder of a root digest's hex pulled with
// opts; see PullToVolume.
func versionName(digestHex string, opts PullOptions) string {
	if opts.MediaType == "" && opts.Platform == nil && !opts.Extract {
		return digestHex
	}
	return digestHex + "-" + optionsHash(opts)
}

// optionsHash hashes the options that select content. The encoding is part
// of the on-disk format: a change renames every version folder, so each
// volume downloads its current version once more.
func optionsHash(opts PullOptions) string {
	type platform struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	}
	key := struct {
		MediaType string    `json:"mediaType"`
		Platform  *platform `json:"platform"`
		Extract   bool      `json:"extract"`
	}{MediaType: opts.MediaType, Extract: opts.Extract}
	if p := opts.Platform; p != nil {
		key.Platform = &platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	}
	data, err := json.Marshal(key)
	if err != nil {
		panic("oci: encoding pull options: " + err.Error()) // strings and a bool always encode
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:optionsHashLen]
}

// removeAll is os.RemoveAll for the cleanup after a pull; tests replace
// it to make the cleanup fail, which permissions cannot do for root.
var removeAll = os.RemoveAll

// removeLeftovers removes what pulls killed midway left behind: staging
// folders in the store and temporary links in root. Only the holder of the
// volume lock creates either, so anything found is stale.
func removeLeftovers(root string) error {
	var errs []error
	for _, dir := range []struct{ path, prefix string }{
		{filepath.Join(root, VolumeStoreDir), stagingPrefix},
		{root, tmpLinkPrefix},
	} {
		entries, err := os.ReadDir(dir.path)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s: %w", dir.path, err))
			continue
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), dir.prefix) {
				continue
			}
			// In root, only our symlinks: a file of the user's that happens
			// to share the prefix stays.
			if dir.prefix == tmpLinkPrefix && e.Type()&os.ModeSymlink == 0 {
				continue
			}
			p := filepath.Join(dir.path, e.Name())
			if err := removeAll(p); err != nil {
				errs = append(errs, fmt.Errorf("removing %s, left by an interrupted pull: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
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
	if filepath.Clean(dir) != VolumeStoreDir || !isVersionName(name) {
		return "", nil
	}
	return name, nil
}

// swapCurrent points root/current at the version: a new symlink under a
// temporary name is renamed over current, which replaces it atomically.
func swapCurrent(root, version string) error {
	link := filepath.Join(root, VolumeCurrentLink)
	tmp := filepath.Join(root, tmpLinkPrefix+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	// Relative, so the link stays right wherever the volume is mounted.
	if err := os.Symlink(filepath.Join(VolumeStoreDir, version), tmp); err != nil {
		return fmt.Errorf("creating a symlink beside %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replacing %s: %w", link, err)
	}
	return nil
}

// pruneVersions removes version folders in store other than keep; other
// names (staging folders, the lock file, anything else) are left alone.
func pruneVersions(store string, keep ...string) error {
	entries, err := os.ReadDir(store)
	if err != nil {
		return fmt.Errorf("listing %s: %w", store, err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !isVersionName(name) || slices.Contains(keep, name) {
			continue
		}
		if err := removeAll(filepath.Join(store, name)); err != nil {
			errs = append(errs, fmt.Errorf("removing old version %s: %w", filepath.Join(store, name), err))
		}
	}
	return errors.Join(errs...)
}

// isVersionName reports whether s names a version folder: a digest hex,
// optionally followed by "-" and an options hash.
func isVersionName(s string) bool {
	digestHex, opts, found := strings.Cut(s, "-")
	if !isDigestHex(digestHex) {
		return false
	}
	return !found || (len(opts) == optionsHashLen && isDigestHex(opts))
}

func isDigestHex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}
