package blobcache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci"
)

const scope = "registry.example/team/app"

// blob is content with its descriptor and a fetch that counts its calls.
type blob struct {
	content []byte
	desc    ocispec.Descriptor
	fetches atomic.Int32
}

func newBlob(content string) *blob {
	b := []byte(content)
	return &blob{content: b, desc: ocispec.Descriptor{MediaType: "text/plain", Digest: digest.FromBytes(b), Size: int64(len(b))}}
}

func (b *blob) fetch(context.Context) (io.ReadCloser, error) {
	b.fetches.Add(1)
	return io.NopCloser(bytes.NewReader(b.content)), nil
}

// read opens b through c and reads it whole, failing the test unless it
// is b's content.
func read(t *testing.T, c *Cache, scope string, b *blob) {
	t.Helper()
	rc, err := c.Open(context.Background(), scope, b.desc, b.fetch)
	if err != nil {
		t.Fatalf("Open %s: %v", b.content, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", b.content, err)
	}
	if !bytes.Equal(got, b.content) {
		t.Fatalf("read %q, want %q", got, b.content)
	}
}

func newCache(t *testing.T, dir string, max int64) *Cache {
	t.Helper()
	c, err := New(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOpenDownloadsOncePerRepository(t *testing.T) {
	c := newCache(t, t.TempDir(), 1<<20)
	a := newBlob("layer a\n")
	read(t, c, scope, a)
	read(t, c, scope, a)
	read(t, c, scope, a)
	if n := a.fetches.Load(); n != 1 {
		t.Errorf("fetched %d times from one repository, want 1", n)
	}
	// Another repository may not hold the blob, or may not grant access
	// to it: it must answer for itself.
	read(t, c, "registry.example/other/app", a)
	read(t, c, "other.example/team/app", a)
	if n := a.fetches.Load(); n != 3 {
		t.Errorf("fetched %d times from three repositories, want 3", n)
	}
	if s := c.Stats(); s.Hits != 2 || s.Misses != 3 || s.Entries != 3 || s.Bytes != 3*a.desc.Size {
		t.Errorf("stats %+v, want 2 hits, 3 misses, 3 entries of %d bytes", s, a.desc.Size)
	}
}

func TestCorruptEntryIsDeletedAndDownloadedAgain(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(path string) error
	}{
		{"byte flipped", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[0] ^= 0xff
			return os.WriteFile(p, b, 0o600)
		}},
		{"truncated", func(p string) error { return os.Truncate(p, 3) }},
		{"extended", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteString("more")
			return errors.Join(err, f.Close())
		}},
		{"removed", os.Remove},
		{"replaced by a folder", func(p string) error { return errors.Join(os.Remove(p), os.Mkdir(p, 0o700)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := newCache(t, dir, 1<<20)
			a := newBlob("layer a\n")
			read(t, c, scope, a)
			path := filepath.Join(dir, filepath.FromSlash(keyFor(scope, a.desc.Digest)))
			if err := tt.corrupt(path); err != nil {
				t.Fatal(err)
			}
			read(t, c, scope, a)
			if n := a.fetches.Load(); n != 2 {
				t.Errorf("fetched %d times, want 2: the corrupt entry must be downloaded again", n)
			}
			if s := c.Stats(); s.CorruptFound != 1 || s.Entries != 1 || s.Bytes != a.desc.Size {
				t.Errorf("stats %+v, want one corrupt entry found and the blob stored again", s)
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, a.content) {
				t.Errorf("file after repair: %q, %v", got, err)
			}
		})
	}
}

func TestFailedDownloadIsNotStored(t *testing.T) {
	tests := []struct {
		name  string
		serve []byte
		want  error
	}{
		{"other bytes", []byte("layer b\n"), oci.ErrDigestMismatch},
		{"short", []byte("layer"), oci.ErrSizeMismatch},
		{"long", []byte("layer a\nand more"), oci.ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := newCache(t, dir, 1<<20)
			a := newBlob("layer a\n")
			var badFetches atomic.Int32
			bad := func(context.Context) (io.ReadCloser, error) {
				badFetches.Add(1)
				return io.NopCloser(bytes.NewReader(tt.serve)), nil
			}
			rc, err := c.Open(context.Background(), scope, a.desc, bad)
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if files := filesIn(t, dir); len(files) != 0 {
				t.Errorf("files left in the cache: %v", files)
			}
			if n := badFetches.Load(); n != 1 {
				t.Errorf("the bad blob was fetched %d times, want 1: a failed download is not the cache's fault", n)
			}
			read(t, c, scope, a)
			if n := a.fetches.Load(); n != 1 {
				t.Errorf("fetched %d times after the failed download, want 1", n)
			}
		})
	}
}

