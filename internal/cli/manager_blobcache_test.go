package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestManagerBlobCacheFlags(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"size not a quantity", []string{"--blob-cache-size=lots"}, 2, `--blob-cache-size "lots" is not a size in bytes`},
		{"negative size", []string{"--blob-cache-size=-1Mi"}, 2, `--blob-cache-size "-1Mi" is not a size in bytes`},
		{"folder that cannot be made", []string{"--blob-cache-dir=" + filepath.Join(notADir, "blobs")}, 1, "--blob-cache-dir"},
		// Turned off, the folder is never made: the manager goes on to
		// look for its cluster.
		{"off", []string{"--blob-cache-size=0", "--blob-cache-dir=" + filepath.Join(notADir, "blobs")}, 1, "cannot find a Kubernetes cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
			var stdout, stderr bytes.Buffer
			code := Run(append([]string{"manager"}, tt.args...), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tt.want)
			}
		})
	}
}

func TestManagerHelpNamesTheBlobCache(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"manager", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"-blob-cache-dir", "ocisync-blobs", "-blob-cache-size", `(default "256Mi")`, "ocisync_blob_cache_lookups_total", "ocisync_blob_cache_evictions_total"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("ocisync manager -h does not mention %q:\n%s", want, stdout.String())
		}
	}
}
