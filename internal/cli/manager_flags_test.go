package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestManagerRefusesBadLimits(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--concurrent=0"}, "--concurrent is 0; give at least 1"},
		{[]string{"--concurrent=-3"}, "--concurrent is -3; give at least 1"},
		{[]string{"--registry-max-inflight=0"}, "--registry-max-inflight is 0; give at least 1"},
		{[]string{"--concurrent=ten"}, "invalid value"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			// No cluster is needed: flags are checked before one is sought.
			t.Setenv("KUBECONFIG", t.TempDir()+"/missing")
			var stdout, stderr bytes.Buffer
			code := Run(append([]string{"manager"}, tc.args...), &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code %d; want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestManagerHelpExplainsLimits(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"manager", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"-concurrent", "(default 10)", "-registry-max-inflight", "(default 8)", "one registry"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("ocisync manager -h does not mention %q:\n%s", want, stdout.String())
		}
	}
}
