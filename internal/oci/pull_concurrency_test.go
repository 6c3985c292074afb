package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci/transport"
)

// pullMode runs one pull the way the CLI's two layouts do, and returns
// the folder whose content the layers became.
type pullMode struct {
	name string
	pull func(t *testing.T, r *Repository, ref, dest string, opts PullOptions) (*PullResult, string, error)
}

var pullModes = []pullMode{
	{"plain", func(t *testing.T, r *Repository, ref, dest string, opts PullOptions) (*PullResult, string, error) {
		res, err := r.PullToDir(t.Context(), ref, dest, opts)
		return res, dest, err
	}},
	{"versioned", func(t *testing.T, r *Repository, ref, dest string, opts PullOptions) (*PullResult, string, error) {
		res, err := r.PullToVolume(t.Context(), ref, dest, opts)
		return res, filepath.Join(dest, VolumeCurrentLink), err
	}},
}

// pushManyLayers pushes n titled layers of distinct sizes under tag and
// returns their titles and contents in manifest order.
func pushManyLayers(t *testing.T, f *fakeRegistry, tag string, n int) ([]string, map[string]string) {
	t.Helper()
	var (
		layers   []ocispec.Descriptor
		contents [][]byte
		titles   []string
	)
	want := map[string]string{}
	for i := range n {
		title := fmt.Sprintf("dir%d/layer-%02d.bin", i%3, i)
		data := []byte(strings.Repeat(fmt.Sprintf("%s:%s ", tag, title), 1+i*97))
		layers = append(layers, layerDesc(ocispec.MediaTypeImageLayer, title, data))
		contents = append(contents, data)
		titles = append(titles, title)
		want[title] = string(data)
	}
	f.pushArtifact(t, testRepo, tag, layers, contents)
	return titles, want
}

// checkPulled checks that dir holds exactly the wanted files.
func checkPulled(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	// The versioned layout's current is a link, which snapshot would not
	// follow.
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rel, v := range snapshot(t, dir) {
		if v != "dir" {
			got[filepath.ToSlash(rel)] = strings.TrimPrefix(v, "-rw-r--r-- ")
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pulled %d files, want %d; differences:", len(got), len(want))
		for k, v := range want {
			if got[k] != v {
				t.Errorf("  %s: got %.40q, want %.40q", k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("  %s: not wanted", k)
			}
		}
	}
}

// TestPullManyLayers pulls artifacts of many layers with various bounds:
// every file arrives intact, and Files keeps the manifest's order however
// the downloads interleave.
func TestPullManyLayers(t *testing.T) {
	tests := []struct {
		layers      int
		concurrency int
	}{
		{1, 0}, {2, 0}, {17, 0}, {17, 1}, {17, 4}, {5, 32},
	}
	for _, mode := range pullModes {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%d layers, concurrency %d", mode.name, tt.layers, tt.concurrency), func(t *testing.T) {
				f := newFakeRegistry(t)
				titles, want := pushManyLayers(t, f, "many", tt.layers)
				dest := filepath.Join(t.TempDir(), "out")
				res, dir, err := mode.pull(t, f.repo(t), "many", dest, PullOptions{Concurrency: tt.concurrency})
				if err != nil {
					t.Fatalf("pull: %v", err)
				}
				if !reflect.DeepEqual(res.Files, titles) {
					t.Errorf("Files = %q, want the manifest's order %q", res.Files, titles)
				}
				checkPulled(t, dir, want)
				if n := len(f.reqs(http.MethodGet, "/blobs/")); n != tt.layers {
					t.Errorf("%d blob GETs, want one per layer (%d)", n, tt.layers)
				}
			})
		}
	}
}

// inFlightGate counts the blob GETs a registry is answering at once. Each
// waits (up to patience) until want of them are in, so that a client able
// to send want at once is seen to; one sending fewer only waits longer.
type inFlightGate struct {
	want     int
	patience time.Duration

	mu        sync.Mutex
	cond      *sync.Cond
	now       int
	max       int
	waitedOut int
}

