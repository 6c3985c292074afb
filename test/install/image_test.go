package install

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// TestImageLayoutPushedWithOras pushes the layout make image writes to a
// real Distribution registry with the real ORAS CLI, as the README says,
// and reads it back over the registry API: the same index digest, both
// platforms, each runnable as nonroot.
func TestImageLayoutPushedWithOras(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	oras := registrytest.Oras(t)
	layout, want, _ := makeImageLayout(t)

	ref := reg.Ref("ocisync", "v0")
	oras.MustRun(t, "cp", "--from-oci-layout", "--to-plain-http", layout+":v0", ref)

	var index v1.Index
	if got := fetchJSON(t, reg, "manifests/v0", v1.MediaTypeImageIndex, &index); got != want {
		t.Fatalf("the registry has %s at %s, the layout %s", got, ref, want)
	}
	var platforms []string
	for _, m := range index.Manifests {
		if m.Platform == nil {
			t.Fatalf("index entry %s has no platform", m.Digest)
		}
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		var manifest v1.Manifest
		fetchJSON(t, reg, "manifests/"+m.Digest.String(), v1.MediaTypeImageManifest, &manifest)
		var config v1.Image
		fetchJSON(t, reg, "blobs/"+manifest.Config.Digest.String(), "", &config)
		if config.Config.User != "65532:65532" || !slices.Equal(config.Config.Entrypoint, []string{"/ocisync"}) {
			t.Errorf("%s config: User %q Entrypoint %q; want 65532:65532 and [/ocisync]", platforms[len(platforms)-1], config.Config.User, config.Config.Entrypoint)
		}
		if config.OS != m.Platform.OS || config.Architecture != m.Platform.Architecture {
			t.Errorf("the index says %s, its config %s/%s", platforms[len(platforms)-1], config.OS, config.Architecture)
		}
		for _, l := range manifest.Layers {
			fetchJSON(t, reg, "blobs/"+l.Digest.String(), "", nil) // there, with its digest
		}
	}
	slices.Sort(platforms)
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Errorf("the pushed index has platforms %v, want %v", platforms, want)
	}
}

// fetchJSON gets /v2/ocisync/PATH from reg, checks the media type (when
// mediaType is not empty) and that the body has the digest the path or the
// Docker-Content-Digest header names, decodes it into v unless v is nil,
// and returns its digest.
func fetchJSON(t *testing.T, reg *registrytest.Registry, path, mediaType string, v any) digest.Digest {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, reg.URL+"/v2/ocisync/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mediaType != "" {
		req.Header.Set("Accept", mediaType)
	}
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", path, resp.Status, err, body)
	}
	if ct := resp.Header.Get("Content-Type"); mediaType != "" && ct != mediaType {
		t.Errorf("GET %s: Content-Type %q, want %s", path, ct, mediaType)
	}
	got := digest.FromBytes(body)
	if d := resp.Header.Get("Docker-Content-Digest"); d != "" && d != got.String() {
		t.Errorf("GET %s: Docker-Content-Digest %s, the body has %s", path, d, got)
	}
	if d, err := digest.Parse(path[strings.LastIndex(path, "/")+1:]); err == nil && d != got {
		t.Errorf("GET %s: the body has digest %s", path, got)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	return got
}
