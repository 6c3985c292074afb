//go:build linux

package bench

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// The cluster noise run (issue target): Artifacts among many Secrets and
// ConfigMaps that are none of the manager's business.
const (
	noiseArtifacts  = 20
	noiseSecretSize = 48 << 10 // a Helm release revision
	noiseCMSize     = 32 << 10
	targetNoise     = 1500 // Secrets and ConfigMaps each, at full size
	targetNoiseRSS  = 8 * mib
	// noiseInFlight bounds the noise creates in flight.
	noiseInFlight = 16
)

// noiseRun is one fresh manager's run over noiseArtifacts Artifacts, with
// or without the noise objects.
type noiseRun struct {
	noise         bool
	readySeconds  float64 // from the manager's start until all were Ready
	followed      bool    // every Artifact was Ready for the pushed digest
	followSeconds float64 // from the push until all followed it
	peakRSS       int64
	createSeconds float64 // creating the noise objects
}

// noiseResult is the quiet and the noisy run.
type noiseResult struct {
	artifacts, secrets, configMaps, namespaces int
	quiet, noisy                               noiseRun
}

func (r noiseResult) growth() int64 { return r.noisy.peakRSS - r.quiet.peakRSS }

// runNoise runs the quiet and then the noisy run on one control plane
// and registry, each with a fresh manager that finds its Artifacts not
// yet Ready: between the runs the Artifacts and their ConfigMaps are
// deleted and created anew, then the noise is created, all before the
// manager starts, since what matters is what it lists at start-up.
func runNoise(t *testing.T, cfg config) noiseResult {
	res := noiseResult{artifacts: noiseArtifacts, secrets: cfg.noise, configMaps: cfg.noise, namespaces: cfg.noiseNS}
	bin := registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)
	repos := min(cfg.repos, noiseArtifacts)

	kubeconfig, _, k8s := startControlPlane(t)
	reg := registrytest.Start(t, registrytest.Options{})
	proxy := startProxy(t, reg.URL)
	pushRepos(t, reg, repos)
	if err := k8s.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}); err != nil {
		t.Fatalf("creating namespace %s: %v", benchNamespace, err)
	}

	once := func(t *testing.T, noise bool, version int) noiseRun {
		run := noiseRun{noise: noise}
		createArtifacts(t, k8s, proxy.Host, noiseArtifacts, repos, cfg.interval, "")
		if noise {
			start := time.Now()
			createNoise(t, k8s, cfg.noise, cfg.noiseNS)
			run.createSeconds = time.Since(start).Seconds()
			t.Logf("created %d Secrets of %d KiB and %d ConfigMaps of %d KiB in %d namespaces in %.1f s",
				cfg.noise, noiseSecretSize>>10, cfg.noise, noiseCMSize>>10, cfg.noiseNS, run.createSeconds)
		}
		ready := watchReady(t, k8s, noiseArtifacts)
		metricsAddr := freeAddr(t)
		args := []string{"manager", "--health-probe-bind-address=0", "--metrics-bind-address=" + metricsAddr}
		if hasFlag(t, bin, "concurrent") {
			args = append(args, fmt.Sprintf("--concurrent=%d", cfg.concurrent[0]))
		}
		mgr := startProcess(t, bin, kubeconfig, metricsAddr, args)
		start := time.Now()
		waitAllReady(t, mgr, ready, noiseArtifacts, 2*time.Minute)
		run.readySeconds = time.Since(start).Seconds()

		// A new version under the same tag: each Artifact must follow it
		// on its next poll.
		want := pushNewVersion(t, reg, repos, version)
		start = time.Now()
		run.followed = waitFollowed(t, k8s, noiseArtifacts, repos, want, 2*cfg.interval+time.Minute)
		run.followSeconds = time.Since(start).Seconds()
		run.peakRSS = procPeakRSS(t, mgr.pid())
		mgr.stop(t)
		t.Logf("noise %v: %d Artifacts Ready in %.2f s, followed the push: %v in %.2f s; manager peak RSS %.1f MiB",
			noise, noiseArtifacts, run.readySeconds, run.followed, run.followSeconds, float64(run.peakRSS)/mib)
		return run
	}
	t.Run("quiet", func(t *testing.T) { res.quiet = once(t, false, 2) })
	if t.Failed() {
		return res
	}
	// No garbage collector runs here: the Artifacts' ConfigMaps go by hand.
	ctx := t.Context()
	if err := k8s.DeleteAllOf(ctx, &ocisyncv1alpha1.Artifact{}, client.InNamespace(benchNamespace)); err != nil {
		t.Fatalf("deleting the quiet run's Artifacts: %v", err)
	}
	if err := k8s.DeleteAllOf(ctx, &corev1.ConfigMap{}, client.InNamespace(benchNamespace), client.HasLabels{ocisyncv1alpha1.LabelArtifactName}); err != nil {
		t.Fatalf("deleting the quiet run's ConfigMaps: %v", err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var arts ocisyncv1alpha1.ArtifactList
		var cms corev1.ConfigMapList
		if err := k8s.List(ctx, &arts, client.InNamespace(benchNamespace)); err != nil {
			t.Fatal(err)
		}
		if err := k8s.List(ctx, &cms, client.InNamespace(benchNamespace), client.HasLabels{ocisyncv1alpha1.LabelArtifactName}); err != nil {
			t.Fatal(err)
		}
		if len(arts.Items)+len(cms.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Artifacts and %d ConfigMaps of the quiet run are still there after a minute", len(arts.Items), len(cms.Items))
		}
	}
	t.Run("noisy", func(t *testing.T) { res.noisy = once(t, true, 3) })
	return res
}

