package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/fixture.md from the fixture package")

// TestAPIDocsCurrent is what make check does, so that go test alone also
// catches a docs/api.md that the API types have left behind.
func TestAPIDocsCurrent(t *testing.T) {
	want, err := generate(filepath.Join("..", "..", "api", "v1alpha1"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatalf("reading docs/api.md: %v; run make api-docs", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/api.md is out of date: run make api-docs")
	}
}

// TestFixtureGolden pins the whole output for the fixture package; run
// go test ./hack/apidocs -update after an intended change and review the
// diff of testdata/fixture.md.
func TestFixtureGolden(t *testing.T) {
	got, err := generate(filepath.Join("testdata", "fixture"))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "fixture.md")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (rerun with -update if the change is intended):\n%s", golden, got)
	}
}

// TestFixtureRows checks, one behaviour at a time, what the reference says
// about the fixture's fields and constants.
func TestFixtureRows(t *testing.T) {
	out, err := generate(filepath.Join("testdata", "fixture"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	has := func(line string) bool {
		for _, l := range lines {
			if l == line {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name string
		line string
		want bool
	}{
		{"+required, validation markers and XValidation messages; markers left out of the text, placeholders escaped",
			"| `source` | string | required |  | Source names the &lt;registry&gt;/&lt;repository&gt; to read, such as `example.com/team/widget`.<br>Validation: min length 1; max length 512; rule: source must not start with a scheme. |", true},
		{"default unquoted; a pipe in a pattern escaped for the table; an external type linked",
			"| `every` | [Duration](#duration) | optional | `5m` | Every is how often to look.<br>Validation: pattern `^([0-9]+(ms\\|s\\|m))+$`. |", true},
		{"markers of a named string type apply to its fields",
			"| `mode` | string | optional |  | Mode is how fast it spins.<br>Validation: one of `fast`, `slow`. |", true},
		{"paragraphs and an indented command kept, as a code span",
			"| `secret` | [LocalObjectReference](#localobjectreference) | optional |  | Secret holds credentials.<br><br>Set it like this:<br><br>`kubectl create secret generic creds --from-file=token` |", true},
		{"list of a struct of the package, linked",
			"| `parts` | list of [Part](#part) | optional |  | Parts are the Widget's parts.<br>Validation: max items 8. |", true},
		{"map", "| `labels` | map of string to string | optional |  | Labels to put on the parts. |", true},
		{"no marker and no omitempty: required",
			"| `count` | integer | required |  | Count has neither marker nor omitempty, so it is required. |", true},
		{"+optional wins over a missing omitempty",
			"| `hint` | string | optional |  | Hint has no omitempty but is marked optional. |", true},
		{"an inlined struct gives its fields", "| `owner` | string | optional |  | Owner of the Widget. |", true},
		{"json:\"-\" is left out", "| `Internal` | string | required |  | Internal is never serialized. |", false},
		{"root kind: apiVersion row", "| `apiVersion` | string | required |  | `example.com/v1` |", true},
		{"root kind: short names", "- Short names: `wd`, `wdg`", true},
		{"root kind: printer columns, wide ones apart",
			"- `kubectl get` columns: READY (`.status.conditions[?(@.type==\"Ready\")].status`); with `-o wide` also MESSAGE (`.status.conditions[?(@.type==\"Ready\")].message`)", true},
		{"type-level XValidation message", "- set at most one of a and b", true},
		{"a struct no kind reaches is left out", "## Unused", false},
		{"the list kind is left out", "## WidgetList", false},
		{"an inlined struct gets no section", "## Shared", false},
		{"const block titled by its comment", "## Condition reasons", true},
		{"const comment without its Go name", "| `Spinning` | The Widget spins. |", true},
		{"a field path keeps its lower case", "| `Stopped` | spec.mode stopped it. |", true},
		{"unexported constants left out", "| `Hidden` | ReasonHidden is not exported, so it is not documented. |", false},
		{"a single constant: the value stands for its Go name",
			"| `example.com/kick` | `example.com/kick`, set to a new value, kicks the Widget. |", true},
		{"external types explained once", "### LocalObjectReference", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := has(tt.line); got != tt.want {
				t.Errorf("line present = %v, want %v:\n%s\n\nin:\n%s", got, tt.want, tt.line, out)
			}
		})
	}
	if bytes.Contains(out, []byte("+kubebuilder")) || bytes.Contains(out, []byte("+optional")) {
		t.Errorf("marker lines leaked into the output:\n%s", out)
	}
	if bytes.Contains(out, []byte("MaxParts")) || bytes.Contains(out, []byte("| `8` |")) {
		t.Errorf("a non-string constant is documented:\n%s", out)
	}
}

// TestGenerateErrors: a package the generator cannot describe fully is an
// error that says what to do, never a reference with gaps.
func TestGenerateErrors(t *testing.T) {
	const header = "// Package v1 is a test package.\n// +groupName=example.com\npackage v1\n\n"
	tests := []struct {
		name    string
		src     string
		wantErr string
	}{
		{
			name: "a foreign type nobody described",
			src: header + "import \"net/url\"\n\n// Thing is a kind.\n// +kubebuilder:object:root=true\ntype Thing struct {\n\tSpec ThingSpec `json:\"spec\"`\n}\n\n" +
				"type ThingSpec struct {\n\tURL url.URL `json:\"url\"`\n}\n",
			wantErr: "field url: type url.URL (net/url) is not one hack/apidocs can describe: add it to externalTypes",
		},
		{
			name:    "no root kind",
			src:     header + "type Thing struct {\n\tName string `json:\"name\"`\n}\n",
			wantErr: "no type is marked +kubebuilder:object:root=true",
		},
		{
			name:    "no group",
			src:     "package v1\n\n// +kubebuilder:object:root=true\ntype Thing struct{}\n",
			wantErr: "no +groupName marker",
		},
		{
			name:    "an XValidation marker that does not parse",
			src:     header + "// +kubebuilder:object:root=true\ntype Thing struct {\n\t// +kubebuilder:validation:XValidation:rule=\"x\n\tName string `json:\"name\"`\n}\n",
			wantErr: "field name: kubebuilder:validation:XValidation:rule=\"x: argument rule",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "types.go"), []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := generate(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestRunCheck is make check's use of the command: -check fails, naming
// the fix, exactly when the file is not what would be generated.
func TestRunCheck(t *testing.T) {
	fixture := filepath.Join("testdata", "fixture")
	want, err := generate(fixture)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		content  []byte // nil: no file
		wantCode int
		wantErr  string
	}{
		{"current", want, 0, ""},
		{"stale", append(append([]byte{}, want...), "edited\n"...), 1, "api.md is out of date: run make api-docs"},
		{"missing", nil, 1, "api.md is out of date: run make api-docs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "api.md")
			if tt.content != nil {
				if err := os.WriteFile(out, tt.content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			code := run([]string{"-check", "-out", out, fixture}, &stdout, &stderr)
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tt.wantCode, tt.wantErr)
			}
			after, _ := os.ReadFile(out)
			if !bytes.Equal(after, tt.content) {
				t.Error("-check changed the file")
			}
		})
	}

	t.Run("write", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "api.md")
		var stdout, stderr bytes.Buffer
		if code := run([]string{"-out", out, fixture}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		got, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("written file differs from the generated reference (err %v)", err)
		}
	})
}
