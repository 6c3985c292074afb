package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci"
)

const testRepo = "test/repo"

// fakeRegistry serves artifacts from memory to the CLI under test.
type fakeRegistry struct {
	host string
	// user and pass, when set, are the Basic credential every request
	// needs.
	user, pass string
	// hang makes every request wait until the client gives up.
	hang bool

	mu      sync.Mutex
	content map[string]served // path under /v2/<repo>/ -> response
}

type served struct {
	mediaType string
	body      []byte
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{content: map[string]served{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.host = srv.Listener.Addr().String()
	return f
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.hang {
		<-r.Context().Done()
		return
	}
	if f.user != "" {
		if u, p, ok := r.BasicAuth(); !ok || u != f.user || p != f.pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	f.mu.Lock()
	c, ok := f.content[strings.TrimPrefix(r.URL.Path, "/v2/"+testRepo+"/")]
	f.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", c.mediaType)
	if strings.Contains(r.URL.Path, "/manifests/") {
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(c.body).String())
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(c.body))
}

// push stores an artifact of one text file per entry of files (title ->
// body) under tag and returns its manifest digest.
func (f *fakeRegistry) push(t *testing.T, tag string, files map[string]string) digest.Digest {
	t.Helper()
	var layers []testLayer
	for title, body := range files {
		layers = append(layers, testLayer{title: title, mediaType: "text/plain", body: []byte(body)})
	}
	return f.pushLayers(t, tag, layers)
}

type testLayer struct {
	title, mediaType string
	body             []byte
	unpack           bool // ORAS's annotation for a folder packed as tar+gzip
}

// pushLayers stores an artifact of layers under tag and returns its
// manifest digest.
func (f *fakeRegistry) pushLayers(t *testing.T, tag string, layers []testLayer) digest.Digest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.content["blobs/"+ocispec.DescriptorEmptyJSON.Digest.String()] = served{"application/octet-stream", ocispec.DescriptorEmptyJSON.Data}
	var descs []ocispec.Descriptor
	for _, l := range layers {
		d := digest.FromBytes(l.body)
		f.content["blobs/"+d.String()] = served{"application/octet-stream", l.body}
		desc := ocispec.Descriptor{
			MediaType:   l.mediaType,
			Digest:      d,
			Size:        int64(len(l.body)),
			Annotations: map[string]string{ocispec.AnnotationTitle: l.title},
		}
		if l.unpack {
			desc.Annotations[oci.AnnotationUnpack] = "true"
		}
		descs = append(descs, desc)
	}
	m, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.DescriptorEmptyJSON,
		Layers:    descs,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(m)
	f.content["manifests/"+tag] = served{ocispec.MediaTypeImageManifest, m}
	f.content["manifests/"+d.String()] = served{ocispec.MediaTypeImageManifest, m}
	return d
}

// tarGz packs files (slash path -> body) under the folder name as ORAS
// packs a folder.
func tarGz(t *testing.T, name string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	for p, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name + "/" + p, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (f *fakeRegistry) ref(tag string) string { return f.host + "/" + testRepo + ":" + tag }

// writeJSON writes v as JSON to a new file in dir and returns its path.
func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func basicAuth(user, pass string) map[string]string {
	return map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}
}

// TestPullDockerConfigs pulls from a registry that needs a password with
// sets of --docker-config files, as the sync Job passes one per pull
// Secret: merged in order, the first with credentials for a registry wins.
func TestPullDockerConfigs(t *testing.T) {
	const user, pass, wrong = "puller", "Pa55-cli-test", "Wr0ng-cli-test"
	f := newFakeRegistry(t)
	f.user, f.pass = user, pass
	f.push(t, "v1", map[string]string{"hello.txt": "hello"})

	dir := t.TempDir()
	host, port, _ := strings.Cut(f.host, ":")
	wildcard := strings.Join(append(strings.Split(host, ".")[:3], "*"), ".") + ":" + port
	files := map[string]string{
		"good":          writeJSON(t, dir, "good.json", map[string]any{"auths": map[string]any{f.host: basicAuth(user, pass)}}),
		"wrong":         writeJSON(t, dir, "wrong.json", map[string]any{"auths": map[string]any{f.host: basicAuth(user, wrong)}}),
		"legacy good":   writeJSON(t, dir, "legacy-good.dockercfg", map[string]any{f.host: basicAuth(user, pass)}),
		"legacy wrong":  writeJSON(t, dir, "legacy-wrong.dockercfg", map[string]any{"http://" + f.host: basicAuth(user, wrong)}),
		"other host":    writeJSON(t, dir, "other.json", map[string]any{"auths": map[string]any{"other.example.com": basicAuth(user, wrong)}}),
		"wildcard":      writeJSON(t, dir, "wildcard.json", map[string]any{"auths": map[string]any{wildcard: basicAuth(user, wrong)}}),
		"wildcard good": writeJSON(t, dir, "wildcard-good.json", map[string]any{"auths": map[string]any{wildcard: basicAuth(user, pass)}}),
		"missing":       filepath.Join(dir, "missing.json"),
		"no such entry": writeJSON(t, dir, "empty.json", map[string]any{"auths": map[string]any{}}),
	}
	envGood := t.TempDir()
	if err := os.WriteFile(filepath.Join(envGood, "config.json"), []byte(`{"auths": {"`+f.host+`": {"auth": "`+basicAuth(user, pass)["auth"]+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		configs   []string // keys of files, in flag order
		envConfig string   // $DOCKER_CONFIG; empty: a folder without config.json
		wantCode  int
		wantErr   string
	}{
		{name: "config.json form", configs: []string{"good"}},
		{name: "legacy .dockercfg form", configs: []string{"legacy good"}},
		{name: "first file wins over a later wrong one", configs: []string{"good", "wrong"}},
		{name: "first file wins even when wrong", configs: []string{"wrong", "good"}, wantCode: 1, wantErr: "check the credentials"},
		{name: "first legacy file wins even when wrong", configs: []string{"legacy wrong", "good"}, wantCode: 1, wantErr: "check the credentials"},
		{name: "files without the registry are passed over", configs: []string{"other host", "no such entry", "good"}},
		{name: "an exact registry name beats an earlier wildcard", configs: []string{"wildcard", "good"}},
		{name: "a wildcard applies without an exact name", configs: []string{"other host", "wildcard good"}},
		{name: "a missing file fails the pull", configs: []string{"good", "missing"}, wantCode: 1, wantErr: "missing.json"},
		{name: "none given reads $DOCKER_CONFIG", envConfig: envGood},
		{name: "none given and no default is anonymous", wantCode: 1, wantErr: "check the credentials"},
		{name: "given files replace $DOCKER_CONFIG", configs: []string{"wrong"}, envConfig: envGood, wantCode: 1, wantErr: "check the credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.envConfig
			if env == "" {
				env = t.TempDir()
			}
			t.Setenv("DOCKER_CONFIG", env)
			root := filepath.Join(t.TempDir(), "vol")
			args := []string{"pull", "--layout", "versioned", "--plain-http"}
			for _, c := range tt.configs {
				args = append(args, "--docker-config", files[c])
			}
			args = append(args, "--timeout", "1m", f.ref("v1"), root)
			var stdout, stderr bytes.Buffer
			code := Run(args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			for _, out := range []string{stdout.String(), stderr.String()} {
				if strings.Contains(out, pass) || strings.Contains(out, wrong) {
					t.Errorf("output reveals a password: %q", out)
				}
			}
			if tt.wantCode != 0 {
				assertOneLine(t, stderr.String(), tt.wantErr)
				return
			}
			data, err := os.ReadFile(filepath.Join(root, oci.VolumeCurrentLink, "hello.txt"))
			if err != nil || string(data) != "hello" {
				t.Errorf("current/hello.txt = %q, %v; want %q", data, err, "hello")
			}
		})
	}
}

// assertOneLine checks that stderr is one line containing want.
func assertOneLine(t *testing.T, stderr, want string) {
	t.Helper()
	if strings.Count(strings.TrimRight(stderr, "\n"), "\n") != 0 || stderr == "" {
		t.Errorf("stderr is not one line: %q", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not contain %q", stderr, want)
	}
}

// TestRegistryFlagsTimeout checks that --timeout sets the deadline of the
// command and lifts the client's per-call limit along with it.
func TestRegistryFlagsTimeout(t *testing.T) {
	tests := []struct {
		args         []string
		wantDeadline bool
		wantTimeout  time.Duration // oci.Options.Timeout; 0 is the client default
	}{
		{nil, false, 0},
		{[]string{"--timeout", "0"}, false, 0},
		{[]string{"--timeout", "2h"}, true, 2 * time.Hour},
		{[]string{"--timeout", "90s"}, true, 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var rf registryFlags
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			rf.register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			opts, err := rf.options()
			if err != nil {
				t.Fatal(err)
			}
			if opts.Timeout != tt.wantTimeout {
				t.Errorf("client timeout %s, want %s", opts.Timeout, tt.wantTimeout)
			}
			ctx, stop := rf.context()
			defer stop()
			if _, ok := ctx.Deadline(); ok != tt.wantDeadline {
				t.Errorf("context has a deadline: %v, want %v", ok, tt.wantDeadline)
			}
		})
	}
}

// TestTimeoutEndsCommand runs pull and push against a registry that never
// answers: --timeout ends them with an error that names the flag.
func TestTimeoutEndsCommand(t *testing.T) {
	f := newFakeRegistry(t)
	f.hang = true
	file := filepath.Join(t.TempDir(), "a.txt")
	if err := os.WriteFile(file, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"pull", "--plain-http", "--timeout", "100ms", f.ref("v1"), t.TempDir()},
		{"pull", "--plain-http", "--layout", "versioned", "--timeout", "100ms", f.ref("v1"), t.TempDir()},
		{"push", "--plain-http", "--timeout", "100ms", f.ref("v1"), file},
	} {
		t.Run(strings.Join(args[:len(args)-2], " "), func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", t.TempDir())
			var stdout, stderr bytes.Buffer
			if code := Run(args, &stdout, &stderr); code != 1 {
				t.Fatalf("exit code %d, want 1 (stderr %q)", code, stderr.String())
			}
			assertOneLine(t, stderr.String(), "--timeout 100ms ran out")
		})
	}
}

