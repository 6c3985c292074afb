//go:build fluxcheck

// Package fluxcheck checks that the Flux source-controller of make flux
// runs against the test control plane and makes one OCIRepository Ready.
//
//	make flux test-tools; eval "$(make -s test-env)"
//	go test -tags fluxcheck -count=1 -v ./test/fluxcheck
package fluxcheck

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/ocisync/ocisync/test/controlplane"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

func fluxDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", "flux")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tarGz(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSourceController(t *testing.T) {
	dir := fluxDir()
	bin := filepath.Join(dir, "source-controller")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no %s: run make flux", bin)
	}

	cp := controlplane.Start(t)
	kubeconfig := cp.WriteKubeconfig(t, "flux-source-controller")
	crds, err := envtest.InstallCRDs(cp.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(dir, "crds")}, ErrorIfPathMissing: true,
	})
	if err != nil {
		t.Fatalf("installing Flux's CRDs: %v", err)
	}
	for _, c := range crds {
		t.Logf("CRD %s", c.GetName())
	}

	reg := registrytest.Start(t, registrytest.Options{})
	work := t.TempDir()
	// What flux push artifact writes: one tar+gzip layer.
	if err := os.WriteFile(filepath.Join(work, "app.tar.gz"), tarGz(t, "config.yaml", []byte("value: 1\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "config.yaml"), []byte("value: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oras := registrytest.Oras(t).In(work)
	oras.MustRun(t, append(append([]string{"push"}, reg.OrasFlags("")...),
		reg.Ref("flux/app", "v1"), "app.tar.gz:application/vnd.cncf.flux.content.v1.tar+gzip")...)
	// A plain file, as the bench pushes with ocisync push.
	registrytest.Ocisync(t).In(work).MustRun(t, append(append([]string{"push"}, reg.OcisyncFlags("")...),
		reg.Ref("flux/plain", "v1"), "config.yaml")...)

	// source-controller wants the storage folder to exist.
	storage := t.TempDir()
	storageAddr, metricsAddr, healthAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	args := []string{
		"--storage-path=" + storage,
		"--storage-addr=" + storageAddr,
		"--storage-adv-addr=" + storageAddr,
		"--metrics-addr=" + metricsAddr,
		"--health-addr=" + healthAddr,
		"--enable-leader-election=false",
		"--concurrent=10",
		"--log-encoding=console",
	}
	home := t.TempDir()
	logPath := filepath.Join(home, "source-controller.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + home, "KUBECONFIG=" + kubeconfig}
	cmd.Stdout, cmd.Stderr = logf, logf
	t.Logf("running %s %s with KUBECONFIG", bin, strings.Join(args, " "))
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	logTail := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			t.Logf("source-controller exited with %d after SIGTERM", cmd.ProcessState.ExitCode())
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("source-controller did not exit within 30s of SIGTERM")
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("source-controller log:\n%s", logTail())
		}
	})

	// /readyz answers within 0.2s, but the reconcilers start their
	// workers only after their caches sync, about 2s after the start.
	for {
		resp, err := http.Get("http://" + healthAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("source-controller exited: %s", logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(started) > time.Minute {
			t.Fatalf("source-controller not ready in a minute")
		}
	}
	t.Logf("source-controller /readyz after %s", time.Since(started))

	k8s, err := client.New(cp.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, repo string
		layer      map[string]any
	}{
		{"tgz", "flux/app", nil},
		{"plain", "flux/plain", map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "operation": "copy"}},
	} {
		spec := map[string]any{
			"url":      "oci://" + reg.Host + "/" + tc.repo,
			"ref":      map[string]any{"tag": "v1"},
			"interval": "10m",
			"insecure": true,
		}
		if tc.layer != nil {
			spec["layerSelector"] = tc.layer
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "source.toolkit.fluxcd.io/v1",
			"kind":       "OCIRepository",
			"metadata":   map[string]any{"name": tc.name, "namespace": "default"},
			"spec":       spec,
		}}
		created := time.Now()
		var readyAt time.Time
		if err := k8s.Create(t.Context(), obj); err != nil {
			t.Fatalf("creating OCIRepository %s: %v", tc.name, err)
		}
		for {
			got := &unstructured.Unstructured{}
			got.SetAPIVersion("source.toolkit.fluxcd.io/v1")
			got.SetKind("OCIRepository")
			if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: tc.name}, got); err != nil {
				t.Fatal(err)
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			ready := ""
			msg := ""
			for _, c := range conds {
				m := c.(map[string]any)
				if m["type"] == "Ready" {
					ready, _ = m["status"].(string)
					msg = fmt.Sprint(m["reason"], ": ", m["message"])
				}
			}
			// source-controller patches the Ready condition before
			// status.artifact and status.observedGeneration: done is all three.
			url, _, _ := unstructured.NestedString(got.Object, "status", "artifact", "url")
			observed, _, _ := unstructured.NestedInt64(got.Object, "status", "observedGeneration")
			if ready == "True" && readyAt.IsZero() {
				readyAt = time.Now()
			}
			if ready == "True" && url != "" && observed == got.GetGeneration() {
				t.Logf("%s Ready=True after %s, with artifact and observedGeneration after %s: %s; artifact %s",
					tc.name, readyAt.Sub(created), time.Since(created), msg, url)
				resp, err := http.Get(url)
				if err != nil {
					t.Fatalf("fetching the artifact: %v", err)
				}
				resp.Body.Close()
				t.Logf("GET artifact: %s", resp.Status)
				break
			}
			if time.Since(created) > time.Minute {
				t.Fatalf("%s not Ready in a minute: %s %s", tc.name, ready, msg)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
