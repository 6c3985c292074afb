// Package blobcache is the manager's content-addressed blob cache on disk:
// a layer used by many Artifacts, or left unchanged in a new version, is
// downloaded once.
//
// Blobs are stored by digest, written through a temporary file and renamed
// into place only after the download matched its digest. The disk is not
// trusted: every read verifies the file again, and one that no longer
// matches is deleted and downloaded again, never handed on. The cache is
// bounded in bytes and evicts the least recently used blobs; an index in
// memory, rebuilt from the folder at start, tracks sizes and use. Blobs
// larger than the bound bypass it.
//
// Entries are scoped by repository (registry host and name): a blob is
// served from the cache only to a repository that served it before. A
// manifest anyone can push may name any digest, so sharing across
// repositories would hand a private layer to whoever learnt its digest
// (status.files shows them) without the registry ever checking access.
package blobcache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/metrics"
	"github.com/ocisync/ocisync/internal/oci"
)

// tempPrefix names files being written; they are deleted at start.
const tempPrefix = ".tmp-"

// FetchFunc downloads a blob. The cache verifies what it returns, so it
// may or may not verify itself.
type FetchFunc func(ctx context.Context) (io.ReadCloser, error)

// Stats counts what a Cache did since it was made.
type Stats struct {
	Hits, Misses, Bypasses int64
	// Evictions counts every blob removed; CorruptFound those of them
	// that failed verification on read.
	Evictions, CorruptFound int64
	// Entries and Bytes are what the cache holds now.
	Entries int
	Bytes   int64
}

// Cache is a bounded, content-addressed blob cache in one folder. It is
// safe for concurrent use; a nil *Cache caches nothing.
type Cache struct {
	dir string
	max int64

	mu      sync.Mutex
	entries map[string]*list.Element // by key, in lru
	lru     *list.List               // of *entry, most recently used first
	used    int64
	flights map[string]*flight
	stats   Stats
	// onWait, when set, is called as a caller starts waiting for another's
	// download; tests use it to know the wait began.
	onWait func()
}

type entry struct {
	key  string // scope hash/algorithm/encoded, the path under dir
	size int64
}

// flight is one download in progress that others wait for.
type flight struct {
	done chan struct{}
	err  error
}

// New opens the cache in dir, bounded to maxBytes, creating dir if needed.
// The index is rebuilt from the files in dir, oldest first by modification
// time; leftover temporary files are deleted, and blobs over the bound are
// evicted. maxBytes <= 0 returns a nil Cache, which caches nothing.
func New(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes <= 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the blob cache folder %s: %w; point --blob-cache-dir at a writable folder or set --blob-cache-size=0", dir, err)
	}
	c := &Cache{
		dir:     dir,
		max:     maxBytes,
		entries: map[string]*list.Element{},
		lru:     list.New(),
		flights: map[string]*flight{},
	}
	type found struct {
		key   string
		size  int64
		mtime time.Time
	}
	var files []found
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			// A download cut short by a restart.
			return removeFile(path)
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !validKey(rel) {
			// Not ours: left alone, and not counted.
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, found{rel, info.Size(), info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the blob cache folder %s: %w", dir, err)
	}
	// Most recently written first, as the LRU list orders them.
	sort.Slice(files, func(i, j int) bool { return files[i].mtime.After(files[j].mtime) })
	for _, f := range files {
		c.entries[f.key] = c.lru.PushBack(&entry{key: f.key, size: f.size})
		c.used += f.size
	}
	c.mu.Lock()
	c.evictLocked()
	c.mu.Unlock()
	return c, nil
}

// validKey reports whether rel has the form <scope hash>/<algorithm>/<encoded>
// with a valid digest.
func validKey(rel string) bool {
	parts := strings.Split(rel, "/")
	if len(parts) != 3 || len(parts[0]) != 32 {
		return false
	}
	if _, err := hex.DecodeString(parts[0]); err != nil {
		return false
	}
	return digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2]).Validate() == nil
}