// TestReportPull checks how pull's outcome becomes output and exit code:
// a failed cleanup after a successful swap is a warning.
func TestReportPull(t *testing.T) {
	d := digest.FromString("manifest")
	res := &oci.PullResult{Target: &oci.Target{Root: ocispec.Descriptor{Digest: d}}, Files: []string{"a.txt"}}
	prune := &oci.PruneError{Live: "reg/repo@" + d.String(), Link: "/data/current", Err: errors.New("removing old version /data/.ocisync/abc: permission denied\nsecond line")}
	tests := []struct {
		name       string
		res        *oci.PullResult
		err        error
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"success", res, nil, 0, "Pulled a.txt\n" + d.String() + "\n", ""},
		{"prune failed", res, prune, 0, "Pulled a.txt\n" + d.String() + "\n", "ocisync pull: warning: reg/repo@" + d.String() + " is live in /data/current"},
		{"prune failed, wrapped", res, errors.Join(prune), 0, d.String(), "warning"},
		{"prune error without a result", nil, prune, 1, "", "ocisync pull: reg/repo"},
		{"other error", nil, errors.New("boom"), 1, "", "ocisync pull: boom"},
		{"other error with a result", res, errors.New("boom"), 1, "", "ocisync pull: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := reportPull(&stdout, &stderr, tt.res, tt.err); code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			if tt.wantStdout == "" && stdout.Len() != 0 || !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q, want it to hold %q", stdout.String(), tt.wantStdout)
			}
			if tt.wantStderr == "" {
				if stderr.Len() != 0 {
					t.Errorf("stderr %q, want none", stderr.String())
				}
				return
			}
			assertOneLine(t, stderr.String(), tt.wantStderr)
		})
	}
}

