package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisync/ocisync/internal/oci"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no arguments prints usage", nil, 0, "Commands:", ""},
		{"help", []string{"--help"}, 0, "pull", ""},
		{"version", []string{"version"}, 0, "ocisync dev", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"pull help", []string{"pull", "-h"}, 0, "Usage: ocisync pull", ""},
		{"pull bad flag", []string{"pull", "--nope", "a", "b"}, 2, "", "flag provided but not defined"},
		{"pull missing dir", []string{"pull", "localhost:5000/a:b"}, 2, "", "want REFERENCE and DIR"},
		{"pull invalid reference", []string{"pull", "localhost:5000/UPPER:b", t.TempDir()}, 1, "", "invalid reference"},
		{"pull bad platform", []string{"pull", "--platform", "linux", "localhost:5000/a:b", t.TempDir()}, 1, "", "invalid platform"},
		{"pull cert without key", []string{"pull", "--cert-file", "x.pem", "localhost:5000/a:b", t.TempDir()}, 1, "", "--cert-file and --key-file go together"},
		{"pull missing docker config", []string{"pull", "--docker-config", filepath.Join(t.TempDir(), "none.json"), "localhost:5000/a:b", t.TempDir()}, 1, "", "none.json"},
		{"pull bad timeout", []string{"pull", "--timeout", "soon", "localhost:5000/a:b", t.TempDir()}, 2, "", `invalid value "soon" for flag -timeout`},
		{"pull negative timeout", []string{"pull", "--timeout", "-1s", "localhost:5000/a:b", t.TempDir()}, 2, "", "--timeout is -1s"},
		{"pull empty docker config", []string{"pull", "--docker-config", "", "localhost:5000/a:b", t.TempDir()}, 2, "", "empty path"},
		{"pull negative max size", []string{"pull", "--max-size", "-1", "localhost:5000/a:b", t.TempDir()}, 2, "", "--max-size is -1"},
		{"pull negative max unpacked size", []string{"pull", "--max-unpacked-size", "-1", "localhost:5000/a:b", t.TempDir()}, 2, "", "--max-unpacked-size is -1"},
		{"pull max size not a number", []string{"pull", "--max-size", "1Gi", "localhost:5000/a:b", t.TempDir()}, 2, "", `invalid value "1Gi" for flag -max-size`},
		{"push help", []string{"push", "-h"}, 0, "Usage: ocisync push", ""},
		{"push bad timeout", []string{"push", "--timeout", "5", "localhost:5000/a:b", "f"}, 2, "", `invalid value "5" for flag -timeout`},
		{"push negative timeout", []string{"push", "--timeout", "-5m", "localhost:5000/a:b", "f"}, 2, "", "--timeout is -5m0s"},
		{"push no files", []string{"push", "localhost:5000/a:b"}, 2, "", "at least one PATH"},
		{"push to digest", []string{"push", "localhost:5000/a@sha256:" + strings.Repeat("a", 64), "f"}, 1, "", "push to a tag"},
		{"manager bad flag", []string{"manager", "--nope"}, 2, "", "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d (stdout %q, stderr %q)", code, tt.wantCode, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
			if tt.wantCode != 0 && strings.Count(strings.TrimRight(stderr.String(), "\n"), "\n") != 0 {
				t.Errorf("stderr is not one line: %q", stderr.String())
			}
		})
	}
}

func TestParseFileArg(t *testing.T) {
	dir := t.TempDir()
	withColon := filepath.Join(dir, "a:b.txt")
	if err := os.WriteFile(withColon, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		arg  string
		want oci.File
	}{
		{"file.txt", oci.File{Path: "file.txt"}},
		{"file.txt:application/x.test", oci.File{Path: "file.txt", MediaType: "application/x.test"}},
		{"dir/:application/x.tar", oci.File{Path: "dir/", MediaType: "application/x.tar"}},
		{withColon, oci.File{Path: withColon}},
		{":odd", oci.File{Path: ":odd"}},
	}
	for _, tt := range tests {
		if got := parseFileArg(tt.arg); got != tt.want {
			t.Errorf("parseFileArg(%q) = %+v, want %+v", tt.arg, got, tt.want)
		}
	}
}
