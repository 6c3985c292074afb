package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

var versionedLayout = []string{"--layout", "versioned"}

// assertCurrent checks that root/current links to .ocisync/<hex of
// digest> and that it holds what oras pull wrote for that digest.
func assertCurrent(t *testing.T, root, digest string, want tree) {
	t.Helper()
	link, err := os.Readlink(filepath.Join(root, "current"))
	if err != nil {
		t.Fatalf("reading %s/current: %v", root, err)
	}
	hex := strings.TrimPrefix(digest, "sha256:")
	if wantLink := filepath.Join(".ocisync", hex); link != wantLink {
		t.Errorf("current -> %s, want %s", link, wantLink)
	}
	// Walked through the link, as a reader of the volume sees it.
	assertTree(t, "current", filepath.Join(root, "current")+string(filepath.Separator), want)
}

// storeEntries lists root/.ocisync: the version folders and the lock file.
func storeEntries(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, ".ocisync"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestPullVersionedLayout pushes a folder with `oras push ref ./dir`,
// pulls it with --layout versioned and checks current matches oras pull;
// then moves the tag and checks current is swapped and the previous
// version kept.
func TestPullVersionedLayout(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	ref := reg.Ref(repoName(t), "live")
	root := filepath.Join(t.TempDir(), "volume")

	var hexes []string
	for i, name := range []string{"first", "second"} {
		fx := newFixture(t)
		d1 := orasPush(t, oras, reg, "", fx.src, ref, nil, "./tree", "hello.txt")
		orasOut := filepath.Join(t.TempDir(), "oras-"+name)
		orasPull(t, oras, reg, "", orasOut, ref)
		want := snapshot(t, orasOut)
		if want["tree/sub/deeper/c.json"] == "" {
			t.Fatalf("oras pull of %s lacks tree/sub/deeper/c.json: %v", name, want)
		}

		got := mustPullDigest(t, oc, reg, "", versionedLayout, ref, root)
		if got != d1 {
			t.Fatalf("%s pull printed digest %q last, want %s", name, got, d1)
		}
		assertCurrent(t, root, d1, want)
		hexes = append(hexes, strings.TrimPrefix(d1, "sha256:"))
		wantStore := append(slices.Clone(hexes), "lock")
		slices.Sort(wantStore)
		if names := storeEntries(t, root); !slices.Equal(names, wantStore) {
			t.Errorf("after pull %d, .ocisync holds %q, want %q", i+1, names, wantStore)
		}
	}
}

// TestPullVersionedLayoutRefusals checks the CLI's refusals for the
// versioned layout: one line on stderr, and the folder left as it was.
func TestPullVersionedLayoutRefusals(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	fx := newFixture(t)
	ref := reg.Ref(repoName(t), "v1")
	orasPush(t, oras, reg, "", fx.src, ref, nil, "hello.txt")

	tests := []struct {
		name     string
		extra    []string
		setup    func(t *testing.T, root string)
		wantCode int
		wantErr  string
	}{
		{"unknown layout", []string{"--layout", "flat"}, nil, 2, "--layout"},
		{"current is a folder", versionedLayout, func(t *testing.T, root string) {
			writeFiles(t, root, map[string][]byte{"current/mine.txt": []byte("keep")})
		}, 1, "not a symlink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := filepath.Join(t.TempDir(), "volume")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(t, root)
			}
			before := snapshot(t, root)
			res := ocisyncPull(t, oc, reg, "", tt.extra, ref, root)
			if res.ExitCode != tt.wantCode {
				t.Fatalf("ocisync %v: exit %d, want %d\nstderr: %s", res.Args, res.ExitCode, tt.wantCode, res.Stderr)
			}
			assertOneLineError(t, res, []string{tt.wantErr})
			assertTree(t, "volume after a refused pull", root, before)
		})
	}
}