// TestPullPruneWarning makes removing an old version fail with a folder
// the user may not write to: the pull still exits 0, with a warning.
func TestPullPruneWarning(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root, which permissions do not stop; TestReportPull covers the exit code")
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	f := newFakeRegistry(t)
	root := filepath.Join(t.TempDir(), "vol")
	var digests []digest.Digest
	for i, tag := range []string{"v1", "v2", "v3"} {
		digests = append(digests, f.push(t, tag, map[string]string{"hello.txt": "hello " + tag}))
		if i == 2 {
			// v1 is the version the pull of v3 removes.
			old := filepath.Join(root, oci.VolumeStoreDir, digests[0].Encoded())
			if err := os.Chmod(old, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(old, 0o755) })
		}
		var stdout, stderr bytes.Buffer
		code := Run([]string{"pull", "--plain-http", "--layout", "versioned", f.ref(tag), root}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("pull %s: exit code %d, want 0 (stderr %q)", tag, code, stderr.String())
		}
		if got := strings.TrimSpace(stdout.String()); !strings.HasSuffix(got, "\n"+digests[i].String()) {
			t.Errorf("pull %s: stdout %q, want the files and then %s", tag, got, digests[i])
		}
		if i < 2 {
			if stderr.Len() != 0 {
				t.Errorf("pull %s: stderr %q, want none", tag, stderr.String())
			}
			continue
		}
		assertOneLine(t, stderr.String(), "warning: ")
		if !strings.Contains(stderr.String(), digests[0].Encoded()) {
			t.Errorf("warning %q does not name the old version it could not remove", stderr.String())
		}
	}
	data, err := os.ReadFile(filepath.Join(root, oci.VolumeCurrentLink, "hello.txt"))
	if err != nil || string(data) != "hello v3" {
		t.Errorf("current/hello.txt = %q, %v; want %q", data, err, "hello v3")
	}
}