func TestFetchErrorIsReturned(t *testing.T) {
	c := newCache(t, t.TempDir(), 1<<20)
	a := newBlob("layer a\n")
	boom := errors.New("registry unavailable")
	_, err := c.Open(context.Background(), scope, a.desc, func(context.Context) (io.ReadCloser, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if s := c.Stats(); s.Entries != 0 {
		t.Errorf("stats %+v, want nothing stored", s)
	}
}

func TestLeastRecentlyUsedIsEvictedFirst(t *testing.T) {
	// Blobs of 4 bytes in a cache of 10: two fit.
	a, b, x := newBlob("aaaa"), newBlob("bbbb"), newBlob("xxxx")
	tests := []struct {
		name      string
		reads     []*blob
		kept      []*blob
		evicted   []*blob
		evictions int64
	}{
		{"oldest goes", []*blob{a, b, x}, []*blob{b, x}, []*blob{a}, 1},
		{"a read keeps a blob", []*blob{a, b, a, x}, []*blob{a, x}, []*blob{b}, 1},
		{"each new blob pushes one out", []*blob{a, b, x, a}, []*blob{x, a}, []*blob{b}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, bl := range []*blob{a, b, x} {
				bl.fetches.Store(0)
			}
			c := newCache(t, t.TempDir(), 10)
			for _, bl := range tt.reads {
				read(t, c, scope, bl)
			}
			if s := c.Stats(); s.Bytes > 10 || s.Evictions != tt.evictions {
				t.Errorf("stats %+v, want at most 10 bytes and %d evictions", s, tt.evictions)
			}
			before := map[*blob]int32{a: a.fetches.Load(), b: b.fetches.Load(), x: x.fetches.Load()}
			// Reading what was kept first, so that it cannot be evicted by
			// reading what was not.
			for _, bl := range tt.kept {
				read(t, c, scope, bl)
				if bl.fetches.Load() != before[bl] {
					t.Errorf("%s was evicted, want it kept", bl.content)
				}
			}
			for _, bl := range tt.evicted {
				read(t, c, scope, bl)
				if bl.fetches.Load() == before[bl] {
					t.Errorf("%s was kept, want it evicted", bl.content)
				}
			}
		})
	}
}

func TestBlobsLargerThanTheCacheBypassIt(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, dir, 4)
	big := newBlob("12345")
	read(t, c, scope, big)
	read(t, c, scope, big)
	if n := big.fetches.Load(); n != 2 {
		t.Errorf("fetched %d times, want 2: a blob over the bound is not cached", n)
	}
	if s := c.Stats(); s.Bypasses != 2 || s.Entries != 0 {
		t.Errorf("stats %+v, want 2 bypasses and nothing stored", s)
	}
	if files := filesIn(t, dir); len(files) != 0 {
		t.Errorf("files in the cache: %v", files)
	}
	// A bypass still verifies.
	_, err := io.ReadAll(mustOpen(t, c, big.desc, func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader([]byte("12346"))), nil
	}))
	if !errors.Is(err, oci.ErrDigestMismatch) {
		t.Errorf("reading other bytes past the cache: err = %v, want a digest mismatch", err)
	}
}

func TestDisabledCacheFetchesEveryTime(t *testing.T) {
	for _, size := range []int64{0, -1} {
		c, err := New(filepath.Join(t.TempDir(), "never"), size)
		if err != nil || c != nil {
			t.Fatalf("New with size %d = %v, %v; want a nil cache", size, c, err)
		}
		a := newBlob("layer a\n")
		read(t, c, scope, a)
		read(t, c, scope, a)
		if n := a.fetches.Load(); n != 2 {
			t.Errorf("size %d: fetched %d times, want 2", size, n)
		}
	}
}

