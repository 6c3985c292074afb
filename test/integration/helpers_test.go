package integration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

const mib = 1 << 20

// fixture is a folder of inputs to push: src holds exactly what a pull of
// the pushed artifact must reproduce.
type fixture struct {
	src string
}

// newFixture writes hello.txt (text), data.bin (3 MiB of random bytes) and
// the folder tree/ (files in nested folders and an empty folder). Content
// is unique per call so blobs never collide across tests.
func newFixture(t *testing.T) fixture {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	writeFiles(t, src, map[string][]byte{
		"hello.txt":              []byte("hello from the ocisync integration tests\n" + t.Name() + "\n"),
		"data.bin":               randomBytes(t, 3*mib),
		"tree/a.txt":             []byte("a file at the top of the folder\n"),
		"tree/sub/b.bin":         randomBytes(t, 64<<10),
		"tree/sub/deeper/c.json": []byte(`{"nested": true}` + "\n"),
	})
	if err := os.MkdirAll(filepath.Join(src, "tree", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	return fixture{src: src}
}

func writeFiles(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// tree maps slash-separated relative paths to "dir", "file <size>
// <sha256>" or "symlink -> target".
type tree map[string]string

// snapshot records every entry under dir (not dir itself); a missing dir
// gives nil.
func snapshot(t *testing.T, dir string) tree {
	t.Helper()
	if _, err := os.Lstat(dir); os.IsNotExist(err) {
		return nil
	}
	out := tree{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "symlink -> " + target
		case d.IsDir():
			out[rel] = "dir"
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fileEntry(data)
		default:
			out[rel] = "special " + d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

// snapshotAs records path (a file or a folder) as it would appear in a
// pulled folder under the name title.
func snapshotAs(t *testing.T, path, title string) tree {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	out := tree{}
	if !st.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out[title] = fileEntry(data)
		return out
	}
	out[title] = "dir"
	for k, v := range snapshot(t, path) {
		out[title+"/"+k] = v
	}
	return out
}

func fileEntry(data []byte) string {
	sum := sha256.Sum256(data)
	return fmt.Sprintf("file %d %s", len(data), hex.EncodeToString(sum[:8]))
}

// diff describes how got differs from want, "" when equal.
func (tr tree) diff(got tree) string {
	want := tr
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		w, inW := want[k]
		g, inG := got[k]
		switch {
		case !inG:
			fmt.Fprintf(&b, "  missing %s (%s)\n", k, w)
		case !inW:
			fmt.Fprintf(&b, "  unexpected %s (%s)\n", k, g)
		case w != g:
			fmt.Fprintf(&b, "  %s: got %s, want %s\n", k, g, w)
		}
	}
	return b.String()
}

// assertTree fails t unless dir holds exactly want.
func assertTree(t *testing.T, what, dir string, want tree) {
	t.Helper()
	if d := want.diff(snapshot(t, dir)); d != "" {
		t.Errorf("%s (%s) differs:\n%s", what, dir, d)
	}
}

// subtree returns the entries of tr selected by the top-level names keep,
// as a pull with a media-type filter would produce.
func (tr tree) subtree(keep ...string) tree {
	out := tree{}
	for k, v := range tr {
		top, _, _ := strings.Cut(k, "/")
		if slices.Contains(keep, top) {
			out[k] = v
		}
	}
	return out
}

var digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// orasResolve returns the manifest digest oras resolves ref to.
func orasResolve(t *testing.T, oras *registrytest.CLI, reg *registrytest.Registry, config, ref string) string {
	t.Helper()
	res := oras.MustRun(t, append(append([]string{"resolve"}, reg.OrasFlags(config)...), ref)...)
	d := res.LastLine()
	if !digestRE.MatchString(d) {
		t.Fatalf("oras resolve %s printed %q, want a sha256 digest", ref, res.Stdout)
	}
	return d
}

// orasManifest fetches and decodes the manifest of ref with oras.
func orasManifest(t *testing.T, oras *registrytest.CLI, reg *registrytest.Registry, config, ref string) ocispec.Manifest {
	t.Helper()
	res := oras.MustRun(t, append(append([]string{"manifest", "fetch"}, reg.OrasFlags(config)...), ref)...)
	var m ocispec.Manifest
	if err := json.Unmarshal([]byte(res.Stdout), &m); err != nil {
		t.Fatalf("decode manifest of %s: %v\n%s", ref, err, res.Stdout)
	}
	return m
}

// orasPush pushes paths (relative to dir, with optional :mediatype) to ref
// and returns the manifest digest.
func orasPush(t *testing.T, oras *registrytest.CLI, reg *registrytest.Registry, config, dir, ref string, extra []string, paths ...string) string {
	t.Helper()
	args := append(append(append([]string{"push"}, reg.OrasFlags(config)...), extra...), ref)
	oras.In(dir).MustRun(t, append(args, paths...)...)
	return orasResolve(t, oras, reg, config, ref)
}

// orasPull pulls ref into dir.
func orasPull(t *testing.T, oras *registrytest.CLI, reg *registrytest.Registry, config, dir, ref string) {
	t.Helper()
	oras.MustRun(t, append(append([]string{"pull"}, reg.OrasFlags(config)...), "-o", dir, ref)...)
}

// layerByTitle indexes a manifest's layers by their title annotation.
func layerByTitle(m ocispec.Manifest) map[string]ocispec.Descriptor {
	out := map[string]ocispec.Descriptor{}
	for _, l := range m.Layers {
		out[l.Annotations[ocispec.AnnotationTitle]] = l
	}
	return out
}

// assertOneLineError checks a failed command's stderr: exactly one line,
// containing one of wantAny (case-insensitive), and none of the secrets.
func assertOneLineError(t *testing.T, res registrytest.Result, wantAny []string, secrets ...string) {
	t.Helper()
	lines := res.StderrLines()
	if len(lines) != 1 {
		t.Errorf("stderr has %d lines, want 1:\n%s", len(lines), res.Stderr)
	}
	low := strings.ToLower(res.Stderr)
	found := false
	for _, w := range wantAny {
		if strings.Contains(low, strings.ToLower(w)) {
			found = true
		}
	}
	if !found {
		t.Errorf("stderr %q mentions none of %q", strings.TrimSpace(res.Stderr), wantAny)
	}
	assertNoSecrets(t, res, secrets...)
}

// assertNoSecrets fails t if stdout or stderr contains one of secrets.
func assertNoSecrets(t *testing.T, res registrytest.Result, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && (strings.Contains(res.Stderr, s) || strings.Contains(res.Stdout, s)) {
			// Don't print the secret itself, nor the output holding it.
			t.Errorf("ocisync %v: output reveals a credential (%d chars)", res.Args, len(s))
		}
	}
}

// Special values of dockerConfig's who.
const (
	anonymous          = "(anonymous)"      // a config without credentials
	wrongPassword      = "(wrong password)" // the writer with a wrong password
	identityToken      = "(identity token)" // prefix of "(identity token)user"
	wrongPasswordValue = "Wr0ng-pa55-Integration"
)

// dockerConfig writes a docker config for r: a user name's credentials or
// one of the special values above.
func dockerConfig(t *testing.T, r *registrytest.Registry, who string) string {
	t.Helper()
	switch who {
	case anonymous:
		return r.WriteDockerConfig(t, "")
	case wrongPassword:
		return r.WriteDockerConfigCredential(t, registrytest.Credential{Username: writer.Name, Password: wrongPasswordValue})
	}
	if user, ok := strings.CutPrefix(who, identityToken); ok {
		return r.WriteDockerConfigIdentityToken(t, user)
	}
	return r.WriteDockerConfig(t, who)
}

// assertRefreshGrant fails t unless the token issuer answered an OAuth2
// refresh_token grant for user: proof the identity token was used.
func assertRefreshGrant(t *testing.T, r *registrytest.Registry, user string) {
	t.Helper()
	for _, q := range r.Tokens.Requests() {
		if q.GrantType == "refresh_token" && q.User == user && q.Status == 200 {
			return
		}
	}
	t.Errorf("the token issuer answered no refresh_token grant for %s", user)
}
