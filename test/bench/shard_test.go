//go:build linux

package bench

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// The shard run (issue target): two managers with disjoint selectors
// split the Artifacts, and each holds about half of what one would.
const (
	targetShardN = 2000
	// targetShardShare bounds a shard's memory for its Artifacts (live
	// heap beyond the baseline's) as a share of one manager's for all:
	// "about half", with room for one run differing from the next.
	targetShardShare = 0.6
	shardLabel       = "ocisync.io/shard"
)

// shardManager is what one manager of the shard run measured.
type shardManager struct {
	selector    string // its --watch-label-selector, "" for all
	cached      int    // Artifacts in its cache (ocisync_artifacts)
	published   int    // its syncs that published
	steadySyncs int    // its syncs over one steady interval
	peakRSS     int64
	liveHeap    int64 // heap in use after a forced GC, once all were Ready
	cpuSeconds  float64
}

// shardResult is one manager over n Artifacts, then two shards over n
// others, on one control plane and registry.
type shardResult struct {
	n            int
	interval     time.Duration
	baseHeap     int64 // live heap of a manager with one Artifact per repository
	baseRSS      int64
	one          shardManager
	oneReady     float64 // seconds from its start until all were Ready
	shards       [2]shardManager
	shardsReady  float64 // seconds from their start until all were Ready
	shardsWrites int     // API writes until all were Ready, both shards
	oneWrites    int
	cached       cachedSizes
}

// share is a shard's memory for its Artifacts as a share of one manager's
// for all: live heap beyond the baseline's.
func (r shardResult) share(m shardManager) float64 {
	return float64(m.liveHeap-r.baseHeap) / float64(r.one.liveHeap-r.baseHeap)
}

// runShard measures, each in a namespace of its own that only its
// managers watch (--watch-namespaces): a manager with one Artifact per
// repository (the baseline), one
// manager over n Artifacts, and two managers whose selectors split n
// other Artifacts by the label ocisync.io/shard (a for even, b for odd).
func runShard(t *testing.T, cfg config, n int) shardResult {
	bin := registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)
	res := shardResult{n: n, interval: scaleInterval(cfg.interval, n)}
	repos := min(cfg.repos, n)
	kubeconfig, rc, k8s := startControlPlane(t)
	reg := registrytest.Start(t, registrytest.Options{})
	proxy := startProxy(t, reg.URL)
	pushRepos(t, reg, repos)
	ctx := t.Context()
	for _, ns := range []string{"shard-base", "shard-one", "shard-split"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
	byParity := func(i int) map[string]string {
		if i%2 == 0 {
			return map[string]string{shardLabel: "a"}
		}
		return map[string]string{shardLabel: "b"}
	}
	start := func(ns, selector string) (*manager, string) {
		metricsAddr, pprofAddr := freeAddr(t), freeAddr(t)
		args := []string{"manager", "--health-probe-bind-address=0", "--metrics-bind-address=" + metricsAddr,
			"--pprof-bind-address=" + pprofAddr, "--watch-namespaces=" + ns, fmt.Sprintf("--concurrent=%d", cfg.concurrent[0])}
		if selector != "" {
			args = append(args, "--watch-label-selector="+selector)
		}
		return startProcess(t, bin, kubeconfig, metricsAddr, args), pprofAddr
	}
	measure := func(m *manager, pprofAddr, selector string, steady int) shardManager {
		r := shardManager{selector: selector, steadySyncs: steady}
		r.liveHeap = liveHeap(t, m, pprofAddr)
		r.cached = m.cachedArtifacts(t)
		r.published = m.syncResults(t)["published"]
		r.peakRSS = procPeakRSS(t, m.pid())
		r.cpuSeconds = m.stop(t)
		t.Logf("manager %q: %d Artifacts cached, %d published, %d syncs in the steady interval, live heap %.1f MiB, peak RSS %.1f MiB, CPU %.2f s",
			selector, r.cached, r.published, steady, float64(r.liveHeap)/mib, float64(r.peakRSS)/mib, r.cpuSeconds)
		return r
	}

	// The baseline: a manager with one Artifact per repository, so that
	// it holds what every manager that syncs holds whatever the number of
	// Artifacts (clients and connections to the registry and the API
	// server, its caches' informers), and so little else.
	createArtifactsIn(t, k8s, "shard-base", proxy.Host, repos, repos, res.interval, "", nil)
	ready := watchReadyIn(t, k8s, "shard-base", repos)
	base, basePprof := start("shard-base", "")
	waitAllReady(t, base, ready, repos, 2*time.Minute)
	time.Sleep(res.interval)
	res.baseHeap = liveHeap(t, base, basePprof)
	res.baseRSS = procPeakRSS(t, base.pid())
	base.stop(t)

	cs := clientset(t, rc)
	createArtifactsIn(t, k8s, "shard-one", proxy.Host, n, repos, res.interval, "", byParity)
	ready = watchReadyIn(t, k8s, "shard-one", n)
	w0 := apiWrites(t, cs)
	one, onePprof := start("shard-one", "")
	t0 := time.Now()
	waitAllReady(t, one, ready, n, 2*time.Minute+time.Duration(n)*100*time.Millisecond)
	res.oneReady = time.Since(t0).Seconds()
	res.oneWrites = writesBetween(w0, apiWrites(t, cs), map[string]int{})
	res.one = measure(one, onePprof, "", steadySyncs(t, res.interval, one)[0])

	createArtifactsIn(t, k8s, "shard-split", proxy.Host, n, repos, res.interval, "", byParity)
	ready = watchReadyIn(t, k8s, "shard-split", n)
	w0 = apiWrites(t, cs)
	a, aPprof := start("shard-split", shardLabel+"=a")
	b, bPprof := start("shard-split", shardLabel+"=b")
	t0 = time.Now()
	select {
	case <-ready:
	case <-a.exited:
		t.Fatalf("shard a exited before all %d Artifacts were Ready; its log:\n%s", n, a.logTail())
	case <-b.exited:
		t.Fatalf("shard b exited before all %d Artifacts were Ready; its log:\n%s", n, b.logTail())
	case <-time.After(2*time.Minute + time.Duration(n)*100*time.Millisecond):
		t.Fatalf("not all %d Artifacts were Ready; shard a's log:\n%s\nshard b's log:\n%s", n, a.logTail(), b.logTail())
	}
	res.shardsReady = time.Since(t0).Seconds()
	res.shardsWrites = writesBetween(w0, apiWrites(t, cs), map[string]int{})
	steady := steadySyncs(t, res.interval, a, b)
	res.shards[0] = measure(a, aPprof, shardLabel+"=a", steady[0])
	res.shards[1] = measure(b, bPprof, shardLabel+"=b", steady[1])
	res.cached = measureCachedForms(t, k8s, "shard-split")
	return res
}

