package cli

import (
	"bytes"
	"strings"
	"testing"
)

// The help is where an operator learns how to read the manager: its log
// format and its metrics.
func TestManagerHelpDescribesLogsAndMetrics(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"manager", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr.String())
	}
	help := stdout.String()
	for _, want := range []string{
		"JSON", "--zap-encoder=console", `"msg":"sync"`, "digest", "bytes", "duration",
		"/metrics", "ocisync_artifact_syncs_total", "ocisync_artifact_sync_duration_seconds",
		"ocisync_pulled_bytes_total", "ocisync_registry_requests_total", "ocisync_artifacts",
		"-zap-encoder", "-metrics-bind-address",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("ocisync manager -h does not mention %q:\n%s", want, help)
		}
	}
}
