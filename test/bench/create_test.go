//go:build linux

package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// The run of Artifacts created while the manager runs (issue target): as
// a GitOps apply meets a running manager, beside Flux source-controller
// doing the same with OCIRepositories.
const (
	targetCreateN     = 1000
	targetCreateRatio = 0.2 // of Flux's time, in the same run
	// createInFlight is how many creates the harness has in flight, as
	// an apply of many objects does.
	createInFlight = 8
	// createWarmup is how many objects of each kind are created, and left
	// alone, before the rounds.
	createWarmup = 100
	// fluxVersion is the source-controller release make flux builds.
	fluxVersion = "v1.9.6"
)

var ociRepositoryGVK = schema.GroupVersionKind{Group: "source.toolkit.fluxcd.io", Version: "v1", Kind: "OCIRepository"}

// createRound is one tool's round: a fresh process, then n objects created
// in a namespace of their own that it alone watches.
type createRound struct {
	tool          string // "ocisync" or "flux"
	createSeconds float64
	readySeconds  float64 // from the first create until all were Ready
	peakRSS       int64
	cpuSeconds    float64 // the tool's CPU, user and system, over the round
	registry      counts  // registry requests until all were Ready
	writes        int     // API writes until all were Ready
	byRes         map[string]int
}

// createResult is the rounds of one run, in the order they ran.
type createResult struct {
	n        int
	interval time.Duration
	rounds   []createRound
}

// median is the median Ready time of tool's rounds, 0 when it ran none.
func (r createResult) median(tool string) float64 {
	var v []float64
	for _, rd := range r.rounds {
		if rd.tool == tool {
			v = append(v, rd.readySeconds)
		}
	}
	return median(v)
}

// runCreate runs rounds of n objects created while the tool runs: with
// Flux, ocisync, Flux, Flux, ocisync, ocisync, Flux (so that neither
// always goes first on a control plane that grows with each round, and a
// median of three leaves out one slow round); without, ocisync twice.
func runCreate(t *testing.T, cfg config, n int) createResult {
	res := createResult{n: n, interval: scaleInterval(cfg.interval, n)}
	repos := min(cfg.repos, n)
	kubeconfig, rc, k8s := startControlPlane(t)
	cs := clientset(t, rc)
	reg := registrytest.Start(t, registrytest.Options{})
	proxy := startProxy(t, reg.URL)
	pushRepos(t, reg, repos)
	order := []string{"ocisync", "ocisync"}
	if cfg.flux != "" {
		if _, err := envtest.InstallCRDs(rc, envtest.CRDInstallOptions{Paths: []string{cfg.fluxCRDs}, ErrorIfPathMissing: true}); err != nil {
			t.Fatalf("installing Flux's CRDs from %s: %v", cfg.fluxCRDs, err)
		}
		order = []string{"ocisync", "flux", "flux", "ocisync", "ocisync", "flux"}
	}
	mediaType := layerMediaType(t, reg)
	// The API server's first create of a kind is slower than the rest
	// (its handlers and caches warm up): done once here, uncounted, so
	// that the first round does not pay for it.
	warm := "create-warmup"
	if err := k8s.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: warm}}); err != nil {
		t.Fatalf("creating namespace %s: %v", warm, err)
	}
	createObjects(t, k8s, createWarmup, func(i int) client.Object { return artifact(warm, i, proxy.Host, repos, res.interval) })
	if cfg.flux != "" {
		createObjects(t, k8s, createWarmup, func(i int) client.Object { return ociRepository(warm, i, proxy.Host, repos, res.interval, mediaType) })
	}
	for i, tool := range order {
		ns := fmt.Sprintf("create-%d-%s", i, tool)
		if err := k8s.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
		var rd createRound
		t.Run(ns, func(t *testing.T) {
			rd = createOnce(t, cfg, tool, ns, kubeconfig, k8s, cs, proxy, n, repos, res.interval, mediaType)
		})
		if t.Failed() {
			return res
		}
		res.rounds = append(res.rounds, rd)
	}
	return res
}

// createOnce is one round: start the tool scoped to ns, wait until it is
// ready, then create n objects and time them to Ready.
func createOnce(t *testing.T, cfg config, tool, ns, kubeconfig string, k8s client.WithWatch, cs *kubernetes.Clientset, proxy *countingProxy, n, repos int, interval time.Duration, mediaType string) createRound {
	rd := createRound{tool: tool, byRes: map[string]int{}}
	healthAddr := freeAddr(t)
	var p *manager
	gvk := ocisyncv1alpha1.GroupVersion.WithKind("Artifact")
	switch tool {
	case "ocisync":
		metricsAddr := freeAddr(t)
		p = startProcess(t, registrytest.BinaryFromEnv(t, registrytest.EnvOcisync), kubeconfig, metricsAddr, []string{"manager",
			"--health-probe-bind-address=" + healthAddr, "--metrics-bind-address=" + metricsAddr,
			"--watch-namespaces=" + ns, fmt.Sprintf("--concurrent=%d", cfg.concurrent[0])})
	case "flux":
		gvk = ociRepositoryGVK
		p = startFlux(t, cfg.flux, kubeconfig, ns, healthAddr, cfg.concurrent[0])
	}
	waitHealthy(t, p, "http://"+healthAddr+"/readyz")
	// Informers list and start their watches after the probes answer;
	// give both tools the same second to do so before the first create.
	time.Sleep(time.Second)

	ready := watchReadyGVK(t, k8s, gvk, ns, n)
	cpu0 := procCPUSeconds(t, p.pid())
	w0, p0 := apiWrites(t, cs), proxy.snapshot()
	start := time.Now()
	obj := func(i int) client.Object { return ociRepository(ns, i, proxy.Host, repos, interval, mediaType) }
	if tool == "ocisync" {
		obj = func(i int) client.Object { return artifact(ns, i, proxy.Host, repos, interval) }
	}
	createObjects(t, k8s, n, obj)
	rd.createSeconds = time.Since(start).Seconds()
	waitAllReady(t, p, ready, n, 2*time.Minute+time.Duration(n)*200*time.Millisecond)
	rd.readySeconds = time.Since(start).Seconds()
	rd.registry = proxy.snapshot().sub(p0)
	rd.writes = writesBetween(w0, apiWrites(t, cs), rd.byRes)
	rd.peakRSS = procPeakRSS(t, p.pid())
	rd.cpuSeconds = procCPUSeconds(t, p.pid()) - cpu0
	p.stop(t)
	t.Logf("%s: %d created in %.2f s, all Ready %.2f s after the first create; peak RSS %.1f MiB, CPU %.2f s; registry %v; API writes %d %v",
		tool, n, rd.createSeconds, rd.readySeconds, float64(rd.peakRSS)/mib, rd.cpuSeconds, rd.registry, rd.writes, rd.byRes)
	return rd
}

