//go:build linux

package bench

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// The push run (issue target): a registry's notification of a push makes
// the Artifacts that follow the pushed repository sync at once, an hour
// before their interval, and no other Artifact.
const (
	targetPushN      = 100 // Artifacts, pushPerRepo per repository
	targetPushMedian = 1.0 // seconds from the end of a push to its ConfigMaps
	targetPushMax    = 3.0
	// pushPerRepo is how many Artifacts follow each repository.
	pushPerRepo = 10
	// pushRounds is how many pushes each repository gets, in rotation.
	pushRounds = 2
	// pushInterval is the Artifacts' spec.interval: no poll in the run.
	pushInterval = time.Hour
	// pushQuiet is how long the proxy must see no request after a
	// push's ConfigMaps followed it before the next push: the window in
	// which another repository's request would be counted.
	pushQuiet = time.Second
	// pushTimeout bounds the wait for one push's ConfigMaps.
	pushTimeout = 30 * time.Second
	// pushFile is the file pushed, the ConfigMaps' data key.
	pushFile = "config.yaml"
)

// pushRound is one push and the syncs it brought.
type pushRound struct {
	repo        string
	pushSeconds float64 // the push command's wall time
	latency     float64 // from its end until the repository's ConfigMaps all held the new content
	early       bool    // they did before the command ended (latency 0)
	syncs       int     // the manager's syncs from the push until the proxy was quiet
	pushed      counts  // the proxy's requests for the pushed repository over that window
	others      counts  // the same for every other repository
}

// pushResult is the push run.
type pushResult struct {
	n, repos   int
	concurrent int // 0: the manager has no --concurrent
	rounds     []pushRound
	webhook    counts // the receiver's requests by result (ocisync_webhook_events_total)
	peakRSS    int64
	cpuSeconds float64
}

func (r pushResult) latencies() []float64 {
	var v []float64
	for _, rd := range r.rounds {
		v = append(v, rd.latency)
	}
	return v
}

// others is the other repositories' requests over all pushes.
func (r pushResult) others() counts {
	c := counts{}
	for _, rd := range r.rounds {
		for k, v := range rd.others {
			c[k] += v
		}
	}
	return c
}

