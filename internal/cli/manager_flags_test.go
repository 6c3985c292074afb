package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestManagerRefusesBadFlags: a bad limit or scope stops the manager with
// one line on stderr and exit code 2.
func TestManagerRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--concurrent=0"}, "--concurrent is 0; give at least 1"},
		{[]string{"--concurrent=-3"}, "--concurrent is -3; give at least 1"},
		{[]string{"--registry-max-inflight=0"}, "--registry-max-inflight is 0; give at least 1"},
		{[]string{"--concurrent=ten"}, "invalid value"},
		{[]string{"--watch-label-selector=ocisync.io/shard=a=b"}, `--watch-label-selector "ocisync.io/shard=a=b" is not a label selector`},
		{[]string{"--watch-label-selector=a b"}, `--watch-label-selector "a b" is not a label selector`},
		{[]string{"--watch-label-selector=shard in (a"}, "is not a label selector"},
		{[]string{"--watch-label-selector=ocisync.io/artifact=app"}, "names the label ocisync.io/artifact, which ocisync sets on outputs itself"},
		{[]string{"--watch-namespaces=Team-A"}, `--watch-namespaces "Team-A": "Team-A" is not a namespace name`},
		{[]string{"--watch-namespaces=a,,b"}, `--watch-namespaces "a,,b": "" is not a namespace name`},
		{[]string{"--watch-namespaces=a,b/c"}, `"b/c" is not a namespace name`},
		{[]string{"--watch-namespaces=" + strings.Repeat("n", 64)}, "is not a namespace name"},
		{[]string{"--webhook-bind-address=:9443"}, "--webhook-bind-address needs --webhook-token-file"},
		{[]string{"--webhook-bind-address=:9443", "--webhook-token-file=/nonexistent/token"}, "reading the webhook token"},
		{[]string{"--webhook-cert-dir=/tmp"}, "need --webhook-bind-address"},
		{[]string{"--webhook-token-file=/tmp/token"}, "need --webhook-bind-address"},
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
			if n := strings.Count(strings.TrimSpace(stderr.String()), "\n"); n > 0 {
				t.Errorf("stderr has %d lines, want one: %q", n+1, stderr.String())
			}
		})
	}
}

// TestManagerRefusesEmptyWebhookToken: an empty token would authorize
// anyone.
func TestManagerRefusesEmptyWebhookToken(t *testing.T) {
	t.Setenv("KUBECONFIG", t.TempDir()+"/missing")
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"manager", "--webhook-bind-address=:9443", "--webhook-token-file=" + token}, &stdout, &stderr); code != 2 {
		t.Errorf("exit code %d; want 2 (stderr %q)", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "is empty; put a long random token in it") {
		t.Errorf("stderr %q does not say the token file is empty", stderr.String())
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

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		selector, namespaces string
		wantSelector         string // "" for none
		wantNamespaces       []string
	}{
		{"", "", "", nil},
		{"  ", " ", "", nil},
		{"ocisync.io/shard=a", "", "ocisync.io/shard=a", nil},
		{"!ocisync.io/shard", "", "!ocisync.io/shard", nil},
		{"team in (a, b),env!=dev", "", "env!=dev,team in (a,b)", nil},
		{"", "team-a", "", []string{"team-a"}},
		{"", "team-a, team-b,team-a", "", []string{"team-a", "team-b"}},
	} {
		t.Run(tc.selector+"/"+tc.namespaces, func(t *testing.T) {
			scope, err := parseScope(tc.selector, tc.namespaces)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantSelector == "" && scope.Selector != nil:
				t.Errorf("selector %v, want none", scope.Selector)
			case tc.wantSelector != "" && (scope.Selector == nil || scope.Selector.String() != tc.wantSelector):
				t.Errorf("selector %v, want %s", scope.Selector, tc.wantSelector)
			}
			if !slices.Equal(scope.Namespaces, tc.wantNamespaces) {
				t.Errorf("namespaces %q, want %q", scope.Namespaces, tc.wantNamespaces)
			}
		})
	}
}

func TestManagerHelpExplainsScope(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"manager", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"-watch-label-selector", "-watch-namespaces", "ocisync.io/shard=a"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("ocisync manager -h does not mention %q:\n%s", want, stdout.String())
		}
	}
}

// TestManagerHelpExplainsRollout: --rollout is on by default and says
// what turning it off (the no-rollout component) leaves alone.
func TestManagerHelpExplainsRollout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"manager", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"-rollout", "spec.rollout", "(default true)", "no-rollout"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("ocisync manager -h does not mention %q:\n%s", want, stdout.String())
		}
	}
}
