package integration

import (
	"os"
	"path/filepath"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// TestPullFailureLeavesDirUntouched: a failed pull exits non-zero with one
// line on stderr and leaves DIR (and its parent) exactly as they were,
// whether the failure comes before any download (missing tag) or after
// some layers were fetched (a corrupted blob).
func TestPullFailureLeavesDirUntouched(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)

	repo := repoName(t)
	fx := newFixture(t)
	orasPush(t, oras, reg, "", fx.src, reg.Ref(repo, "good"), nil, "hello.txt", "tree/")

	// An artifact whose large layer the registry serves corrupted: same
	// size, different bytes, so only the digest check can catch it.
	src := t.TempDir()
	writeFiles(t, src, map[string][]byte{
		"a.txt":   []byte("new content of a.txt\n"),
		"big.bin": randomBytes(t, 2*mib),
		"z.txt":   []byte("new content of z.txt\n"),
	})
	corruptRef := reg.Ref(repo, "corrupt")
	orasPush(t, oras, reg, "", src, corruptRef, nil, "a.txt", "big.bin", "z.txt")
	big := layerByTitle(orasManifest(t, oras, reg, "", corruptRef))["big.bin"]
	corruptFile(t, reg.BlobPath(big.Digest.String()))

	notFound := []string{"not found", "unknown"}
	tests := []struct {
		name    string
		ref     string
		exists  bool // DIR exists, with files, before the pull
		wantErr []string
	}{
		{"missing tag", reg.Ref(repo, "no-such-tag"), true, notFound},
		{"missing tag, DIR absent", reg.Ref(repo, "no-such-tag"), false, notFound},
		{"missing repository", reg.Ref("it/never-pushed", "v1"), true, notFound},
		{"missing digest", reg.Ref(repo, "sha256:"+"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), true, notFound},
		{"corrupted blob", corruptRef, true, []string{"digest"}},
		{"corrupted blob, DIR absent", corruptRef, false, []string{"digest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			if tt.exists {
				writeFiles(t, out, map[string][]byte{
					"sentinel.txt":    []byte("must survive\n"),
					"a.txt":           []byte("old content of a.txt\n"),
					"keep/nested.txt": []byte("nested\n"),
				})
			}
			before := snapshot(t, parent)
			res := ocisyncPull(t, oc, reg, "", nil, tt.ref, out)
			assertOneLineErrorOrSuccess(t, res, tt.wantErr)
			assertTree(t, "DIR and its parent after the failed pull", parent, before)
		})
	}
}

// TestPullRefusesUnsafeTitles: titles that would write outside DIR (which
// oras push produces with --disable-path-validation) make the pull fail
// without writing anything, as oras pull does.
func TestPullRefusesUnsafeTitles(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	work := t.TempDir()
	writeFiles(t, work, map[string][]byte{
		"escape.txt":     []byte("escaped\n"),
		"inner/ok.txt":   []byte("fine\n"),
		"abs/victim.txt": []byte("victim\n"),
	})
	victim := filepath.Join(work, "abs", "victim.txt")

	relRef := reg.Ref(repoName(t), "relative")
	orasPush(t, oras, reg, "", filepath.Join(work, "inner"), relRef, []string{"--disable-path-validation"}, "ok.txt", "../escape.txt")
	absRef := reg.Ref(repoName(t), "absolute")
	orasPush(t, oras, reg, "", work, absRef, []string{"--disable-path-validation"}, "inner/ok.txt", victim)
	// Remove the source so a write through the absolute title shows.
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, ref, title string
	}{
		{"parent-relative title", relRef, "../escape.txt"},
		{"absolute title", absRef, victim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			res := ocisyncPull(t, oc, reg, "", nil, tt.ref, filepath.Join(parent, "out"))
			assertOneLineErrorOrSuccess(t, res, []string{tt.title, "path", "traversal", "outside"})
			assertTree(t, "parent of DIR", parent, tree{})
			if _, err := os.Lstat(victim); !os.IsNotExist(err) {
				t.Errorf("%s was written through an absolute title (stat: %v)", victim, err)
			}
		})
	}
}

// corruptFile flips bytes in the middle of path, keeping its size.
func corruptFile(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read blob to corrupt: %v", err)
	}
	for i := len(data) / 2; i < len(data)/2+16 && i < len(data); i++ {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("corrupt blob: %v", err)
	}
}
