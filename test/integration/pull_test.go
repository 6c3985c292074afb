package integration

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// Media types the ORAS-pushed fixture uses, so --media-type can select.
const (
	typeText   = "text/plain"
	typeRandom = "application/vnd.ocisync.test.random"
	typeTree   = "application/vnd.ocisync.test.tree.v1.tar+gzip"
	typeBundle = "application/vnd.ocisync.test.bundle.v1"

	unpackAnnotation = "io.deis.oras.content.unpack"
	digestAnnotation = "io.deis.oras.content.digest"
)

// fixturePaths are oras push arguments for the whole fixture with custom
// media types; the folder is packed by ORAS as tar+gzip.
var fixturePaths = []string{"hello.txt:" + typeText, "data.bin:" + typeRandom, "tree/:" + typeTree}

// ocisyncPull runs `ocisync pull` with the registry flags plus extra and
// returns the result without judging it.
func ocisyncPull(t *testing.T, oc *registrytest.CLI, reg *registrytest.Registry, config string, extra []string, ref, dir string) registrytest.Result {
	t.Helper()
	args := append(append(append([]string{"pull"}, reg.OcisyncFlags(config)...), extra...), ref, dir)
	return oc.Run(t, args...)
}

// mustPullDigest runs a pull that must succeed and returns the digest on
// its last stdout line.
func mustPullDigest(t *testing.T, oc *registrytest.CLI, reg *registrytest.Registry, config string, extra []string, ref, dir string) string {
	t.Helper()
	res := ocisyncPull(t, oc, reg, config, extra, ref, dir)
	if res.ExitCode != 0 {
		t.Fatalf("ocisync %v: exit %d\nstdout:\n%s\nstderr:\n%s", res.Args, res.ExitCode, res.Stdout, res.Stderr)
	}
	return res.LastLine()
}

// assertOnlyEntry checks that parent holds exactly name: nothing (such as
// a temporary folder) was left beside the pulled folder.
func assertOnlyEntry(t *testing.T, parent, name string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{name}) {
		t.Errorf("%s holds %q, want only %q", parent, names, name)
	}
}

// TestPullOrasArtifact pushes files and a folder with oras and pulls them
// with ocisync by tag, digest and tag@digest, and with media-type filters.
func TestPullOrasArtifact(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	fx := newFixture(t)
	want := snapshot(t, fx.src)
	repo := repoName(t)
	digest := orasPush(t, oras, reg, "", fx.src, reg.Ref(repo, "v1"), []string{"--artifact-type", typeBundle}, fixturePaths...)

	// Preconditions: ORAS produced what the cases rely on, and its own
	// pull gives back the source tree.
	m := orasManifest(t, oras, reg, "", reg.Ref(repo, digest))
	layers := layerByTitle(m)
	if l := layers["tree"]; l.MediaType != typeTree || l.Annotations[unpackAnnotation] != "true" {
		t.Fatalf("oras packed tree/ as %+v, want media type %s and %s=true", l, typeTree, unpackAnnotation)
	}
	orasOut := filepath.Join(t.TempDir(), "oras")
	orasPull(t, oras, reg, "", orasOut, reg.Ref(repo, "v1"))
	assertTree(t, "oras pull", orasOut, want)

	tests := []struct {
		name  string
		ref   string
		extra []string
		want  tree
	}{
		{"by tag", reg.Ref(repo, "v1"), nil, want},
		{"by digest", reg.Ref(repo, digest), nil, want},
		{"by tag and digest", reg.Ref(repo, "v1@"+digest), nil, want},
		{"media type of a file", reg.Ref(repo, "v1"), []string{"--media-type", typeRandom}, want.subtree("data.bin")},
		{"media type of the folder", reg.Ref(repo, "v1"), []string{"--media-type", typeTree}, want.subtree("tree")},
		{"media type of the text file", reg.Ref(repo, "v1"), []string{"--media-type", typeText}, want.subtree("hello.txt")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			got := mustPullDigest(t, oc, reg, "", tt.extra, tt.ref, out)
			if got != digest {
				t.Errorf("last stdout line %q, want the manifest digest %s", got, digest)
			}
			assertTree(t, "ocisync pull", out, tt.want)
			assertOnlyEntry(t, parent, "out")
		})
	}
}

// TestPullIntoExistingEmptyDir pulls into a folder that already exists.
func TestPullIntoExistingEmptyDir(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	fx := newFixture(t)
	ref := reg.Ref(repoName(t), "v1")
	orasPush(t, oras, reg, "", fx.src, ref, nil, "hello.txt", "tree/")
	out := t.TempDir()
	mustPullDigest(t, registrytest.Ocisync(t), reg, "", nil, ref, out)
	assertTree(t, "ocisync pull", out, snapshot(t, fx.src).subtree("hello.txt", "tree"))
}

// TestPullNestedTitle: oras keeps a relative path as the title
// ("docs/guide/intro.md"); ocisync, like oras pull, recreates the folders.
func TestPullNestedTitle(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	src := filepath.Join(t.TempDir(), "src")
	writeFiles(t, src, map[string][]byte{
		"docs/guide/intro.md": []byte("# intro\n"),
		"top.txt":             []byte("top\n"),
	})
	ref := reg.Ref(repoName(t), "v1")
	orasPush(t, oras, reg, "", src, ref, nil, "docs/guide/intro.md", "top.txt")
	if _, ok := layerByTitle(orasManifest(t, oras, reg, "", ref))["docs/guide/intro.md"]; !ok {
		t.Fatalf("precondition: oras did not keep the nested title docs/guide/intro.md")
	}
	orasOut := filepath.Join(t.TempDir(), "oras")
	orasPull(t, oras, reg, "", orasOut, ref)
	assertTree(t, "oras pull", orasOut, snapshot(t, src))

	out := filepath.Join(t.TempDir(), "out")
	mustPullDigest(t, registrytest.Ocisync(t), reg, "", nil, ref, out)
	assertTree(t, "ocisync pull", out, snapshot(t, src))
}

// TestPullPlatform selects one manifest of an index with --platform.
func TestPullPlatform(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	repo := repoName(t)
	src := t.TempDir()
	for _, p := range []string{"amd64", "arm64"} {
		dir := filepath.Join(src, p)
		writeFiles(t, dir, map[string][]byte{"platform.txt": []byte("built for linux/" + p + "\n")})
		orasPush(t, oras, reg, "", dir, reg.Ref(repo, "linux-"+p), []string{"--artifact-platform", "linux/" + p}, "platform.txt")
	}
	oras.MustRun(t, append(append([]string{"manifest", "index", "create"}, reg.OrasFlags("")...),
		reg.Ref(repo, "multi"), "linux-amd64", "linux-arm64")...)
	index := orasResolve(t, oras, reg, "", reg.Ref(repo, "multi"))

	oc := registrytest.Ocisync(t)
	for _, p := range []string{"arm64", "amd64"} {
		t.Run(p, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			got := mustPullDigest(t, oc, reg, "", []string{"--platform", "linux/" + p}, reg.Ref(repo, "multi"), out)
			// The reference resolves to the index; like `oras resolve`,
			// ocisync reports that digest.
			if got != index {
				t.Errorf("last stdout line %q, want the index digest %s", got, index)
			}
			assertTree(t, "ocisync pull --platform linux/"+p, out, snapshot(t, filepath.Join(src, p)))
		})
	}
}
