package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{12*1024*1024 + 300*1024, "12.3 MiB"},
		{40 << 20, "40.0 MiB"},
		{3 << 30, "3.0 GiB"},
		{5 << 40, "5.0 TiB"},
		{7 << 50, "7.0 PiB"},
		{1 << 62, "4096.0 PiB"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// TestProgressPrinter drives the printer with a fake clock: what it draws
// depends only on the times it is given.
func TestProgressPrinter(t *testing.T) {
	type step struct {
		at   time.Duration // since the start of the test clock
		op   string        // start, add, finish or close
		xfer int           // which transfer
		n    int           // start: total (-1 unknown); add: bytes
	}
	const mib = 1 << 20
	tests := []struct {
		name  string
		width int
		label string
		steps []step
		want  string
	}{
		{
			name: "a quick transfer leaves no trace",
			steps: []step{
				{0, "start", 0, 4 * mib},
				{100 * time.Millisecond, "add", 0, 4 * mib},
				{200 * time.Millisecond, "finish", 0, 0},
				{300 * time.Millisecond, "close", 0, 0},
			},
			want: "",
		},
		{
			name: "a long transfer is drawn in place, throttled, and ends its line",
			steps: []step{
				{0, "start", 0, 4 * mib},
				{100 * time.Millisecond, "add", 0, mib},     // too early
				{600 * time.Millisecond, "add", 0, mib},     // drawn
				{700 * time.Millisecond, "add", 0, mib},     // too soon after
				{900 * time.Millisecond, "add", 0, mib / 2}, // drawn
				{950 * time.Millisecond, "add", 0, mib / 2}, // too soon after
				{960 * time.Millisecond, "finish", 0, 0},    // final count
				{970 * time.Millisecond, "close", 0, 0},     // nothing open
				{980 * time.Millisecond, "finish", 0, 0},    // twice is once
				{990 * time.Millisecond, "add", 0, mib},     // after the end
			},
			want: "\rUploading data.bin 2.0 MiB/4.0 MiB" +
				"\rUploading data.bin 3.5 MiB/4.0 MiB" +
				"\rUploading data.bin 4.0 MiB/4.0 MiB\n",
		},
		{
			name: "a shorter text blanks what is left of the longer one",
			steps: []step{
				{0, "start", 0, -1},
				{time.Second, "add", 0, 1023900},
				{2 * time.Second, "add", 0, mib - 1023900},
				{3 * time.Second, "finish", 0, 0},
			},
			want: "\rUploading data.bin 999.9 KiB" +
				"\rUploading data.bin 1.0 MiB  \n",
		},
		{
			name: "an overlapping transfer waits for the line",
			steps: []step{
				{0, "start", 0, 2 * mib},
				{0, "start", 1, 2 * mib},
				{time.Second, "add", 0, mib},
				{time.Second, "add", 1, mib}, // counted, not drawn
				{2 * time.Second, "finish", 0, 0},
				{2 * time.Second, "add", 1, mib},
				{3 * time.Second, "finish", 1, 0},
			},
			want: "\rUploading data.bin 1.0 MiB/2.0 MiB\n" +
				"\rUploading data.bin 2.0 MiB/2.0 MiB\n",
		},
		{
			name: "a long transfer that ends while another holds the line gets a line above it",
			steps: []step{
				{0, "start", 0, 4 * mib},
				{0, "start", 1, mib},
				{0, "start", 2, mib},
				{time.Second, "add", 0, mib},
				{time.Second, "add", 1, mib},
				{1100 * time.Millisecond, "finish", 1, 0},
				{1200 * time.Millisecond, "add", 2, mib},
				{1200 * time.Millisecond, "finish", 2, 0}, // started at 0: long too
				{2 * time.Second, "add", 0, 3 * mib},
				{2 * time.Second, "finish", 0, 0},
			},
			want: "\rUploading data.bin 1.0 MiB/4.0 MiB" +
				"\rUploading data.bin 1.0 MiB/1.0 MiB\n" +
				"\rUploading data.bin 1.0 MiB/4.0 MiB" +
				"\rUploading data.bin 1.0 MiB/1.0 MiB\n" +
				"\rUploading data.bin 1.0 MiB/4.0 MiB" +
				"\rUploading data.bin 4.0 MiB/4.0 MiB\n",
		},
		{
			name: "a quick transfer under another's line leaves no trace",
			steps: []step{
				{0, "start", 0, 2 * mib},
				{time.Second, "add", 0, mib},
				{time.Second, "start", 1, mib},
				{1100 * time.Millisecond, "add", 1, mib},
				{1200 * time.Millisecond, "finish", 1, 0},
				{2 * time.Second, "add", 0, mib},
				{2 * time.Second, "finish", 0, 0},
			},
			want: "\rUploading data.bin 1.0 MiB/2.0 MiB" +
				"\rUploading data.bin 2.0 MiB/2.0 MiB\n",
		},
		{
			name: "an interrupted transfer's line is ended by close",
			steps: []step{
				{0, "start", 0, 2 * mib},
				{time.Second, "add", 0, mib},
				{2 * time.Second, "close", 0, 0},
				{3 * time.Second, "finish", 0, 0},
			},
			want: "\rUploading data.bin 1.0 MiB/2.0 MiB\n",
		},
		{
			name:  "a long name is cut to the terminal's width, keeping the counts",
			width: 30,
			label: "a-very-long-file-name-indeed.tar.gz",
			steps: []step{
				{0, "start", 0, 2 * mib},
				{time.Second, "add", 0, mib},
			},
			want: "\r…ndeed.tar.gz 1.0 MiB/2.0 MiB",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			now := start
			var out bytes.Buffer
			p := &progressPrinter{w: &out, now: func() time.Time { return now }, width: tt.width}
			label := tt.label
			if label == "" {
				label = "data.bin"
			}
			xfers := map[int]*transfer{}
			for _, s := range tt.steps {
				now = start.Add(s.at)
				switch s.op {
				case "start":
					xfers[s.xfer] = p.start("Uploading", label, int64(s.n))
				case "add":
					xfers[s.xfer].add(s.n)
				case "finish":
					xfers[s.xfer].finish()
				case "close":
					p.close()
				default:
					t.Fatalf("unknown op %q", s.op)
				}
			}
			if got := out.String(); got != tt.want {
				t.Errorf("drew\n%q\nwant\n%q", got, tt.want)
			}
			if w := tt.width; w > 0 {
				for _, frame := range strings.Split(strings.ReplaceAll(out.String(), "\n", ""), "\r")[1:] {
					if n := len([]rune(frame)); n >= w {
						t.Errorf("frame %q is %d runes on a %d-column terminal", frame, n, w)
					}
				}
			}
		})
	}
}