// Open returns the blob desc names for the repository scope (e.g.
// "registry.example/team/app"), from the cache when that repository
// already served it, or else through fetch, storing it. Like
// oci.Repository.FetchBlob, the reader checks size and digest as it goes
// and fails instead of returning io.EOF on a mismatch, so the bytes are
// verified only once Read returned io.EOF.
//
// Blobs with embedded data, larger than the bound, or asked of a nil Cache
// go straight to fetch. When the folder cannot be written, the blob is
// fetched without the cache.
func (c *Cache) Open(ctx context.Context, scope string, desc ocispec.Descriptor, fetch FetchFunc) (io.ReadCloser, error) {
	if c == nil || desc.Size > c.max || desc.Size < 0 || len(desc.Data) > 0 || desc.Digest.Validate() != nil {
		// Bad descriptors are refused by fetch with its own message.
		c.count(func(s *Stats) { s.Bypasses++ }, metrics.CacheBypass)
		return fetchVerified(ctx, desc, fetch)
	}
	key := keyFor(scope, desc.Digest)
	missed := false
	// A blob stored may be evicted by others before it is opened; then it
	// is fetched again, a few times at most.
	for range 3 {
		if rc, ok := c.openEntry(key, desc); ok {
			if missed {
				c.count(func(s *Stats) { s.Misses++ }, metrics.CacheMiss)
			} else {
				c.count(func(s *Stats) { s.Hits++ }, metrics.CacheHit)
			}
			return rc, nil
		}
		downloaded, err := c.fill(ctx, key, desc, fetch)
		missed = missed || downloaded
		if err != nil {
			var le *localError
			if errors.As(err, &le) {
				// The error names a path, never a credential.
				logr.FromContextOrDiscard(ctx).Info("the blob cache cannot store a blob; downloading it without the cache", "digest", desc.Digest.String(), "error", err.Error())
				break
			}
			c.count(func(s *Stats) { s.Misses++ }, metrics.CacheMiss)
			return nil, err
		}
	}
	c.count(func(s *Stats) { s.Bypasses++ }, metrics.CacheBypass)
	return fetchVerified(ctx, desc, fetch)
}

// Stats returns what the cache did so far.
func (c *Cache) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Entries, s.Bytes = c.lru.Len(), c.used
	return s
}