// clientset is a clientset for the harness's config.
func clientset(t *testing.T, rc *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatalf("creating a clientset for the test cluster: %v", err)
	}
	return cs
}

// steadySyncs lets one interval pass after the first syncs, then counts
// each manager's syncs over the next.
func steadySyncs(t *testing.T, interval time.Duration, ms ...*manager) []int {
	t.Helper()
	time.Sleep(interval)
	before := make([]int, len(ms))
	for i, m := range ms {
		before[i] = m.syncs(t)
	}
	time.Sleep(interval)
	out := make([]int, len(ms))
	for i, m := range ms {
		out[i] = m.syncs(t) - before[i]
	}
	return out
}

var (
	heapAllocRE = regexp.MustCompile(`(?m)^go_memstats_heap_alloc_bytes ([0-9.e+]+)$`)
	artifactsRE = regexp.MustCompile(`(?m)^ocisync_artifacts\{[^}]*\} ([0-9.e+]+)$`)
)

// liveHeap forces a garbage collection in the manager (its heap profile
// with gc=1) and then reads its heap in use from /metrics: the memory its
// objects hold, without what the collector has yet to reclaim. The least
// of three readings, half a second apart: a sync or a poll under way
// holds buffers that are not the Artifacts'.
func liveHeap(t *testing.T, m *manager, pprofAddr string) int64 {
	t.Helper()
	var least int64
	for i := range 3 {
		if i > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		if b := <-fetchProfile(t, pprofAddr, "heap?gc=1"); b == nil {
			t.Fatalf("could not force a garbage collection in the manager (see the log above)")
		}
		v := scrapeMetric(t, m, heapAllocRE)
		if len(v) != 1 {
			t.Fatalf("the manager's /metrics has %d go_memstats_heap_alloc_bytes samples, want 1", len(v))
		}
		if i == 0 || int64(v[0]) < least {
			least = int64(v[0])
		}
	}
	return least
}

// cachedArtifacts is the sum of the manager's ocisync_artifacts gauge:
// the Artifacts its cache holds.
func (m *manager) cachedArtifacts(t *testing.T) int {
	t.Helper()
	sum := 0.0
	for _, v := range scrapeMetric(t, m, artifactsRE) {
		sum += v
	}
	return int(sum)
}

// scrapeMetric reads the manager's /metrics and returns the first group
// of each match of re, as numbers.
func scrapeMetric(t *testing.T, m *manager, re *regexp.Regexp) []float64 {
	t.Helper()
	var out []float64
	for _, sm := range re.FindAllStringSubmatch(m.metrics(t), -1) {
		v, err := strconv.ParseFloat(strings.TrimSpace(sm[1]), 64)
		if err != nil {
			t.Fatalf("parsing %q of the manager's /metrics: %v", sm[0], err)
		}
		out = append(out, v)
	}
	return out
}

// checkShard fails t when a shard reconciled an Artifact of the other, or
// missed one of its own: the harness or the selector is broken then.
// Whether each shard holds about half is what the report says.
func checkShard(t *testing.T, r shardResult) {
	t.Helper()
	half := r.n / 2
	if r.one.cached != r.n || r.one.published != r.n {
		t.Errorf("one manager over %d Artifacts cached %d and published %d, want %d each", r.n, r.one.cached, r.one.published, r.n)
	}
	for _, s := range r.shards {
		if s.cached != half || s.published != half {
			t.Errorf("shard %s cached %d Artifacts and published %d, want exactly its own %d each", s.selector, s.cached, s.published, half)
		}
		if s.liveHeap <= 0 || s.peakRSS <= 0 {
			t.Errorf("shard %s: live heap %d and peak RSS %d bytes, want both positive", s.selector, s.liveHeap, s.peakRSS)
		}
	}
}