// fakeTerminal stands in for an interactive stderr. The HTTP transport
// writes to it from its own goroutine.
type fakeTerminal struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (f *fakeTerminal) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.Write(b)
}

func (f *fakeTerminal) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.String()
}

// finalLines returns what a terminal shows of out: each line as its last
// carriage-return frame, without the padding that blanked longer frames.
func finalLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		frames := strings.Split(l, "\r")
		lines = append(lines, strings.TrimRight(frames[len(frames)-1], " "))
	}
	return lines
}

// pretendTerminal makes the commands treat a *fakeTerminal as an
// interactive terminal, and gives them a clock on which every reading is a
// second after the last, so that every chunk of every transfer is drawn
// however fast the transfer runs.
func pretendTerminal(t *testing.T) {
	oldIsTerminal, oldWidth, oldNow := isTerminal, terminalWidth, progressNow
	t.Cleanup(func() { isTerminal, terminalWidth, progressNow = oldIsTerminal, oldWidth, oldNow })
	isTerminal = func(w io.Writer) bool { _, ok := w.(*fakeTerminal); return ok }
	terminalWidth = func(io.Writer) int { return 0 }
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	progressNow = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second)
		return now
	}
}

// TestPushPullProgress pushes and pulls through an in-memory registry with
// stderr taken for a terminal: each blob gets a line named after its file,
// with its size, and stdout is what it is without a terminal.
func TestPushPullProgress(t *testing.T) {
	reg := newMemRegistry(t)
	// Asking for credentials makes the client check the first blob twice.
	reg.user, reg.pass = "progress", "pr0gress-pa55"
	config := writeJSON(t, t.TempDir(), "config.json", map[string]any{"auths": map[string]any{reg.host: basicAuth(reg.user, reg.pass)}})
	src := t.TempDir()
	data := randomData(t, 2<<20)
	writeTestFile(t, filepath.Join(src, "data.bin"), data)
	// The same content: its blob is there already, and its name must not
	// stick to the next file's blob.
	writeTestFile(t, filepath.Join(src, "copy.bin"), data)
	writeTestFile(t, filepath.Join(src, "small.txt"), []byte("hello\n"))
	writeTestFile(t, filepath.Join(src, "tree", "inner.bin"), randomData(t, 1<<20))
	ref := reg.host + "/test/progress:v1"

	pretendTerminal(t)
	var stdout bytes.Buffer
	stderr := &fakeTerminal{}
	code := Run([]string{"push", "--plain-http", "--docker-config", config, ref,
		filepath.Join(src, "data.bin"), filepath.Join(src, "copy.bin"), filepath.Join(src, "tree"), filepath.Join(src, "small.txt")}, &stdout, stderr)
	if code != 0 {
		t.Fatalf("push: exit code %d, stderr %q", code, stderr.String())
	}
	d := lastLine(stdout.String())
	if want := "Pushed " + ref + "\n" + d + "\n"; stdout.String() != want {
		t.Errorf("push stdout %q, want %q", stdout.String(), want)
	}
	packed := reg.blobSize(t, "tree")
	wantPush := []string{
		"Uploading data.bin 2.0 MiB/2.0 MiB",
		fmt.Sprintf("Uploading tree %s/%s", formatBytes(packed), formatBytes(packed)),
		"Uploading small.txt 6 B/6 B",
		"Uploading config 2 B/2 B",
	}
	if got := finalLines(stderr.String()); !equalStrings(got, wantPush) {
		t.Errorf("push shows\n%q\nwant\n%q\n(stderr %q)", got, wantPush, stderr.String())
	}

	stdout.Reset()
	stderr = &fakeTerminal{}
	out := filepath.Join(t.TempDir(), "out")
	if code := Run([]string{"pull", "--plain-http", "--docker-config", config, ref, out}, &stdout, stderr); code != 0 {
		t.Fatalf("pull: exit code %d, stderr %q", code, stderr.String())
	}
	if want := "Pulled data.bin\nPulled copy.bin\nPulled tree\nPulled small.txt\n" + d + "\n"; stdout.String() != want {
		t.Errorf("pull stdout %q, want %q", stdout.String(), want)
	}
	// The layers download together: their lines come in the order they
	// end.
	wantPull := []string{
		"Downloading data.bin 2.0 MiB/2.0 MiB",
		"Downloading data.bin 2.0 MiB/2.0 MiB", // copy.bin: the same blob
		fmt.Sprintf("Downloading tree %s/%s", formatBytes(packed), formatBytes(packed)),
		"Downloading small.txt 6 B/6 B",
	}
	if got := finalLines(stderr.String()); !equalStrings(sorted(got), sorted(wantPull)) {
		t.Errorf("pull shows\n%q\nwant\n%q\n(stderr %q)", got, wantPull, stderr.String())
	}
	if got, err := os.ReadFile(filepath.Join(out, "data.bin")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("pulled data.bin differs from the pushed one (err %v)", err)
	}
	if reg.redirects == 0 {
		t.Errorf("the registry redirected no blob download: the test does not cover downloads from storage")
	}
}