func TestRestartRebuildsTheIndex(t *testing.T) {
	dir := t.TempDir()
	a, b, x := newBlob("aaaa"), newBlob("bbbb"), newBlob("xxxx")
	c := newCache(t, dir, 100)
	for _, bl := range []*blob{a, b, x} {
		read(t, c, scope, bl)
	}
	// Written in the order a, b, x, an hour apart.
	base := time.Now().Add(-time.Hour)
	for i, bl := range []*blob{a, b, x} {
		p := filepath.Join(dir, filepath.FromSlash(keyFor(scope, bl.desc.Digest)))
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	// A download cut short, and a file that is not the cache's.
	tmp := filepath.Join(dir, filepath.Dir(filepath.FromSlash(keyFor(scope, a.desc.Digest))), tempPrefix+"123")
	stranger := filepath.Join(dir, "README")
	for _, p := range []string{tmp, stranger} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Restarted with room for two: the oldest, a, goes.
	c = newCache(t, dir, 8)
	if s := c.Stats(); s.Entries != 2 || s.Bytes != 8 || s.Evictions != 1 {
		t.Errorf("after restart: stats %+v, want 2 entries of 8 bytes, 1 eviction", s)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary file is still there: %v", err)
	}
	if _, err := os.Stat(stranger); err != nil {
		t.Errorf("a file that is not the cache's was touched: %v", err)
	}
	read(t, c, scope, b)
	read(t, c, scope, x)
	read(t, c, scope, a)
	if fa, fb, fx := a.fetches.Load(), b.fetches.Load(), x.fetches.Load(); fa != 2 || fb != 1 || fx != 1 {
		t.Errorf("fetches after restart a=%d b=%d x=%d, want a downloaded again, b and x read from disk", fa, fb, fx)
	}
}

func TestConcurrentOpensDownloadOnce(t *testing.T) {
	const n = 100
	c := newCache(t, t.TempDir(), 1<<20)
	a := newBlob("shared layer\n")
	var entered atomic.Int32
	allIn := make(chan struct{})
	// The download lasts until every caller asked for the blob, so that
	// callers that do not wait for it would download it again.
	fetch := func(ctx context.Context) (io.ReadCloser, error) {
		select {
		case <-allIn:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return a.fetch(ctx)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if entered.Add(1) == n {
				close(allIn)
			}
			rc, err := c.Open(context.Background(), scope, a.desc, fetch)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err == nil && !bytes.Equal(got, a.content) {
				err = errors.New("wrong content: " + string(got))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := a.fetches.Load(); got != 1 {
		t.Errorf("%d concurrent opens fetched %d times, want 1", n, got)
	}
	if s := c.Stats(); s.Misses != 1 || s.Hits != n-1 {
		t.Errorf("stats %+v, want 1 miss and %d hits", s, n-1)
	}
}

func TestWaiterRetriesWhenTheDownloaderGivesUp(t *testing.T) {
	c := newCache(t, t.TempDir(), 1<<20)
	a := newBlob("layer a\n")
	leaderCtx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	leaderDone := make(chan error, 1)
	go func() {
		_, err := c.Open(leaderCtx, scope, a.desc, func(ctx context.Context) (io.ReadCloser, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})
		leaderDone <- err
	}()
	<-started
	waiting := make(chan struct{})
	c.onWait = func() { close(waiting) }
	waiterDone := make(chan error, 1)
	go func() {
		rc, err := c.Open(context.Background(), scope, a.desc, a.fetch)
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		waiterDone <- err
	}()
	select {
	case <-waiting:
	case err := <-waiterDone:
		t.Fatalf("the second caller downloaded on its own (err %v) instead of waiting for the download in progress", err)
	}
	cancel()
	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Errorf("the canceled caller got %v, want context.Canceled", err)
	}
	if err := <-waiterDone; err != nil {
		t.Errorf("a caller whose context is alive got %v, want the blob", err)
	}
}

func mustOpen(t *testing.T, c *Cache, desc ocispec.Descriptor, fetch FetchFunc) io.Reader {
	t.Helper()
	rc, err := c.Open(context.Background(), scope, desc, fetch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// filesIn lists the regular files under dir.
func filesIn(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestUnwritableFolderFallsBackToFetching(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, dir, 1<<20)
	a := newBlob("layer a\n")
	// A file where the repository's folder goes: the cache cannot store
	// the blob, whoever runs the test.
	block := filepath.Join(dir, filepath.Dir(filepath.Dir(filepath.FromSlash(keyFor(scope, a.desc.Digest)))))
	if err := os.WriteFile(block, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	read(t, c, scope, a)
	read(t, c, scope, a)
	if n := a.fetches.Load(); n != 2 {
		t.Errorf("fetched %d times, want 2: nothing can be stored", n)
	}
	if s := c.Stats(); s.Bypasses != 2 || s.Entries != 0 {
		t.Errorf("stats %+v, want 2 bypasses and nothing stored", s)
	}
}