// runPush starts the manager with its push receiver and a registry that
// notifies it, n Artifacts following n/pushPerRepo repositories through
// the proxy, then pushes each repository pushRounds times in rotation
// and times each push to its ConfigMaps.
func runPush(t *testing.T, cfg config, n int) pushResult {
	bin := registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)
	if !hasFlag(t, bin, "webhook-bind-address") {
		t.Fatalf("%s has no --webhook-bind-address: rebuild it (make build)", bin)
	}
	repos := n / pushPerRepo
	res := pushResult{n: n, repos: repos}

	kubeconfig, _, k8s := startControlPlane(t)
	if err := k8s.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}); err != nil {
		t.Fatalf("creating namespace %s: %v", benchNamespace, err)
	}
	receiverAddr := freeAddr(t)
	token := rand.Text()
	tokenFile := filepath.Join(t.TempDir(), "webhook-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t, registrytest.Options{Notify: registrytest.Notify{URL: "http://" + receiverAddr + "/hooks/distribution", Token: token}})
	proxy := startProxy(t, reg.URL)

	metricsAddr, healthAddr := freeAddr(t), freeAddr(t)
	args := []string{"manager", "--health-probe-bind-address=" + healthAddr, "--metrics-bind-address=" + metricsAddr,
		"--webhook-bind-address=" + receiverAddr, "--webhook-token-file=" + tokenFile}
	if hasFlag(t, bin, "concurrent") {
		res.concurrent = cfg.concurrent[0]
		args = append(args, fmt.Sprintf("--concurrent=%d", res.concurrent))
	}
	mgr := startProcess(t, bin, kubeconfig, metricsAddr, args)
	waitHealthy(t, mgr, "http://"+healthAddr+"/readyz")

	// The first versions are pushed before the Artifacts exist: their
	// notifications find none to sync.
	pushRepos(t, reg, repos)
	cms := watchConfigMaps(t, k8s, benchNamespace)
	ready := watchReady(t, k8s, n)
	createArtifacts(t, k8s, proxy.Host, n, repos, pushInterval, "")
	waitAllReady(t, mgr, ready, n, 2*time.Minute)
	waitQuiet(t, proxy, 2*pushQuiet, time.Minute)
	t.Logf("%d Artifacts over %d repositories Ready; registry requests so far: %v", n, repos, proxy.snapshot())

	oc := registrytest.Ocisync(t)
	src := t.TempDir()
	for k := range pushRounds * repos {
		r := k % repos
		repo := fmt.Sprintf("bench/repo-%d", r)
		want := fmt.Sprintf("repository: %d\npush: %d\n", r, k+1)
		if err := os.WriteFile(filepath.Join(src, pushFile), []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		var names []string
		for i := r; i < n; i += repos {
			names = append(names, fmt.Sprintf("art-%d", i))
		}
		before, s0 := proxy.snapshotRepos(), mgr.syncs(t)
		start := time.Now()
		oc.In(src).MustRun(t, append(append([]string{"push"}, reg.OcisyncFlags("")...), reg.Ref(repo, "v1"), pushFile)...)
		end := time.Now()
		last, ok := cms.waitContent(names, want, pushTimeout)
		if !ok {
			t.Fatalf("push %d of %s: not all %d ConfigMaps held the new content within %s of the push (%v); manager log:\n%s", k+1, repo, len(names), pushTimeout, cms.behind(names, want), mgr.logTail())
		}
		rd := pushRound{repo: repo, pushSeconds: end.Sub(start).Seconds(), latency: last.Sub(end).Seconds()}
		if rd.latency < 0 {
			rd.latency, rd.early = 0, true
		}
		waitQuiet(t, proxy, pushQuiet, pushTimeout)
		after := proxy.snapshotRepos()
		rd.syncs = mgr.syncs(t) - s0
		rd.pushed, rd.others = after[repo].sub(before[repo]), counts{}
		for name, c := range after {
			if name == repo {
				continue
			}
			for key, v := range c.sub(before[name]) {
				rd.others[key] += v
			}
		}
		t.Logf("push %d of %s: %.2f s to push, then %.3f s until its %d ConfigMaps held it; %d syncs; requests for %s: %v; for the other repositories: %v",
			k+1, repo, rd.pushSeconds, rd.latency, len(names), rd.syncs, repo, rd.pushed, rd.others)
		res.rounds = append(res.rounds, rd)
	}
	res.webhook = webhookResults(t, mgr)
	res.peakRSS = procPeakRSS(t, mgr.pid())
	res.cpuSeconds = mgr.stop(t)
	t.Logf("latency median %.3f s, max %.3f s; other repositories' requests: %v; receiver: %v; manager peak RSS %.1f MiB, CPU %.2f s",
		median(res.latencies()), maxOf(res.latencies()), res.others(), res.webhook, float64(res.peakRSS)/mib, res.cpuSeconds)
	return res
}

// checkPush fails t when the push run measured nothing plausible: each
// push must have brought at least one request per Artifact of its
// repository, or the proxy did not count by repository.
func checkPush(t *testing.T, r pushResult) {
	t.Helper()
	if len(r.rounds) != pushRounds*r.repos {
		t.Errorf("%d pushes measured, want %d", len(r.rounds), pushRounds*r.repos)
	}
	for i, rd := range r.rounds {
		if rd.pushSeconds <= 0 || rd.pushed.total() < pushPerRepo {
			t.Errorf("push %d of %s: %.3f s to push and %d requests for it (%v), want a positive time and at least one request per Artifact (%d)",
				i+1, rd.repo, rd.pushSeconds, rd.pushed.total(), rd.pushed, pushPerRepo)
		}
	}
	if r.webhook["accepted"] == 0 {
		t.Errorf("the receiver accepted no notification: %v", r.webhook)
	}
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// waitQuiet waits until the proxy has counted no request for quiet, and
// logs when it has not within limit.
func waitQuiet(t *testing.T, p *countingProxy, quiet, limit time.Duration) {
	t.Helper()
	last, since := p.snapshot().total(), time.Now()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n := p.snapshot().total(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
	t.Logf("the proxy still counted requests after %s: %v", limit, p.snapshot())
}

var webhookEventsRE = regexp.MustCompile(`(?m)^ocisync_webhook_events_total\{(.*)\} ([0-9.e+]+)$`)

// webhookResults scrapes the manager's ocisync_webhook_events_total, by
// result.
func webhookResults(t *testing.T, m *manager) counts {
	t.Helper()
	c := counts{}
	for _, sm := range webhookEventsRE.FindAllStringSubmatch(m.metrics(t), -1) {
		v, err := strconv.ParseFloat(sm[2], 64)
		if err != nil {
			t.Fatalf("parsing %q of the manager's /metrics: %v", sm[0], err)
		}
		result := "unknown"
		for _, l := range labelRE.FindAllStringSubmatch(sm[1], -1) {
			if l[1] == "result" {
				result = l[2]
			}
		}
		c[result] += int(v)
	}
	return c
}

// configMapWatch follows the pushFile content of the ConfigMaps of a
// namespace, and when the watch saw each arrive.
type configMapWatch struct {
	mu      sync.Mutex
	content map[string]string
	since   map[string]time.Time
	changed chan struct{} // a send, never blocking, after each change
	ended   chan struct{}
}

// watchConfigMaps watches the ConfigMaps of ns until t ends.
func watchConfigMaps(t *testing.T, k8s client.WithWatch, ns string) *configMapWatch {
	t.Helper()
	w, err := k8s.Watch(t.Context(), &corev1.ConfigMapList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatalf("watching the ConfigMaps of %s: %v", ns, err)
	}
	cw := &configMapWatch{content: map[string]string{}, since: map[string]time.Time{}, changed: make(chan struct{}, 1), ended: make(chan struct{})}
	t.Cleanup(func() { w.Stop(); <-cw.ended })
	go func() {
		defer close(cw.ended)
		for ev := range w.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			now := time.Now()
			cw.mu.Lock()
			v := cm.Data[pushFile]
			if old, seen := cw.content[cm.Name]; !seen || old != v {
				cw.content[cm.Name], cw.since[cm.Name] = v, now
			}
			cw.mu.Unlock()
			select {
			case cw.changed <- struct{}{}:
			default:
			}
		}
	}()
	return cw
}

// waitContent waits until every ConfigMap of names holds want and returns
// when the last of them was seen to; false when timeout passes first or
// the watch ends.
func (cw *configMapWatch) waitContent(names []string, want string, timeout time.Duration) (time.Time, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		cw.mu.Lock()
		var last time.Time
		all := true
		for _, name := range names {
			if cw.content[name] != want {
				all = false
				break
			}
			if s := cw.since[name]; s.After(last) {
				last = s
			}
		}
		cw.mu.Unlock()
		if all {
			return last, true
		}
		select {
		case <-cw.changed:
		case <-timer.C:
			return time.Time{}, false
		case <-cw.ended:
			return time.Time{}, false
		}
	}
}

// behind names the ConfigMaps of names that do not hold want.
func (cw *configMapWatch) behind(names []string, want string) []string {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	var out []string
	for _, name := range names {
		if v := cw.content[name]; v != want {
			out = append(out, fmt.Sprintf("%s holds %q", name, v))
		}
	}
	return out
}