// TestPullLimits checks that --max-size and --max-unpacked-size reach the
// pull: the sync Job passes both.
func TestPullLimits(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	f := newFakeRegistry(t)
	site := tarGz(t, "site", map[string]string{"index.html": strings.Repeat("x", 4096)})
	f.pushLayers(t, "v1", []testLayer{
		{title: "hello.txt", mediaType: "text/plain", body: []byte("hello")},
		{title: "site", mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", body: site, unpack: true},
	})
	total := int64(len("hello") + len(site))
	tests := []struct {
		name     string
		flags    []string
		wantCode int
		wantErr  string
	}{
		{"no limits", nil, 0, ""},
		{"max size fits", []string{"--max-size", strconv.FormatInt(total, 10)}, 0, ""},
		{"max size too small", []string{"--max-size", strconv.FormatInt(total-1, 10)}, 1, "over the " + strconv.FormatInt(total-1, 10) + "-byte limit"},
		{"max unpacked size fits", []string{"--max-unpacked-size", "4096"}, 0, ""},
		{"max unpacked size too small", []string{"--max-unpacked-size", "4095"}, 1, "over the limit of unpacked bytes"},
	}
	for _, tt := range tests {
		for _, layout := range []string{"plain", "versioned"} {
			t.Run(tt.name+" "+layout, func(t *testing.T) {
				root := filepath.Join(t.TempDir(), "out")
				args := append(append([]string{"pull", "--plain-http", "--layout", layout}, tt.flags...), f.ref("v1"), root)
				var stdout, stderr bytes.Buffer
				if code := Run(args, &stdout, &stderr); code != tt.wantCode {
					t.Fatalf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
				}
				if tt.wantCode != 0 {
					assertOneLine(t, stderr.String(), tt.wantErr)
					return
				}
				dir := root
				if layout == "versioned" {
					dir = filepath.Join(root, oci.VolumeCurrentLink)
				}
				if data, err := os.ReadFile(filepath.Join(dir, "site", "index.html")); err != nil || len(data) != 4096 {
					t.Errorf("site/index.html: %d bytes, %v; want 4096", len(data), err)
				}
			})
		}
	}
}