func (c *Cache) count(f func(*Stats), result string) {
	metrics.ObserveBlobCacheLookup(result)
	if c == nil {
		return
	}
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

func fetchVerified(ctx context.Context, desc ocispec.Descriptor, fetch FetchFunc) (io.ReadCloser, error) {
	rc, err := fetch(ctx)
	if err != nil {
		return nil, err
	}
	return oci.NewVerifier(rc, desc), nil
}

// keyFor is the path of a blob under the cache folder. The repository is
// hashed so that any name makes a safe, fixed-length folder name.
func keyFor(scope string, d digest.Digest) string {
	sum := sha256.Sum256([]byte(scope))
	return hex.EncodeToString(sum[:16]) + "/" + string(d.Algorithm()) + "/" + d.Encoded()
}

func (c *Cache) path(key string) string { return filepath.Join(c.dir, filepath.FromSlash(key)) }

// openEntry opens a cached blob after verifying the whole file against
// desc. A file that does not match is deleted with its entry.
func (c *Cache) openEntry(key string, desc ocispec.Descriptor) (io.ReadCloser, bool) {
	c.mu.Lock()
	el, ok := c.entries[key]
	if ok {
		c.lru.MoveToFront(el)
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	f, err := os.Open(c.path(key))
	if err != nil {
		c.drop(key, metrics.EvictionCorrupt)
		return nil, false
	}
	// Verify before handing on, so a corrupt entry is found while it can
	// still be downloaded again; the reader handed on verifies once more.
	v := oci.NewVerifier(f, desc)
	if _, err := io.Copy(io.Discard, v); err != nil || !v.Verified() {
		f.Close()
		c.drop(key, metrics.EvictionCorrupt)
		return nil, false
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, false
	}
	return oci.NewVerifier(f, desc), true
}

// drop removes an entry and its file.
func (c *Cache) drop(key, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.removeLocked(el, reason)
	}
}

func (c *Cache) removeLocked(el *list.Element, reason string) {
	e := c.lru.Remove(el).(*entry)
	delete(c.entries, e.key)
	c.used -= e.size
	// An open reader keeps its file until it is closed.
	_ = removeFile(c.path(e.key))
	c.stats.Evictions++
	if reason == metrics.EvictionCorrupt {
		c.stats.CorruptFound++
	}
	metrics.ObserveBlobCacheEviction(reason)
}

// evictLocked removes least recently used blobs until the cache is within
// its bound.
func (c *Cache) evictLocked() {
	for c.used > c.max {
		c.removeLocked(c.lru.Back(), metrics.EvictionLRU)
	}
}

// localError is a failure of the cache's own folder, not of the download:
// the blob can still be fetched without the cache.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// fill downloads the blob into the cache unless another call already
// does; then it waits for that one. Of concurrent calls for one key only
// one downloads; it alone reports downloaded, so that the others count
// as hits.
func (c *Cache) fill(ctx context.Context, key string, desc ocispec.Descriptor, fetch FetchFunc) (downloaded bool, err error) {
	for {
		c.mu.Lock()
		if _, ok := c.entries[key]; ok {
			c.mu.Unlock()
			return false, nil
		}
		fl, waiting := c.flights[key]
		if !waiting {
			fl = &flight{done: make(chan struct{})}
			c.flights[key] = fl
		}
		c.mu.Unlock()

		if !waiting {
			fl.err = c.download(ctx, key, desc, fetch)
			c.mu.Lock()
			delete(c.flights, key)
			c.mu.Unlock()
			close(fl.done)
			return true, fl.err
		}
		if c.onWait != nil {
			c.onWait()
		}
		select {
		case <-fl.done:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		// A download cut short by its caller's context says nothing of
		// the blob: try again under this caller's.
		if fl.err != nil && (errors.Is(fl.err, context.Canceled) || errors.Is(fl.err, context.DeadlineExceeded)) && ctx.Err() == nil {
			continue
		}
		return false, fl.err
	}
}

// download streams the blob into a temporary file, verifying it, and
// renames it into place only once it matched.
func (c *Cache) download(ctx context.Context, key string, desc ocispec.Descriptor, fetch FetchFunc) error {
	final := c.path(key)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return &localError{fmt.Errorf("creating a blob cache folder: %w", err)}
	}
	tmp, err := os.CreateTemp(filepath.Dir(final), tempPrefix)
	if err != nil {
		return &localError{fmt.Errorf("creating a file in the blob cache: %w", err)}
	}
	defer func() {
		tmp.Close()
		_ = removeFile(tmp.Name()) // gone after a successful rename
	}()
	rc, err := fetch(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	v := oci.NewVerifier(rc, desc)
	src := &readTracker{r: v}
	if _, err := io.Copy(tmp, src); err != nil {
		if src.err != nil {
			return err
		}
		return &localError{fmt.Errorf("writing blob %s into the blob cache: %w", desc.Digest, err)}
	}
	if !v.Verified() {
		return fmt.Errorf("blob %s: download ended before it was verified", desc.Digest)
	}
	if err := tmp.Close(); err != nil {
		return &localError{fmt.Errorf("writing blob %s into the blob cache: %w", desc.Digest, err)}
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return &localError{fmt.Errorf("storing blob %s in the blob cache: %w", desc.Digest, err)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		// Replaced a file the index still held (it failed verification
		// in a call racing with this one).
		c.used -= el.Value.(*entry).size
		c.lru.Remove(el)
	}
	c.entries[key] = c.lru.PushFront(&entry{key: key, size: desc.Size})
	c.used += desc.Size
	c.evictLocked()
	return nil
}

// readTracker remembers a failed read, so that download can tell a
// failed download (returned to the caller) from a failed write to the
// cache's folder (fetched around). It also hides everything but Read, so
// io.Copy cannot bypass the verifier.
type readTracker struct {
	r   io.Reader
	err error
}

func (t *readTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