func newInFlightGate(want int, patience time.Duration) *inFlightGate {
	g := &inFlightGate{want: want, patience: patience}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// intercept is a fakeRegistry.intercept: it lets the request through to
// the registry afterwards.
func (g *inFlightGate) intercept(_ http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.now++
	g.max = max(g.max, g.now)
	g.cond.Broadcast()
	deadline := time.Now().Add(g.patience)
	stop := time.AfterFunc(g.patience, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.cond.Broadcast()
	})
	defer stop.Stop()
	for g.now < g.want && time.Now().Before(deadline) {
		g.cond.Wait()
	}
	if g.now < g.want {
		g.waitedOut++
	}
	// Out of the count before the body is written: the client cannot
	// have read it and sent its next request before this.
	g.now--
	return false
}

// TestPullConcurrencyBounded checks that a pull downloads several layers
// at once, and never more than its bound and the registry's in-flight
// limit allow.
func TestPullConcurrencyBounded(t *testing.T) {
	tests := []struct {
		name        string
		concurrency int
		maxInFlight int // transport.Hosts.MaxInFlight; 0: no Hosts at all
		want        int
	}{
		{name: "default bound", want: DefaultPullConcurrency},
		{name: "own bound", concurrency: 4, want: 4},
		{name: "registry limit below the bound", concurrency: 4, maxInFlight: 2, want: 2},
		{name: "bound below the registry limit", concurrency: 2, maxInFlight: 8, want: 2},
	}
	for _, mode := range pullModes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				f := newFakeRegistry(t)
				// A multiple of every want: the last wave fills the gate too.
				titles, want := pushManyLayers(t, f, "bounded", 12)
				gate := newInFlightGate(tt.want, 500*time.Millisecond)
				f.setIntercept(gate.intercept)
				var mods []func(*Options)
				if tt.maxInFlight != 0 {
					mods = append(mods, func(o *Options) { o.Transport.Limits = &transport.Hosts{MaxInFlight: tt.maxInFlight} })
				}
				dest := filepath.Join(t.TempDir(), "out")
				res, dir, err := mode.pull(t, f.repo(t, mods...), "bounded", dest, PullOptions{Concurrency: tt.concurrency})
				if err != nil {
					t.Fatalf("pull: %v", err)
				}
				if !reflect.DeepEqual(res.Files, titles) {
					t.Errorf("Files = %q, want %q", res.Files, titles)
				}
				checkPulled(t, dir, want)
				gate.mu.Lock()
				defer gate.mu.Unlock()
				if gate.max <= 1 {
					t.Errorf("at most %d blob download at once: the layers were downloaded one after another", gate.max)
				}
				if gate.max != tt.want {
					t.Errorf("at most %d blob downloads at once, want %d", gate.max, tt.want)
				}
				if gate.waitedOut > 0 {
					t.Logf("%d requests waited out the gate", gate.waitedOut)
				}
			})
		}
	}
}

