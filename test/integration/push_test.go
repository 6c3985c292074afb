package integration

import (
	"maps"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

const (
	defaultLayerType = "application/vnd.oci.image.layer.v1.tar"
	defaultDirType   = "application/vnd.oci.image.layer.v1.tar+gzip"
	unknownConfig    = "application/vnd.unknown.config.v1+json"
	unknownArtifact  = "application/vnd.unknown.artifact.v1"
)

// ocisyncPush runs `ocisync push` in dir and returns the digest on the
// last stdout line, failing t unless it succeeds.
func ocisyncPush(t *testing.T, oc *registrytest.CLI, reg *registrytest.Registry, config, dir string, extra []string, ref string, paths ...string) string {
	t.Helper()
	args := append(append(append([]string{"push"}, reg.OcisyncFlags(config)...), extra...), ref)
	res := oc.In(dir).MustRun(t, append(args, paths...)...)
	d := res.LastLine()
	if !digestRE.MatchString(d) {
		t.Fatalf("ocisync push: last stdout line %q, want a sha256 digest\nstdout:\n%s", d, res.Stdout)
	}
	return d
}

// TestRoundTripInEachMode moves the fixture both ways between ORAS and
// ocisync through each registry setup: none+plain HTTP, htpasswd+TLS and
// token+TLS.
func TestRoundTripInEachMode(t *testing.T) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			oras := registrytest.Oras(t)
			oc := registrytest.Ocisync(t)
			fx := newFixture(t)
			want := snapshot(t, fx.src)
			cfg := tg.writerConfig(t)
			repo := repoName(t)

			t.Run("oras to ocisync", func(t *testing.T) {
				ref := tg.reg.Ref(repo, "from-oras")
				digest := orasPush(t, oras, tg.reg, cfg, fx.src, ref, nil, fixturePaths...)
				out := filepath.Join(t.TempDir(), "out")
				if got := mustPullDigest(t, oc, tg.reg, cfg, nil, ref, out); got != digest {
					t.Errorf("ocisync pull: last stdout line %q, want %s", got, digest)
				}
				assertTree(t, "ocisync pull", out, want)
			})

			t.Run("ocisync to oras", func(t *testing.T) {
				ref := tg.reg.Ref(repo, "from-ocisync")
				// Run elsewhere with absolute paths: titles are base names.
				digest := ocisyncPush(t, oc, tg.reg, cfg, t.TempDir(), nil, ref,
					filepath.Join(fx.src, "hello.txt")+":"+typeText,
					filepath.Join(fx.src, "data.bin"),
					filepath.Join(fx.src, "tree")+"/")
				if got := orasResolve(t, oras, tg.reg, cfg, ref); got != digest {
					t.Errorf("ocisync push printed %s, oras resolves %s", digest, got)
				}
				out := filepath.Join(t.TempDir(), "oras")
				orasPull(t, oras, tg.reg, cfg, out, ref)
				assertTree(t, "oras pull", out, want)

				out = filepath.Join(t.TempDir(), "ocisync")
				if got := mustPullDigest(t, oc, tg.reg, cfg, nil, ref, out); got != digest {
					t.Errorf("ocisync pull: last stdout line %q, want %s", got, digest)
				}
				assertTree(t, "ocisync pull of ocisync push", out, want)
			})
		})
	}
}

