package install

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// repoRoot is the repository's root folder.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatalf("cannot tell where the test's source is")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// kubectl returns the kubectl the Makefile uses: $KUBECTL or the one in
// PATH.
func kubectl(t *testing.T) string {
	t.Helper()
	name := os.Getenv("KUBECTL")
	if name == "" {
		name = "kubectl"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("kubectl is needed to build and apply the install bundle, as make build-installer and make deploy do: %v; install kubectl or set KUBECTL", err)
	}
	return p
}

// buildInstaller runs `make build-installer IMG=img
// INSTALL_COMPONENTS=components` on a copy of the Makefile, hack/ and
// config/, so that it writes nothing into the repository, and returns the
// dist/install.yaml it wrote.
func buildInstaller(t *testing.T, img string, components ...string) string {
	t.Helper()
	root := repoRoot(t)
	dir := filepath.Join(t.TempDir(), "repo")
	for _, p := range []string{"Makefile", "hack", "config"} {
		copyTree(t, filepath.Join(root, p), filepath.Join(dir, p))
	}
	comps := strings.Join(components, " ")
	cmd := exec.Command("make", "-s", "build-installer", "IMG="+img, "KUBECTL="+kubectl(t), "INSTALL_COMPONENTS="+comps)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build-installer IMG=%s INSTALL_COMPONENTS=%q: %v\n%s", img, comps, err, out)
	}
	return filepath.Join(dir, "dist", "install.yaml")
}

// copyTree copies the file or folder src to dst, keeping file modes.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case info.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode().IsRegular():
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copying %s for the test: %v", src, err)
	}
}

// decodeObjects reads the objects of a multi-document YAML file.
func decodeObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("reading the install bundle: %v", err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	var out []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("decoding %s: %v", path, err)
		}
		if len(obj.Object) > 0 {
			out = append(out, obj)
		}
	}
}

// only returns the one object of kind in objs, failing t unless there is
// exactly one.
func only(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	found := ofKind(objs, kind)
	if len(found) != 1 {
		t.Fatalf("the install bundle has %d objects of kind %s, want 1", len(found), kind)
	}
	return found[0]
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// typed converts an object of the bundle to its Go type.
func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("decoding %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

func deploymentOf(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	return typed[appsv1.Deployment](t, only(t, objs, "Deployment"))
}

// managerContainer returns the Deployment's container named manager, the
// one the Pod's default-container annotation names.
func managerContainer(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "manager" {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatalf("Deployment %s has no container named manager", d.Name)
	return nil
}

// waitFor calls f until it returns nil, failing t with f's last error
// after timeout. The timeout only bounds a broken run; nothing here
// depends on how fast things happen.
func waitFor(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// flagValue returns the value of --name=value or --name value in args,
// the last one given (as the flag package does), and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	var v string
	var found bool
	for i, a := range args {
		a = "--" + strings.TrimLeft(a, "-")
		switch {
		case strings.HasPrefix(a, "--"+name+"="):
			v, found = strings.TrimPrefix(a, "--"+name+"="), true
		case a == "--"+name && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-"):
			v, found = args[i+1], true
		case a == "--"+name:
			v, found = "true", true
		}
	}
	return v, found
}