// TestNoProgressWithoutTerminal checks that push and pull print exactly
// what they always have when stderr is not a terminal, however slow the
// transfer: nothing on stderr.
func TestNoProgressWithoutTerminal(t *testing.T) {
	reg := newMemRegistry(t)
	src := t.TempDir()
	writeTestFile(t, filepath.Join(src, "data.bin"), randomData(t, 1<<20))
	ref := reg.host + "/test/quiet:v1"
	// A clock on which everything is slow: only the terminal check can
	// keep progress away.
	pretendTerminal(t)
	isTerminal = func(w io.Writer) bool { return false }

	var stdout, stderr bytes.Buffer
	if code := Run([]string{"push", "--plain-http", ref, filepath.Join(src, "data.bin")}, &stdout, &stderr); code != 0 {
		t.Fatalf("push: exit code %d, stderr %q", code, stderr.String())
	}
	d := lastLine(stdout.String())
	if want := "Pushed " + ref + "\n" + d + "\n"; stdout.String() != want || stderr.Len() != 0 {
		t.Errorf("push printed stdout %q, stderr %q; want stdout %q and nothing on stderr", stdout.String(), stderr.String(), want)
	}
	stdout.Reset()
	if code := Run([]string{"pull", "--plain-http", ref, filepath.Join(t.TempDir(), "out")}, &stdout, &stderr); code != 0 {
		t.Fatalf("pull: exit code %d, stderr %q", code, stderr.String())
	}
	if want := "Pulled data.bin\n" + d + "\n"; stdout.String() != want || stderr.Len() != 0 {
		t.Errorf("pull printed stdout %q, stderr %q; want stdout %q and nothing on stderr", stdout.String(), stderr.String(), want)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n") && len(a) == len(b)
}

func randomData(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// memRegistry is an in-memory registry that takes pushes, enough for the
// CLI's push and pull. Blob downloads are redirected to a storage path,
// as registries on object storage do.
type memRegistry struct {
	host string
	// user and pass, when set, are the Basic credential every request
	// needs.
	user, pass string

	mu        sync.Mutex
	blobs     map[digest.Digest][]byte
	manifests map[string]served // by tag and digest
	uploads   int
	redirects int
	titles    map[string]int64 // layer title -> size, from pushed manifests
}

func newMemRegistry(t *testing.T) *memRegistry {
	t.Helper()
	m := &memRegistry{blobs: map[digest.Digest][]byte{}, manifests: map[string]served{}, titles: map[string]int64{}}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	m.host = srv.Listener.Addr().String()
	return m
}

// blobSize returns the size of the layer titled title in the last pushed
// manifest.
func (m *memRegistry) blobSize(t *testing.T, title string) int64 {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.titles[title]
	if !ok {
		t.Fatalf("no layer titled %q was pushed", title)
	}
	return n
}

func (m *memRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); m.user != "" && (!ok || u != m.user || p != m.pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="mem"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/v2/":
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(p, "/storage/"):
		b, ok := m.blobs[digest.Digest(strings.TrimPrefix(p, "/storage/"))]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		_, _ = w.Write(b)
	case strings.HasSuffix(p, "/blobs/uploads/") && r.Method == http.MethodPost:
		m.uploads++
		w.Header().Set("Location", fmt.Sprintf("%supload-%d", p, m.uploads))
		w.WriteHeader(http.StatusAccepted)
	case strings.Contains(p, "/blobs/uploads/") && r.Method == http.MethodPut:
		body, err := io.ReadAll(r.Body)
		d := digest.Digest(r.URL.Query().Get("digest"))
		if err != nil || d.Validate() != nil || digest.FromBytes(body) != d {
			http.Error(w, "bad upload", http.StatusBadRequest)
			return
		}
		m.blobs[d] = body
		w.WriteHeader(http.StatusCreated)
	case strings.Contains(p, "/blobs/"):
		d := digest.Digest(p[strings.LastIndex(p, "/")+1:])
		b, ok := m.blobs[d]
		switch {
		case !ok:
			http.NotFound(w, r)
		case r.Method == http.MethodHead:
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.WriteHeader(http.StatusOK)
		default:
			m.redirects++
			http.Redirect(w, r, "/storage/"+d.String(), http.StatusTemporaryRedirect)
		}
	case strings.Contains(p, "/manifests/"):
		ref := p[strings.LastIndex(p, "/")+1:]
		if r.Method == http.MethodPut {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, "bad manifest", http.StatusBadRequest)
				return
			}
			d := digest.FromBytes(body)
			s := served{mediaType: r.Header.Get("Content-Type"), body: body}
			m.manifests[ref], m.manifests[d.String()] = s, s
			m.noteTitles(body)
			w.Header().Set("Docker-Content-Digest", d.String())
			w.WriteHeader(http.StatusCreated)
			return
		}
		s, ok := m.manifests[ref]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", s.mediaType)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(s.body).String())
		w.Header().Set("Content-Length", fmt.Sprint(len(s.body)))
		if r.Method != http.MethodHead {
			_, _ = w.Write(s.body)
		}
	default:
		http.NotFound(w, r)
	}
}

func (m *memRegistry) noteTitles(manifest []byte) {
	var man ocispec.Manifest
	if json.Unmarshal(manifest, &man) != nil {
		return
	}
	for _, l := range man.Layers {
		m.titles[l.Annotations[ocispec.AnnotationTitle]] = l.Size
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
