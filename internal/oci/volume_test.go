package oci

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
				// The first layer is then staged when the failure comes.
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
			if gets != st.wantGets {
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
			var want []string
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
