package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The demo as a whole runs in test/demo; these are its helpers.

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"bin/ocisync", "bin/ocisync"},
		{"/tmp/x/app.yaml:application/vnd.example.config.v1+yaml", "/tmp/x/app.yaml:application/vnd.example.config.v1+yaml"},
		{"127.0.0.1:5000/team/app-config:v1", "127.0.0.1:5000/team/app-config:v1"},
		{"/tmp/with space/config.json", "'/tmp/with space/config.json'"},
		{"it's", `'it'\''s'`},
		{"$HOME", "'$HOME'"},
		{"", "''"},
	} {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadKustomization(t *testing.T) {
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"
	for _, tc := range []struct {
		name    string
		files   map[string]string
		want    []string // object names, in order
		wantErr string
	}{
		{
			name: "files and folders, in the order listed",
			files: map[string]string{
				"kustomization.yaml":     "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- b.yaml\n- sub\n",
				"b.yaml":                 strings.ReplaceAll(cm, "%s", "b1") + "---\n" + strings.ReplaceAll(cm, "%s", "b2") + "---\n",
				"sub/kustomization.yaml": "resources:\n- a.yaml\n",
				"sub/a.yaml":             strings.ReplaceAll(cm, "%s", "a"),
			},
			want: []string{"b1", "b2", "a"},
		},
		{
			name:    "no kustomization",
			files:   map[string]string{"a.yaml": strings.ReplaceAll(cm, "%s", "a")},
			wantErr: "run make demo from the repository's root folder",
		},
		{
			name: "what the demo does not apply is refused",
			files: map[string]string{
				"kustomization.yaml": "resources:\n- a.yaml\nnamespace: other\n",
				"a.yaml":             strings.ReplaceAll(cm, "%s", "a"),
			},
			wantErr: "apply it with kubectl apply -k instead",
		},
		{
			name:    "a remote resource is refused",
			files:   map[string]string{"kustomization.yaml": "resources:\n- https://example.com/a.yaml\n"},
			wantErr: "is not a relative path",
		},
		{
			name: "an object without a name",
			files: map[string]string{
				"kustomization.yaml": "resources:\n- a.yaml\n",
				"a.yaml":             "apiVersion: v1\nkind: ConfigMap\n",
			},
			wantErr: "without apiVersion, kind or metadata.name",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			objs, err := readKustomization(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range objs {
				names = append(names, o.GetName())
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("objects %v, want %v", names, tc.want)
			}
		})
	}
}

// The repository's own kustomizations are ones the demo can read.
func TestReadRepositoryKustomizations(t *testing.T) {
	for dir, kind := range map[string]string{
		"../../config/crd":     "CustomResourceDefinition",
		"../../config/samples": "Artifact",
	} {
		objs, err := readKustomization(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) == 0 {
			t.Fatalf("%s: no objects", dir)
		}
		for _, o := range objs {
			if o.GetKind() != kind {
				t.Errorf("%s: %s %s, want only %ss", dir, o.GetKind(), o.GetName(), kind)
			}
		}
	}
}

func TestPrintTable(t *testing.T) {
	table := &metav1.Table{
		ColumnDefinitions: []metav1.TableColumnDefinition{{Name: "Name"}, {Name: "Ready"}, {Name: "Status", Priority: 1}},
		Rows: []metav1.TableRow{
			{Cells: []any{"app-config", "True", "published\nmore"}},
			{Cells: []any{"new", nil, nil}},
		},
	}
	var b strings.Builder
	if err := printTable(&b, table); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME         READY   STATUS\n" +
		"app-config   True    published...\n" +
		"new                  \n"
	if b.String() != want {
		t.Errorf("printTable wrote\n%q, want\n%q", b.String(), want)
	}
}