// createNoise creates count Secrets of type helm.sh/release.v1 and count
// ConfigMaps, of random content, spread over namespaces noise-<i>,
// noiseInFlight creates at a time.
func createNoise(t *testing.T, k8s client.Client, count, namespaces int) {
	t.Helper()
	ctx := t.Context()
	for i := range namespaces {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("noise-%d", i)}}); err != nil {
			t.Fatalf("creating namespace noise-%d: %v", i, err)
		}
	}
	next := make(chan client.Object)
	errs := make(chan error, 2*count)
	var wg sync.WaitGroup
	for range noiseInFlight {
		wg.Go(func() {
			for o := range next {
				if err := k8s.Create(ctx, o); err != nil {
					errs <- fmt.Errorf("creating %T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
				}
			}
		})
	}
	for i := range count {
		ns := fmt.Sprintf("noise-%d", i%namespaces)
		release := fmt.Sprintf("release-%d", i/namespaces)
		// Helm's own labels and naming of a release revision.
		next <- &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("sh.helm.release.v1.%s.v1", release),
				Labels: map[string]string{"owner": "helm", "name": release, "status": "deployed", "version": "1"}},
			Type: "helm.sh/release.v1",
			Data: map[string][]byte{"release": randomBytes(t, noiseSecretSize)},
		}
		next <- &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("noise-%d", i/namespaces)},
			Data:       map[string]string{"data": base64.StdEncoding.EncodeToString(randomBytes(t, noiseCMSize*3/4))},
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// pushNewVersion pushes content of version as bench/repo-<i>:v1 for each of
// repos repositories and returns the new manifest digest of each.
func pushNewVersion(t *testing.T, reg *registrytest.Registry, repos, version int) []string {
	t.Helper()
	oc := registrytest.Ocisync(t)
	digests := make([]string, repos)
	for i := range repos {
		dir := t.TempDir()
		data := fmt.Appendf(nil, "repository: %d\nversion: %d\n", i, version)
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		repo := fmt.Sprintf("bench/repo-%d", i)
		oc.In(dir).MustRun(t, append(append([]string{"push"}, reg.OcisyncFlags("")...), reg.Ref(repo, "v1"), "config.yaml")...)
		digests[i] = manifestDigest(t, reg, repo, "v1")
	}
	return digests
}

// manifestDigest is the registry's Docker-Content-Digest of repo:tag.
func manifestDigest(t *testing.T, reg *registrytest.Registry, repo, tag string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, reg.URL+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatalf("HEAD of the manifest %s:%s: %v", repo, tag, err)
	}
	resp.Body.Close()
	d := resp.Header.Get("Docker-Content-Digest")
	if resp.StatusCode != http.StatusOK || d == "" {
		t.Fatalf("HEAD of the manifest %s:%s: %s with digest %q, want 200 OK and a digest", repo, tag, resp.Status, d)
	}
	return d
}

// waitFollowed polls the Artifacts until each art-<i> is Ready for its
// generation with status.digest want[i mod len(want)], or timeout passes;
// it reports whether all did, logging those that did not.
func waitFollowed(t *testing.T, k8s client.Client, n, repos int, want []string, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var list ocisyncv1alpha1.ArtifactList
		if err := k8s.List(t.Context(), &list, client.InNamespace(benchNamespace)); err != nil {
			t.Fatalf("listing Artifacts: %v", err)
		}
		var behind []string
		for _, a := range list.Items {
			var i int
			if _, err := fmt.Sscanf(a.Name, "art-%d", &i); err != nil {
				continue
			}
			c := apimeta.FindStatusCondition(a.Status.Conditions, ocisyncv1alpha1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionTrue || a.Status.ObservedGeneration != a.Generation || a.Status.Digest != want[i%repos] {
				behind = append(behind, fmt.Sprintf("%s (digest %s)", a.Name, a.Status.Digest))
			}
		}
		if len(behind) == 0 && len(list.Items) >= n {
			return true
		}
		if time.Now().After(deadline) {
			t.Logf("%d of %d Artifacts did not follow the push within %s: %v", len(behind), n, timeout, behind)
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}