// startFlux starts Flux source-controller watching namespace ns alone,
// its storage in a temporary folder, leader election off.
func startFlux(t *testing.T, bin, kubeconfig, ns, healthAddr string, concurrent int) *manager {
	t.Helper()
	storage := t.TempDir() // it must exist
	storageAddr := freeAddr(t)
	metricsAddr := freeAddr(t)
	// It has no --kubeconfig flag: $KUBECONFIG leads it to the cluster.
	return startProcess(t, bin, kubeconfig, metricsAddr, []string{
		"--storage-path=" + storage, "--storage-addr=" + storageAddr, "--storage-adv-addr=" + storageAddr,
		"--metrics-addr=" + metricsAddr, "--health-addr=" + healthAddr, "--enable-leader-election=false",
		"--watch-all-namespaces=false", fmt.Sprintf("--concurrent=%d", concurrent), "--log-level=error",
	}, "RUNTIME_NAMESPACE="+ns)
}

// waitHealthy waits until url answers 200.
func waitHealthy(t *testing.T, m *manager, url string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-m.exited:
			t.Fatalf("%s exited before it was ready; its log:\n%s", m.cmd.Path, m.logTail())
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s did not answer 200 within a minute; the log:\n%s", url, m.logTail())
}

// createObjects creates n objects made by obj, createInFlight at once.
func createObjects(t *testing.T, k8s client.Client, n int, obj func(i int) client.Object) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range createInFlight {
		wg.Go(func() {
			for i := range next {
				o := obj(i)
				if err := k8s.Create(t.Context(), o); err != nil {
					errs <- fmt.Errorf("creating %s: %w", o.GetName(), err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// ociRepository is the Flux counterpart of the Artifact art-<i>: the same
// repository and tag through the proxy, plain HTTP, the layer of the
// given media type kept as it is (copy: no tar to extract).
func ociRepository(ns string, i int, host string, repos int, interval time.Duration, mediaType string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"namespace": ns, "name": fmt.Sprintf("oci-%d", i)},
		"spec": map[string]any{
			"url":           fmt.Sprintf("oci://%s/bench/repo-%d", host, i%repos),
			"ref":           map[string]any{"tag": "v1"},
			"insecure":      true,
			"interval":      interval.String(),
			"layerSelector": map[string]any{"mediaType": mediaType, "operation": "copy"},
		},
	}}
	u.SetGroupVersionKind(ociRepositoryGVK)
	return u
}

// layerMediaType is the media type of the layer pushRepos pushed.
func layerMediaType(t *testing.T, reg *registrytest.Registry) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL+"/v2/bench/repo-0/manifests/v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatalf("fetching the manifest of bench/repo-0:v1: %v", err)
	}
	defer resp.Body.Close()
	var m struct{ Layers []struct{ MediaType string } }
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("decoding the manifest of bench/repo-0:v1 (%s): %v, %d layers", resp.Status, err, len(m.Layers))
	}
	return m.Layers[0].MediaType
}

// watchReadyGVK is watchReady for objects of any kind with the usual
// Ready condition and status.observedGeneration, read unstructured.
func watchReadyGVK(t *testing.T, k8s client.WithWatch, gvk schema.GroupVersionKind, ns string, n int) <-chan struct{} {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	w, err := k8s.Watch(t.Context(), list, client.InNamespace(ns))
	if err != nil {
		t.Fatalf("watching %s in %s: %v", gvk.Kind, ns, err)
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { w.Stop(); <-stopped })
	go func() {
		defer close(stopped)
		ready := map[string]bool{}
		count := 0
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type == watch.Error {
				continue
			}
			now := ev.Type != watch.Deleted && readyFor(u)
			if now != ready[u.GetName()] {
				if now {
					count++
				} else {
					count--
				}
				ready[u.GetName()] = now
			}
			if count == n {
				close(done)
				for range w.ResultChan() {
				}
				return
			}
		}
	}()
	return done
}

// readyFor says whether u's Ready condition is True for its generation.
// Of an OCIRepository, the artifact stored must show too: Flux writes
// Ready before it records the artifact and the generation it observed.
func readyFor(u *unstructured.Unstructured) bool {
	observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	if observed != u.GetGeneration() {
		return false
	}
	if u.GroupVersionKind().GroupKind() == ociRepositoryGVK.GroupKind() {
		if url, _, _ := unstructured.NestedString(u.Object, "status", "artifact", "url"); url == "" {
			return false
		}
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == "Ready" {
			return m["status"] == "True"
		}
	}
	return false
}
