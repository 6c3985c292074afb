package cli

import (
	"bytes"
	"encoding/json"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci"
)

// TestPushAnnotationsAndArtifactType checks --annotation and
// --artifact-type: what reaches the manifest, and which values are usage
// errors (exit code 2, one line on stderr, nothing pushed).
func TestPushAnnotationsAndArtifactType(t *testing.T) {
	const created = ocispec.AnnotationCreated
	tests := []struct {
		name        string
		flags       []string
		wantErr     string // on stderr, with exit code 2
		want        map[string]string
		wantType    string // artifactType
		wantConfig  string // config media type
		wantCfgSize int64
	}{
		{
			name:     "no flags: an image-spec 1.1 artifact without annotations",
			wantType: oci.MediaTypeUnknownArtifact, wantConfig: ocispec.MediaTypeEmptyJSON, wantCfgSize: 2,
		},
		{
			name:     "annotations, one of them the creation time",
			flags:    []string{"--annotation", "org.opencontainers.image.source=https://example.com/repo", "--annotation", created + "=2026-01-02T03:04:05Z", "--annotation", "empty.value="},
			want:     map[string]string{"org.opencontainers.image.source": "https://example.com/repo", created: "2026-01-02T03:04:05Z", "empty.value": ""},
			wantType: oci.MediaTypeUnknownArtifact, wantConfig: ocispec.MediaTypeEmptyJSON, wantCfgSize: 2,
		},
		{
			name:     "a value may hold '='",
			flags:    []string{"--annotation=com.example.query=a=b"},
			want:     map[string]string{"com.example.query": "a=b"},
			wantType: oci.MediaTypeUnknownArtifact, wantConfig: ocispec.MediaTypeEmptyJSON, wantCfgSize: 2,
		},
		{
			name:     "an artifact type of one's own",
			flags:    []string{"--artifact-type", "application/vnd.example.bundle.v1"},
			wantType: "application/vnd.example.bundle.v1", wantConfig: ocispec.MediaTypeEmptyJSON, wantCfgSize: 2,
		},
		{
			name:       "an empty artifact type writes the pre-1.1 form",
			flags:      []string{"--artifact-type="},
			wantConfig: oci.MediaTypeUnknownConfig, wantCfgSize: 2,
		},
		{name: "no '='", flags: []string{"--annotation", "novalue"}, wantErr: "want KEY=VALUE"},
		{name: "empty key", flags: []string{"--annotation", "=value"}, wantErr: "KEY before '=' is empty"},
		{name: "a key twice", flags: []string{"--annotation", "a=1", "--annotation", "a=2"}, wantErr: "a is given twice"},
		{name: "creation time not RFC 3339", flags: []string{"--annotation", created + "=yesterday"}, wantErr: "RFC 3339"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newMemRegistry(t)
			src := filepath.Join(t.TempDir(), "a.txt")
			writeTestFile(t, src, []byte("a\n"))
			ref := reg.host + "/test/annotations:v1"
			args := append(append([]string{"push", "--plain-http"}, tt.flags...), ref, src)
			var stdout, stderr bytes.Buffer
			code := Run(args, &stdout, &stderr)
			if tt.wantErr != "" {
				if code != 2 || !strings.Contains(stderr.String(), tt.wantErr) || strings.Count(strings.TrimSuffix(stderr.String(), "\n"), "\n") != 0 {
					t.Errorf("exit code %d, stderr %q; want 2 and one line with %q", code, stderr.String(), tt.wantErr)
				}
				reg.mu.Lock()
				defer reg.mu.Unlock()
				if len(reg.manifests) != 0 {
					t.Errorf("a manifest was pushed despite the usage error")
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit code %d, stderr %q", code, stderr.String())
			}
			reg.mu.Lock()
			s, ok := reg.manifests["v1"]
			reg.mu.Unlock()
			if !ok {
				t.Fatalf("nothing pushed to tag v1")
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(s.body, &m); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(m.Annotations, tt.want) {
				t.Errorf("manifest annotations %v, want %v", m.Annotations, tt.want)
			}
			if m.ArtifactType != tt.wantType || m.Config.MediaType != tt.wantConfig || m.Config.Size != tt.wantCfgSize {
				t.Errorf("artifactType %q, config %q of %d bytes; want %q, %q of %d bytes",
					m.ArtifactType, m.Config.MediaType, m.Config.Size, tt.wantType, tt.wantConfig, tt.wantCfgSize)
			}
			if !reg.hasBlob(m.Config.Digest) {
				t.Errorf("the config blob %s was not pushed", m.Config.Digest)
			}
		})
	}
}

func (m *memRegistry) hasBlob(d digest.Digest) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.blobs[d]
	return ok
}
