package oci

import (
	"archive/tar"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// volumeEntries lists the names in dir, sorted; a missing dir gives nil.
func volumeEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// pushVolumeVersion pushes a one-file artifact and a directory layer
// under tag and returns the hex of its manifest digest.
func pushVolumeVersion(t *testing.T, f *fakeRegistry, tag, body string) string {
	t.Helper()
	file := []byte("file " + body)
	gz, tarDigest := volumeSite(t, body)
	layers := []ocispec.Descriptor{
		layerDesc("text/plain", "notes.txt", file),
		dirLayer("site", gz, tarDigest),
	}
	return f.pushArtifact(t, testRepo, tag, layers, [][]byte{file, gz}).Digest.Encoded()
}

// volumeSite is the directory layer of a version: gzip output is
// deterministic, so a test can rebuild it to find its digest.
func volumeSite(t *testing.T, body string) ([]byte, digest.Digest) {
	t.Helper()
	return tarGz(t,
		tarEntry{name: "site/", typ: tar.TypeDir},
		tarEntry{name: "site/index.html", typ: tar.TypeReg, body: "page " + body},
	)
}

// TestPullToVolumeVersions runs pulls in order against one volume and
// checks after each what current points at and which versions are kept.
func TestPullToVolumeVersions(t *testing.T) {
	f := newFakeRegistry(t)
	repo := f.repo(t)
	root := filepath.Join(t.TempDir(), "vol")
	store := filepath.Join(root, VolumeStoreDir)

	hexes := map[string]string{} // version name -> manifest digest hex
	steps := []struct {
		name      string
		version   string // content pushed to "latest" before the pull; "" keeps it
		tamper    bool   // serve the version's directory layer (the second) with other bytes
		wantErr   bool
		wantCur   string   // version current points at afterwards
		wantKept  []string // versions in the store afterwards
		wantGets  int      // blob GETs during the pull
		wantFiles []string
	}{
		{name: "first pull creates the version and current", version: "v1", wantCur: "v1", wantKept: []string{"v1"}, wantGets: 2, wantFiles: []string{"notes.txt", "site"}},
		{name: "second version swaps current and keeps the first", version: "v2", wantCur: "v2", wantKept: []string{"v1", "v2"}, wantGets: 2, wantFiles: []string{"notes.txt", "site"}},
		{name: "third version removes the oldest", version: "v3", wantCur: "v3", wantKept: []string{"v2", "v3"}, wantGets: 2, wantFiles: []string{"notes.txt", "site"}},
		{name: "same digest again downloads nothing", wantCur: "v3", wantKept: []string{"v2", "v3"}, wantGets: 0, wantFiles: []string{"notes.txt", "site"}},
		{name: "tampered blob leaves everything as it was", version: "v4", tamper: true, wantErr: true, wantCur: "v3", wantKept: []string{"v2", "v3"}, wantGets: 2},
		{name: "a good fourth version after the failure", version: "v5", wantCur: "v5", wantKept: []string{"v3", "v5"}, wantGets: 2, wantFiles: []string{"notes.txt", "site"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.version != "" {
				hexes[st.version] = pushVolumeVersion(t, f, "latest", st.version)
			}
			if st.tamper {
				// The first layer is then downloading, or done, when the
				// failure comes.
				gz, _ := volumeSite(t, st.version)
				f.mu.Lock()
				f.blobs[testRepo+"@"+digest.FromBytes(gz).String()] = []byte("evil " + st.version)
				f.mu.Unlock()
			}
			var before map[string]string
			if st.wantErr {
				before = snapshot(t, root)
			}
			getsBefore := len(f.reqs("GET", "/blobs/"))

			res, err := repo.PullToVolume(context.Background(), "latest", root, PullOptions{})

			gets := len(f.reqs("GET", "/blobs/")) - getsBefore
			if st.wantErr {
				if err == nil {
					t.Fatal("PullToVolume succeeded, want an error")
				}
				if !errors.Is(err, ErrDigestMismatch) && !errors.Is(err, ErrSizeMismatch) {
					t.Errorf("error %v, want a digest or size mismatch", err)
				}
				if got := snapshot(t, root); !mapsEqual(got, before) {
					t.Errorf("volume changed on failure:\nbefore %v\nafter  %v", before, got)
				}
			} else {
				if err != nil {
					t.Fatalf("PullToVolume: %v", err)
				}
				if got := res.Target.Root.Digest.Encoded(); got != hexes[st.wantCur] {
					t.Errorf("result digest hex %s, want %s", got, hexes[st.wantCur])
				}
				if !slices.Equal(res.Files, st.wantFiles) {
					t.Errorf("result files %q, want %q", res.Files, st.wantFiles)
				}
			}
			switch {
			case st.wantErr && (gets < 1 || gets > st.wantGets):
				// Layers download together: the failure cancels the
				// others, which may not have reached the registry yet.
				t.Errorf("%d blob GETs, want 1 to %d", gets, st.wantGets)
			case !st.wantErr && gets != st.wantGets:
				t.Errorf("%d blob GETs, want %d", gets, st.wantGets)
			}

			link, err := os.Readlink(filepath.Join(root, VolumeCurrentLink))
			if err != nil {
				t.Fatalf("reading current: %v", err)
			}
			if want := filepath.Join(VolumeStoreDir, hexes[st.wantCur]); link != want {
				t.Errorf("current -> %s, want %s", link, want)
			}
			for _, p := range []struct{ file, want string }{
				{"notes.txt", "file " + st.wantCur},
				{"site/index.html", "page " + st.wantCur},
			} {
				data, err := os.ReadFile(filepath.Join(root, VolumeCurrentLink, p.file))
				if err != nil || string(data) != p.want {
					t.Errorf("current/%s = %q, %v; want %q", p.file, data, err, p.want)
				}
			}
			want := []string{VolumeLockFile}
			for _, v := range st.wantKept {
				want = append(want, hexes[v])
			}
			slices.Sort(want)
			// No staging folder and no temporary link may be left over.
			if got := volumeEntries(t, store); !slices.Equal(got, want) {
				t.Errorf("%s holds %q, want %q", store, got, want)
			}
			if got := volumeEntries(t, root); !slices.Equal(got, []string{VolumeStoreDir, VolumeCurrentLink}) {
				t.Errorf("%s holds %q, want only %s and %s", root, got, VolumeStoreDir, VolumeCurrentLink)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestPullToVolumeRefusesForeignCurrent checks that a current that is not
// a symlink is refused before anything is fetched or written.
func TestPullToVolumeRefusesForeignCurrent(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, current string)
	}{
		{"regular folder", func(t *testing.T, current string) {
			if err := os.MkdirAll(current, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(current, "mine.txt"), []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"regular file", func(t *testing.T, current string) {
			if err := os.WriteFile(current, []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			pushVolumeVersion(t, f, "latest", "v1")
			root := t.TempDir()
			tt.setup(t, filepath.Join(root, VolumeCurrentLink))
			before := snapshot(t, root)
			n := f.requestCount()

			_, err := f.repo(t).PullToVolume(context.Background(), "latest", root, PullOptions{})
			if err == nil {
				t.Fatal("PullToVolume succeeded, want an error")
			}
			if !strings.Contains(err.Error(), "not a symlink") {
				t.Errorf("error %q does not say current is not a symlink", err)
			}
			if got := f.requestCount() - n; got != 0 {
				t.Errorf("%d requests sent, want none", got)
			}
			if got := snapshot(t, root); !mapsEqual(got, before) {
				t.Errorf("root changed:\nbefore %v\nafter  %v", before, got)
			}
		})
	}
}

// TestPullToVolumeDanglingCurrent checks that a current pointing at a
// version folder that is gone is repaired by a pull of that digest.
func TestPullToVolumeDanglingCurrent(t *testing.T) {
	f := newFakeRegistry(t)
	hex := pushVolumeVersion(t, f, "latest", "v1")
	root := t.TempDir()
	if err := os.Symlink(filepath.Join(VolumeStoreDir, hex), filepath.Join(root, VolumeCurrentLink)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo(t).PullToVolume(context.Background(), "latest", root, PullOptions{}); err != nil {
		t.Fatalf("PullToVolume: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(root, VolumeCurrentLink, "notes.txt"))
	if err != nil || string(data) != "file v1" {
		t.Errorf("current/notes.txt = %q, %v; want %q", data, err, "file v1")
	}
}

// versionNameRE matches a version folder named with options.
var versionNameRE = regexp.MustCompile(`^[0-9a-f]{64}-[0-9a-f]{12}$`)

// TestPullToVolumeOptionsNaming pulls one digest with different selection
// options: each option set gets its own version folder, so a change of
// options is never taken for up to date, and no options give the plain hex.
func TestPullToVolumeOptionsNaming(t *testing.T) {
	f := newFakeRegistry(t)
	repo := f.repo(t)
	hex := pushVolumeVersion(t, f, "latest", "v1")
	root := filepath.Join(t.TempDir(), "vol")

	type named struct {
		opts PullOptions
		name string
	}
	var seen []named // the version folder of each step so far
	steps := []struct {
		name      string
		opts      PullOptions
		wantGets  int
		wantFiles []string
	}{
		{name: "no options", wantGets: 2, wantFiles: []string{"notes.txt", "site"}},
		{name: "media type", opts: PullOptions{MediaType: "text/plain"}, wantGets: 1, wantFiles: []string{"notes.txt"}},
		{name: "media type again", opts: PullOptions{MediaType: "text/plain"}, wantGets: 0, wantFiles: []string{"notes.txt"}},
		{name: "other media type", opts: PullOptions{MediaType: ocispec.MediaTypeImageLayerGzip}, wantGets: 1, wantFiles: []string{"site"}},
		{name: "extract", opts: PullOptions{Extract: true}, wantGets: 2, wantFiles: []string{"notes.txt", "site"}},
		// A manifest is its own target whatever the platform, but the
		// option still names the folder: the name depends on the options
		// alone, not on what the registry serves.
		{name: "platform", opts: PullOptions{Platform: &Platform{OS: "linux", Architecture: "amd64"}}, wantGets: 2, wantFiles: []string{"notes.txt", "site"}},
		{name: "platform variant", opts: PullOptions{Platform: &Platform{OS: "linux", Architecture: "amd64", Variant: "v2"}}, wantGets: 2, wantFiles: []string{"notes.txt", "site"}},
		{name: "no options again", wantGets: 2, wantFiles: []string{"notes.txt", "site"}},
		{name: "no options once more", wantGets: 0, wantFiles: []string{"notes.txt", "site"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			getsBefore := len(f.reqs("GET", "/blobs/"))
			res, err := repo.PullToVolume(context.Background(), "latest", root, st.opts)
			if err != nil {
				t.Fatalf("PullToVolume: %v", err)
			}
			if gets := len(f.reqs("GET", "/blobs/")) - getsBefore; gets != st.wantGets {
				t.Errorf("%d blob GETs, want %d", gets, st.wantGets)
			}
			if !slices.Equal(res.Files, st.wantFiles) {
				t.Errorf("result files %q, want %q", res.Files, st.wantFiles)
			}
			link, err := os.Readlink(filepath.Join(root, VolumeCurrentLink))
			if err != nil {
				t.Fatalf("reading current: %v", err)
			}
			dir, name := filepath.Split(link)
			if filepath.Clean(dir) != VolumeStoreDir {
				t.Fatalf("current -> %s, want a folder in %s", link, VolumeStoreDir)
			}
			noOptions := st.opts.MediaType == "" && st.opts.Platform == nil && !st.opts.Extract
			switch {
			case noOptions && name != hex:
				t.Errorf("version folder %s, want the digest hex %s", name, hex)
			case !noOptions && (!versionNameRE.MatchString(name) || !strings.HasPrefix(name, hex+"-")):
				t.Errorf("version folder %s, want %s-<12 hex>", name, hex)
			}
			// Equal options give equal names, other options other names.
			for _, s := range seen {
				if same := reflect.DeepEqual(s.opts, st.opts); same != (s.name == name) {
					t.Errorf("version folder %s for options %+v; %s for options %+v", name, st.opts, s.name, s.opts)
				}
			}
			seen = append(seen, named{st.opts, name})
			if got := volumeEntries(t, filepath.Join(root, VolumeCurrentLink)); !slices.Equal(got, st.wantFiles) {
				t.Errorf("current holds %q, want %q", got, st.wantFiles)
			}
		})
	}
}

// TestVersionName pins the version folder names: they are an on-disk
// format, and a change would make every volume download its version again.
func TestVersionName(t *testing.T) {
	const hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		opts PullOptions
		want string
	}{
		{"no options", PullOptions{}, hex},
		{"limits do not select content", PullOptions{MaxBytes: 1, MaxUnpackedBytes: 2}, hex},
		{"media type", PullOptions{MediaType: "text/plain"}, hex + "-f8a78d221ae6"},
		{"extract", PullOptions{Extract: true}, hex + "-943f60a9259f"},
		{"platform", PullOptions{Platform: &Platform{OS: "linux", Architecture: "arm", Variant: "v7"}}, hex + "-452fd2b98284"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := versionName(hex, tt.opts)
			if got != tt.want {
				t.Errorf("versionName = %s, want %s", got, tt.want)
			}
			if !isVersionName(got) {
				t.Errorf("isVersionName(%s) = false for a name versionName made", got)
			}
		})
	}
}

func TestIsVersionName(t *testing.T) {
	const hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		want bool
	}{
		{hex, true},
		{hex + "-0123456789ab", true},
		{"abc", true}, // any digest algorithm's hex
		{hex + "-0123456789a", false},
		{hex + "-0123456789abc", false},
		{hex + "-0123456789AB", false},
		{hex + "-", false},
		{hex + "-0123456789ab-0123456789ab", false},
		{"-0123456789ab", false},
		{"", false},
		{VolumeLockFile, false},
		{stagingPrefix + "123", false},
		{"ABCDEF", false},
	}
	for _, tt := range tests {
		if got := isVersionName(tt.name); got != tt.want {
			t.Errorf("isVersionName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// setLockWaiting installs fn as the lock-wait hook for the test.
func setLockWaiting(t *testing.T, fn func()) {
	t.Helper()
	var once sync.Once
	lockWaiting = func(string) { once.Do(fn) }
	t.Cleanup(func() { lockWaiting = nil })
}

// TestPullToVolumeWaitsForLock runs two pulls into one root: the second
// waits while the first, stalled in its download, holds the volume lock,
// and runs once the first is done; both end well and in order. A second
// pull of the same version finds it live once it has the lock.
func TestPullToVolumeWaitsForLock(t *testing.T) {
	tests := []struct {
		name      string
		secondTag string
		wantGets  int // blob GETs of both pulls
	}{
		{name: "other version", secondTag: "two", wantGets: 4},
		{name: "same version", secondTag: "one", wantGets: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			repo := f.repo(t)
			hexes := map[string]string{
				"one": pushVolumeVersion(t, f, "one", "v1"),
				"two": pushVolumeVersion(t, f, "two", "v2"),
			}
			root := filepath.Join(t.TempDir(), "vol")
			store := filepath.Join(root, VolumeStoreDir)

			v1Blob := "/blobs/" + digest.FromBytes([]byte("file v1")).String()
			stalled := make(chan struct{})
			release := make(chan struct{})
			var stallOnce sync.Once
			f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
				if strings.HasSuffix(r.URL.Path, v1Blob) {
					stallOnce.Do(func() { close(stalled) })
					<-release
				}
				return false
			})
			waiting := make(chan struct{})
			setLockWaiting(t, func() { close(waiting) })

			type outcome struct {
				res *PullResult
				err error
			}
			first, second := make(chan outcome, 1), make(chan outcome, 1)
			go func() {
				res, err := repo.PullToVolume(context.Background(), "one", root, PullOptions{})
				first <- outcome{res, err}
			}()
			select {
			case <-stalled:
			case o := <-first:
				t.Fatalf("first pull ended before its download: %v", o.err)
			}
			// The first pull downloads its two layers together: wait for
			// the other GET too, so that the count below is the second
			// pull's alone.
			for deadline := time.Now().Add(5 * time.Second); len(f.reqs("GET", "/blobs/")) < 2 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			gets := len(f.reqs("GET", "/blobs/"))
			go func() {
				res, err := repo.PullToVolume(context.Background(), tt.secondTag, root, PullOptions{})
				second <- outcome{res, err}
			}()
			select {
			case <-waiting:
			case o := <-second:
				close(release)
				<-first
				t.Fatalf("second pull ended while the first held the lock: %v", o.err)
			}
			if n := len(f.reqs("GET", "/blobs/")) - gets; n != 0 {
				t.Errorf("%d blob GETs while the second pull waited for the lock, want none", n)
			}
			if _, err := os.Lstat(filepath.Join(root, VolumeCurrentLink)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("current exists before any pull finished: %v", err)
			}

			close(release)
			for _, o := range []outcome{<-first, <-second} {
				if o.err != nil {
					t.Fatalf("PullToVolume: %v", o.err)
				}
			}
			if n := len(f.reqs("GET", "/blobs/")); n != tt.wantGets {
				t.Errorf("%d blob GETs in all, want %d", n, tt.wantGets)
			}
			wantLink := filepath.Join(VolumeStoreDir, hexes[tt.secondTag])
			if link, err := os.Readlink(filepath.Join(root, VolumeCurrentLink)); err != nil || link != wantLink {
				t.Errorf("current -> %q, %v; want %s, of the pull that waited", link, err, wantLink)
			}
			want := []string{hexes["one"], hexes[tt.secondTag], VolumeLockFile}
			want = slices.Compact(slices.Sorted(slices.Values(want)))
			if got := volumeEntries(t, store); !slices.Equal(got, want) {
				t.Errorf("%s holds %q, want %q", store, got, want)
			}
		})
	}
}

// TestPullToVolumeLockWaitCanceled checks that a pull waiting for the lock
// gives up when its context ends, says why, and leaves the volume alone.
func TestPullToVolumeLockWaitCanceled(t *testing.T) {
	f := newFakeRegistry(t)
	pushVolumeVersion(t, f, "latest", "v1")
	root := filepath.Join(t.TempDir(), "vol")
	store := filepath.Join(root, VolumeStoreDir)
	unlock, err := lockVolume(context.Background(), store)
	if err != nil {
		t.Fatalf("lockVolume: %v", err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	setLockWaiting(t, cancel)
	before := snapshot(t, root)

	_, err = f.repo(t).PullToVolume(ctx, "latest", root, PullOptions{})
	if err == nil {
		t.Fatal("PullToVolume succeeded while the lock was held")
	}
	if want := "another pull holds the lock on " + filepath.Join(store, VolumeLockFile); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	if n := len(f.reqs("GET", "/blobs/")); n != 0 {
		t.Errorf("%d blob GETs, want none", n)
	}
	if got := snapshot(t, root); !mapsEqual(got, before) {
		t.Errorf("volume changed:\nbefore %v\nafter  %v", before, got)
	}
}

// TestPullToVolumeRemovesLeftovers checks that staging folders and
// temporary links of killed pulls are removed, whether or not the pull
// downloads anything, and that nothing else is.
func TestPullToVolumeRemovesLeftovers(t *testing.T) {
	for _, upToDate := range []bool{false, true} {
		t.Run("up to date "+strconv.FormatBool(upToDate), func(t *testing.T) {
			f := newFakeRegistry(t)
			repo := f.repo(t)
			hex := pushVolumeVersion(t, f, "latest", "v1")
			root := filepath.Join(t.TempDir(), "vol")
			store := filepath.Join(root, VolumeStoreDir)
			if upToDate {
				if _, err := repo.PullToVolume(context.Background(), "latest", root, PullOptions{}); err != nil {
					t.Fatalf("first PullToVolume: %v", err)
				}
			}
			writeTree(t, root, map[string]string{
				".ocisync/" + stagingPrefix + "123/content/big.bin": "half a download",
				".ocisync/" + stagingPrefix + "456/blob-789":        "a blob",
				".ocisync/notes.txt":                                "not ours to remove",
				tmpLinkPrefix + "mine.txt":                          "a file of the user's, not a link",
			})
			if err := os.Symlink(filepath.Join(VolumeStoreDir, "gone"), filepath.Join(root, tmpLinkPrefix+"12-ab")); err != nil {
				t.Fatal(err)
			}

			if _, err := repo.PullToVolume(context.Background(), "latest", root, PullOptions{}); err != nil {
				t.Fatalf("PullToVolume: %v", err)
			}
			want := []string{hex, VolumeLockFile, "notes.txt"}
			slices.Sort(want)
			if got := volumeEntries(t, store); !slices.Equal(got, want) {
				t.Errorf("%s holds %q, want %q", store, got, want)
			}
			want = []string{VolumeStoreDir, tmpLinkPrefix + "mine.txt", VolumeCurrentLink}
			slices.Sort(want)
			if got := volumeEntries(t, root); !slices.Equal(got, want) {
				t.Errorf("%s holds %q, want %q", root, got, want)
			}
		})
	}
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPullToVolumePruneError checks that a cleanup failing after the swap
// comes back as a *PruneError with the result, the new version live.
func TestPullToVolumePruneError(t *testing.T) {
	errRemove := errors.New("injected removal failure")
	tests := []struct {
		name     string
		failOn   string // removals of paths containing this fail
		leftover bool   // plant a staging folder of a killed pull
	}{
		{name: "removing an old version", failOn: "old"},
		{name: "removing a staging leftover", failOn: stagingPrefix, leftover: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			repo := f.repo(t)
			root := filepath.Join(t.TempDir(), "vol")
			var hexes []string
			for _, v := range []string{"v1", "v2"} {
				hexes = append(hexes, pushVolumeVersion(t, f, "latest", v))
				if _, err := repo.PullToVolume(context.Background(), "latest", root, PullOptions{}); err != nil {
					t.Fatalf("PullToVolume %s: %v", v, err)
				}
			}
			hex3 := pushVolumeVersion(t, f, "latest", "v3")
			if tt.leftover {
				writeTree(t, root, map[string]string{".ocisync/" + stagingPrefix + "1/blob": "x"})
			}
			failOn := tt.failOn
			if failOn == "old" {
				failOn = hexes[0]
			}
			removeAll = func(p string) error {
				if strings.Contains(p, failOn) {
					return errRemove
				}
				return os.RemoveAll(p)
			}
			t.Cleanup(func() { removeAll = os.RemoveAll })

			res, err := repo.PullToVolume(context.Background(), "latest", root, PullOptions{})
			var pe *PruneError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a *PruneError", err)
			}
			if !errors.Is(err, errRemove) {
				t.Errorf("error %v does not wrap the removal failure", err)
			}
			if !strings.Contains(err.Error(), failOn) {
				t.Errorf("error %q does not name the path that could not be removed", err)
			}
			if res == nil || res.Target.Root.Digest.Encoded() != hex3 {
				t.Fatalf("result %+v, want one for the new version %s", res, hex3)
			}
			link, err := os.Readlink(filepath.Join(root, VolumeCurrentLink))
			if err != nil || link != filepath.Join(VolumeStoreDir, hex3) {
				t.Errorf("current -> %q, %v; want the new version %s", link, err, hex3)
			}
		})
	}
}