// TestPullLayerFailure fails one layer of several while the others are
// still downloading: the pull must stop them, report the failing layer
// and not a sibling's cancellation, and leave DIR (or the volume) as it
// was, with no staging folder behind.
func TestPullLayerFailure(t *testing.T) {
	const failing = 1 // index of the layer that fails
	tests := []struct {
		name    string
		serve   func(w http.ResponseWriter) // for the failing blob; nil: the registry's tampered copy
		wantErr error
		errHas  string
	}{
		{
			name: "500 on one blob",
			serve: func(w http.ResponseWriter) {
				writeRegistryError(w, http.StatusInternalServerError, "UNKNOWN", "disk on fire")
			},
			errHas: "disk on fire",
		},
		{name: "wrong content", wantErr: ErrDigestMismatch, errHas: "digest"},
	}
	for _, mode := range pullModes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				f := newFakeRegistry(t)
				parent := t.TempDir()
				dest := filepath.Join(parent, "out")
				// A first good pull, so there is something to keep intact.
				pushManyLayers(t, f, "good", 2)
				if _, _, err := mode.pull(t, f.repo(t), "good", dest, PullOptions{}); err != nil {
					t.Fatalf("first pull: %v", err)
				}
				before := snapshot(t, parent)

				titles, _ := pushManyLayers(t, f, "bad", 6)
				m, _, _ := f.manifest(testRepo, "bad")
				man, err := DecodeManifest(ocispec.MediaTypeImageManifest, m.data)
				if err != nil {
					t.Fatal(err)
				}
				bad := man.Layers[failing]
				if tt.serve == nil {
					// The same size, other bytes: only the digest tells.
					f.mu.Lock()
					f.blobs[testRepo+"@"+bad.Digest.String()] = []byte(strings.Repeat("x", int(bad.Size)))
					f.mu.Unlock()
				}
				var (
					mu       sync.Mutex
					started  int
					canceled int
				)
				f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
						return false
					}
					mu.Lock()
					started++
					mu.Unlock()
					if strings.HasSuffix(r.URL.Path, bad.Digest.String()) {
						if tt.serve != nil {
							tt.serve(w)
							return true
						}
						return false
					}
					// The other layers hang until the client gives up on them.
					select {
					case <-r.Context().Done():
						mu.Lock()
						canceled++
						mu.Unlock()
					case <-time.After(10 * time.Second):
					}
					return true
				})

				start := time.Now()
				_, _, err = mode.pull(t, f.repo(t), "bad", dest, PullOptions{})
				took := time.Since(start)
				if err == nil {
					t.Fatal("the pull succeeded")
				}
				t.Logf("error: %v", err)
				if errors.Is(err, context.Canceled) {
					t.Errorf("the error is a cancellation, not the failure of layer %s: %v", titles[failing], err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error %v, want %v", err, tt.wantErr)
				}
				for _, s := range []string{tt.errHas, titles[failing], string(bad.Digest)} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if took > 5*time.Second {
					t.Errorf("the pull took %s: the other downloads were not canceled", took)
				}
				// The server sees the cancellations a little after the client.
				deadline := time.Now().Add(5 * time.Second)
				for {
					mu.Lock()
					s, c := started, canceled
					mu.Unlock()
					if c == s-1 || time.Now().After(deadline) {
						if s > DefaultPullConcurrency {
							t.Errorf("%d blob downloads started, want at most %d: the pull went on after the failure", s, DefaultPullConcurrency)
						}
						if c != s-1 {
							t.Errorf("%d of the %d other downloads were canceled", c, s-1)
						}
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if after := snapshot(t, parent); !reflect.DeepEqual(after, before) {
					t.Errorf("the failed pull changed %s:\nbefore %v\nafter  %v", parent, before, after)
				}
			})
		}
	}
}

// TestPullChecksTitlesFirst checks that colliding titles fail the pull
// before any blob is downloaded.
func TestPullChecksTitlesFirst(t *testing.T) {
	for _, mode := range pullModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newFakeRegistry(t)
			a, b, c := []byte("a"), []byte("b"), []byte("c")
			layers := []ocispec.Descriptor{
				layerDesc(ocispec.MediaTypeImageLayer, "one", a),
				layerDesc(ocispec.MediaTypeImageLayer, "two", b),
				layerDesc(ocispec.MediaTypeImageLayer, "one/inner", c),
			}
			f.pushArtifact(t, testRepo, "clash", layers, [][]byte{a, b, c})
			dest := filepath.Join(t.TempDir(), "out")
			_, dir, err := mode.pull(t, f.repo(t), "clash", dest, PullOptions{})
			if err == nil || !strings.Contains(err.Error(), "would overwrite each other") {
				t.Fatalf("error %v, want one about titles that overwrite each other", err)
			}
			if n := len(f.reqs(http.MethodGet, "/blobs/")); n != 0 {
				t.Errorf("%d blob GETs before the title check failed, want none", n)
			}
			if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s exists after the failed pull (err %v)", dir, err)
			}
		})
	}
}