// TestPushManifest checks the manifest ocisync push writes, as oras sees
// it, and that oras can pull and unpack it.
func TestPushManifest(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	fx := newFixture(t)

	type layer struct {
		title     string
		src       string // path in the fixture it comes from
		mediaType string
		unpack    bool // carries the ORAS unpack annotations
	}
	tests := []struct {
		name         string
		extra        []string
		paths        []string // push arguments, relative to fx.src
		wantArtifact string   // manifest artifactType; "" means absent
		wantConfig   string   // config media type; "" means don't care
		// wantAnnotations are the manifest's, exactly: none by default.
		wantAnnotations map[string]string
		wantLayers      []layer
	}{
		{
			name:         "default types: an image-spec 1.1 artifact, as ORAS pushes it",
			paths:        []string{"hello.txt", "data.bin", "tree"},
			wantArtifact: unknownArtifact,
			wantConfig:   ocispec.MediaTypeEmptyJSON,
			wantLayers: []layer{
				{"hello.txt", "hello.txt", defaultLayerType, false},
				{"data.bin", "data.bin", defaultLayerType, false},
				{"tree", "tree", defaultDirType, true},
			},
		},
		{
			name: "artifact type, custom media types and annotations",
			extra: []string{"--artifact-type", typeBundle,
				"--annotation", ocispec.AnnotationCreated + "=2026-01-02T03:04:05Z",
				"--annotation", ocispec.AnnotationSource + "=https://example.com/src"},
			wantAnnotations: map[string]string{
				ocispec.AnnotationCreated: "2026-01-02T03:04:05Z",
				ocispec.AnnotationSource:  "https://example.com/src",
			},
			paths:        []string{"hello.txt:" + typeText, "data.bin:" + typeRandom, "tree/:" + typeTree},
			wantArtifact: typeBundle,
			wantLayers: []layer{
				{"hello.txt", "hello.txt", typeText, false},
				{"data.bin", "data.bin", typeRandom, false},
				{"tree", "tree", typeTree, true},
			},
		},
		{
			name:       "an empty artifact type writes the pre-1.1 form; a nested relative path keeps the base name",
			extra:      []string{"--artifact-type="},
			paths:      []string{"tree/sub/deeper/c.json", "tree/sub"},
			wantConfig: unknownConfig,
			wantLayers: []layer{
				{"c.json", "tree/sub/deeper/c.json", defaultLayerType, false},
				{"sub", "tree/sub", defaultDirType, true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo := repoName(t)
			ref := reg.Ref(repo, "v1")
			digest := ocisyncPush(t, oc, reg, "", fx.src, tt.extra, ref, tt.paths...)
			m := orasManifest(t, oras, reg, "", reg.Ref(repo, digest))
			if m.MediaType != ocispec.MediaTypeImageManifest {
				t.Errorf("manifest mediaType %q, want %q", m.MediaType, ocispec.MediaTypeImageManifest)
			}
			if m.ArtifactType != tt.wantArtifact {
				t.Errorf("artifactType %q, want %q", m.ArtifactType, tt.wantArtifact)
			}
			if tt.wantConfig != "" && m.Config.MediaType != tt.wantConfig {
				t.Errorf("config mediaType %q, want %q", m.Config.MediaType, tt.wantConfig)
			}
			if !maps.Equal(m.Annotations, tt.wantAnnotations) {
				t.Errorf("manifest annotations %v, want %v", m.Annotations, tt.wantAnnotations)
			}
			got := layerByTitle(m)
			if len(m.Layers) != len(tt.wantLayers) || len(got) != len(tt.wantLayers) {
				t.Errorf("%d layers with %d distinct titles, want %d titled layers: %+v", len(m.Layers), len(got), len(tt.wantLayers), m.Layers)
			}
			wantTree := tree{}
			for _, w := range tt.wantLayers {
				for k, v := range snapshotAs(t, filepath.Join(fx.src, w.src), w.title) {
					wantTree[k] = v
				}
				l, ok := got[w.title]
				if !ok {
					t.Errorf("no layer titled %q in %+v", w.title, m.Layers)
					continue
				}
				if l.MediaType != w.mediaType {
					t.Errorf("layer %q: media type %q, want %q", w.title, l.MediaType, w.mediaType)
				}
				if unpack := l.Annotations[unpackAnnotation] == "true"; unpack != w.unpack {
					t.Errorf("layer %q: %s=%q, want unpack=%v", w.title, unpackAnnotation, l.Annotations[unpackAnnotation], w.unpack)
				}
				if w.unpack && !digestRE.MatchString(l.Annotations[digestAnnotation]) {
					t.Errorf("layer %q: %s=%q, want the sha256 of the tar", w.title, digestAnnotation, l.Annotations[digestAnnotation])
				}
			}
			// ORAS must be able to pull what was pushed; it also checks
			// the tar digest annotation when unpacking.
			out := filepath.Join(t.TempDir(), "oras")
			orasPull(t, oras, reg, "", out, ref)
			assertTree(t, "oras pull", out, wantTree)
		})
	}
}
