//go:build linux

package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/test/controlplane"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

const benchNamespace = "ocisync-bench"

// scaleResult is what one scale run measured.
type scaleResult struct {
	n, repos      int
	distinctBlobs int
	concurrent    int // 0: the manager has no --concurrent
	interval      time.Duration
	readySeconds  float64
	cpuAtReady    float64 // manager CPU seconds when the last Artifact became Ready
	cpuSeconds    float64 // manager CPU seconds over the whole run
	peakRSS       int64   // manager VmHWM in bytes
	liveHeap      int64   // manager heap in use after a forced GC once all were Ready (0: not measured)
	eventsDropped int     // Events the manager recorded but dropped (ocisync_events_dropped_total)
	first         counts  // registry requests until all were Ready
	firstSyncs    int     // syncs the manager logged until all were Ready
	firstWrites   int     // API writes until all were Ready
	firstByRes    map[string]int
	// CPU seconds of the control plane and the registry until all were
	// Ready, by process name: where the time goes besides the manager.
	firstCPU     map[string]float64
	steady       counts // registry requests over one interval in steady state
	steadySyncs  int
	steadyWrites int
	steadyByRes  map[string]int
	syncResults  counts // the manager's syncs over the whole run, by result
	// verify is set for a run with signature verification: each
	// repository signed, each Artifact with spec.verify. verified is the
	// Artifacts whose status.verified named their published digest at
	// the end.
	verify   bool
	verified int
	// token is set for a run against a token-auth registry; the token
	// requests are counted at the issuer, which the registry's challenge
	// names directly, so they never pass the proxy.
	token        bool
	expiresIn    time.Duration // the token lifetime the issuer gave
	firstTokens  counts        // token requests until all were Ready
	steadyTokens counts        // token requests over the steady interval
	// profiles holds the manager's pprof top lines when profiling was
	// asked for (OCISYNC_BENCH_PROFILE_DIR).
	cpuProfile, heapProfile string
	// apiProfile is the same for kube-apiserver, by cumulative time:
	// which requests its CPU went to.
	apiProfile string
}

// scaleInterval is the Artifacts' spec.interval for a run of n: at least
// 10 ms per Artifact, so that the polls of the steady state (n per
// interval) stay within what two cores serve, and the first syncs end
// before the first Artifacts poll again.
func scaleInterval(interval time.Duration, n int) time.Duration {
	return max(interval, time.Duration(n)*10*time.Millisecond)
}

// scaleOpts are the variants of a scale run.
type scaleOpts struct {
	// token: against a token-auth registry, each Artifact with a pull
	// Secret.
	token bool
	// verify: each repository's manifest signed (signRepos), each
	// Artifact with spec.verify naming a Secret of the public key.
	verify bool
}

// runScale measures n Artifacts against an anonymous registry, or as
// opts says.
func runScale(t *testing.T, cfg config, n, concurrent int, opts scaleOpts) scaleResult {
	bin := registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)
	token := opts.token
	res := scaleResult{n: n, repos: min(cfg.repos, n), interval: scaleInterval(cfg.interval, n), firstByRes: map[string]int{}, steadyByRes: map[string]int{}, token: token, verify: opts.verify}

	kubeconfig, rc, k8s := startControlPlane(t)
	cs := clientset(t, rc)

	regOpts := registrytest.Options{}
	if token {
		regOpts = registrytest.Options{Auth: registrytest.AuthToken, Users: []registrytest.User{{Name: benchUser, Password: rand.Text()}}}
	}
	reg := registrytest.Start(t, regOpts)
	proxy := startProxy(t, reg.URL)
	res.distinctBlobs = pushRepos(t, reg, res.repos)
	var pub []byte
	if opts.verify {
		pub = signRepos(t, reg, proxy, res.repos)
	}

	ctx := t.Context()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}); err != nil {
		t.Fatalf("creating namespace %s: %v", benchNamespace, err)
	}
	pullSecret := ""
	if token {
		pullSecret = createPullSecret(t, k8s, reg, proxy.Host)
		res.expiresIn = tokenLifetime(t, reg)
	}
	verifySecret := ""
	if opts.verify {
		verifySecret = createVerifySecret(t, k8s, benchNamespace, pub)
	}
	createObjects(t, k8s, n, func(i int) client.Object {
		a := artifact(benchNamespace, i, proxy.Host, res.repos, res.interval)
		if pullSecret != "" {
			a.Spec.PullSecrets = []corev1.LocalObjectReference{{Name: pullSecret}}
		}
		if verifySecret != "" {
			a.Spec.Verify = &ocisyncv1alpha1.VerifySpec{Provider: ocisyncv1alpha1.VerifyProviderCosign, SecretRef: corev1.LocalObjectReference{Name: verifySecret}}
		}
		return a
	})

	// Watch before the manager starts: the watch's first events are the
	// Artifacts as they are, none Ready.
	ready := watchReady(t, k8s, n)
	w0 := apiWrites(t, cs)
	p0, t0 := proxy.snapshot(), issuerCounts(reg)

	metricsAddr := freeAddr(t)
	args := []string{"manager", "--health-probe-bind-address=0", "--metrics-bind-address=" + metricsAddr}
	if hasFlag(t, bin, "concurrent") {
		res.concurrent = concurrent
		args = append(args, fmt.Sprintf("--concurrent=%d", concurrent))
	}
	pprofAddr := ""
	if cfg.profileDir != "" && hasFlag(t, bin, "pprof-bind-address") {
		pprofAddr = freeAddr(t)
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	cpu0, self0 := childrenCPU(t), procCPUSeconds(t, os.Getpid())
	mgr := startProcess(t, bin, kubeconfig, metricsAddr, args)
	start := time.Now()
	var cpuProfile <-chan []byte
	if pprofAddr != "" {
		// From the start through the first sync and part of the steady
		// state, which is idle but for the polls.
		cpuProfile = fetchProfile(t, pprofAddr, fmt.Sprintf("profile?seconds=%d", int((2*res.interval).Seconds())))
	}
	var apiProfile <-chan []byte
	if cfg.profileDir != "" {
		apiProfile = fetchAPIServerProfile(t, rc, 2*res.interval)
	}
	waitAllReady(t, mgr, ready, n, 2*time.Minute+time.Duration(n)*100*time.Millisecond)
	res.readySeconds = time.Since(start).Seconds()
	res.cpuAtReady = procCPUSeconds(t, mgr.pid())
	w1 := apiWrites(t, cs)
	res.first = proxy.snapshot().sub(p0)
	res.firstTokens = issuerCounts(reg).sub(t0)
	res.firstSyncs = mgr.syncs(t)
	res.firstWrites = writesBetween(w0, w1, res.firstByRes)
	res.firstCPU = map[string]float64{"this harness (proxy, watch)": procCPUSeconds(t, os.Getpid()) - self0}
	for name, v := range childrenCPU(t) {
		if d := v - cpu0[name]; d > 0 && name != filepath.Base(bin) {
			res.firstCPU[name] = d
		}
	}
	var heapProfile <-chan []byte
	if pprofAddr != "" {
		// A forced collection first: the profile's in-use figures are
		// those of the last one, now what all the Artifacts hold.
		res.liveHeap = liveHeap(t, mgr, pprofAddr)
		heapProfile = fetchProfile(t, pprofAddr, "heap")
	}
	t.Logf("%d Artifacts Ready in %.2f s after %d syncs; registry requests: %v; API writes: %d %v; other CPU: %v", n, res.readySeconds, res.firstSyncs, res.first, res.firstWrites, res.firstByRes, res.firstCPU)
	if token {
		t.Logf("token requests until all were Ready: %v (expires_in %s)", res.firstTokens, res.expiresIn)
	}

	// Let the first syncs' follow-ups pass, then count one interval in
	// which nothing changes.
	time.Sleep(res.interval)
	w2, p2, t2, s2 := apiWrites(t, cs), proxy.snapshot(), issuerCounts(reg), mgr.syncs(t)
	time.Sleep(res.interval)
	w3, p3, t3, s3 := apiWrites(t, cs), proxy.snapshot(), issuerCounts(reg), mgr.syncs(t)
	res.steady = p3.sub(p2)
	res.steadyTokens = t3.sub(t2)
	res.steadySyncs = s3 - s2
	res.steadyWrites = writesBetween(w2, w3, res.steadyByRes)
	t.Logf("steady state over %s: %d syncs; registry requests: %v; token requests: %v; API writes: %d %v", res.interval, res.steadySyncs, res.steady, res.steadyTokens, res.steadyWrites, res.steadyByRes)
	if pprofAddr != "" {
		name := fmt.Sprintf("manager-%d-concurrent-%d%s", n, concurrent, res.variant())
		res.cpuProfile = saveProfile(t, cfg.profileDir, name+".cpu.pprof", <-cpuProfile)
		res.heapProfile = saveProfile(t, cfg.profileDir, name+".heap.pprof", <-heapProfile)
	}
	if apiProfile != nil {
		res.apiProfile = saveProfile(t, cfg.profileDir, fmt.Sprintf("kube-apiserver-%d-concurrent-%d%s.cpu.pprof", n, concurrent, res.variant()), <-apiProfile, "-cum", apiProfileHide)
	}

	if opts.verify {
		res.verified = countVerified(t, k8s, benchNamespace)
		t.Logf("%d of %d Artifacts verified", res.verified, n)
	}
	res.syncResults = mgr.syncResults(t)
	for _, v := range scrapeMetric(t, mgr, eventsDroppedRE) {
		res.eventsDropped += int(v)
	}
	res.peakRSS = procPeakRSS(t, mgr.pid())
	res.cpuSeconds = mgr.stop(t)
	t.Logf("manager peak RSS %.1f MiB, CPU %.2f s (%.2f s until Ready)", float64(res.peakRSS)/mib, res.cpuSeconds, res.cpuAtReady)
	return res
}

// variant is the suffix of a run's profile names: "" for the plain scale
// run, "-token" or "-verify".
func (r scaleResult) variant() string {
	switch {
	case r.token:
		return "-token"
	case r.verify:
		return "-verify"
	}
	return ""
}

// benchUser is the account of the token-auth runs.
const benchUser = "bench"

// pushRepos pushes one small file as bench/repo-<i>:v1 for each of repos
// repositories, straight to the registry so the proxy counts only the
// manager, and returns the number of distinct blobs the manifests name.
func pushRepos(t *testing.T, reg *registrytest.Registry, repos int) int {
	t.Helper()
	oc := registrytest.Ocisync(t)
	dockerConfig := ""
	if reg.Tokens != nil {
		dockerConfig = reg.WriteDockerConfig(t, benchUser)
	}
	blobs := map[string]bool{}
	for i := range repos {
		dir := t.TempDir()
		data := fmt.Appendf(nil, "repository: %d\nvalue: %s\n", i, strings.Repeat("x", 200))
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		ref := reg.Ref(fmt.Sprintf("bench/repo-%d", i), "v1")
		oc.In(dir).MustRun(t, append(append([]string{"push"}, reg.OcisyncFlags(dockerConfig)...), ref, "config.yaml")...)
		for _, d := range manifestBlobs(t, reg, fmt.Sprintf("bench/repo-%d", i), "v1") {
			blobs[d] = true
		}
	}
	return len(blobs)
}

// manifestBlobs returns the config and layer digests of repo:tag.
func manifestBlobs(t *testing.T, reg *registrytest.Registry, repo, tag string) []string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	if reg.Tokens != nil {
		// Minted, not requested: the issuer does not count it.
		req.Header.Set("Authorization", "Bearer "+reg.Tokens.Mint(t, benchUser, "repository:"+repo+":pull"))
	}
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatalf("fetching the manifest of %s:%s: %v", repo, tag, err)
	}
	defer resp.Body.Close()
	var m struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("decoding the manifest of %s:%s (%s): %v", repo, tag, resp.Status, err)
	}
	out := []string{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// createArtifacts creates n Artifacts, art-<i> naming repository i mod
// repos through the proxy, each with its own ConfigMap and, unless
// pullSecret is empty, that pull Secret.
func createArtifacts(t *testing.T, k8s client.Client, host string, n, repos int, interval time.Duration, pullSecret string) {
	t.Helper()
	createArtifactsIn(t, k8s, benchNamespace, host, n, repos, interval, pullSecret, nil)
}

// createArtifactsIn is createArtifacts in namespace ns, each Artifact with
// the labels of labels(i) when labels is not nil.
func createArtifactsIn(t *testing.T, k8s client.Client, ns, host string, n, repos int, interval time.Duration, pullSecret string, labels func(i int) map[string]string) {
	t.Helper()
	createObjects(t, k8s, n, func(i int) client.Object {
		a := artifact(ns, i, host, repos, interval)
		if labels != nil {
			a.Labels = labels(i)
		}
		if pullSecret != "" {
			a.Spec.PullSecrets = []corev1.LocalObjectReference{{Name: pullSecret}}
		}
		return a
	})
}

// artifact is the Artifact art-<i> in ns: repository i mod repos through
// host, tag v1, a ConfigMap output of its own name.
func artifact(ns string, i int, host string, repos int, interval time.Duration) *ocisyncv1alpha1.Artifact {
	return &ocisyncv1alpha1.Artifact{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("art-%d", i)},
		Spec: ocisyncv1alpha1.ArtifactSpec{
			Reference: fmt.Sprintf("%s/bench/repo-%d:v1", host, i%repos),
			PlainHTTP: true,
			Interval:  metav1.Duration{Duration: interval},
			ConfigMap: &ocisyncv1alpha1.ConfigMapOutput{Name: fmt.Sprintf("art-%d", i)},
		},
	}
}

// createPullSecret creates the pull Secret of the token-auth runs: the
// bench user's username and password for host, the proxy, as the
// Artifacts name it. It returns the Secret's name.
func createPullSecret(t *testing.T, k8s client.Client, reg *registrytest.Registry, host string) string {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(benchUser + ":" + reg.Password(t, benchUser)))
	data, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: "bench-pull"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
	if err := k8s.Create(t.Context(), s); err != nil {
		t.Fatalf("creating the pull Secret %s/%s: %v", s.Namespace, s.Name, err)
	}
	return s.Name
}

// tokenLifetime asks the issuer for one token, as a client would, and
// returns the expires_in it answers: the report states what the issuer
// gave, not what the harness assumes. Called before the counting starts.
func tokenLifetime(t *testing.T, reg *registrytest.Registry) time.Duration {
	t.Helper()
	q := url.Values{"service": {reg.Tokens.Service}, "scope": {"repository:bench/repo-0:pull"}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.Tokens.Realm+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(benchUser, reg.Password(t, benchUser))
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatalf("asking the token issuer %s for a token: %v", reg.Tokens.Realm, err)
	}
	defer resp.Body.Close()
	var body struct {
		ExpiresIn int `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.ExpiresIn <= 0 {
		t.Fatalf("the token issuer %s answered %s with expires_in %d (decoding: %v), want 200 OK and a positive expires_in", reg.Tokens.Realm, resp.Status, body.ExpiresIn, err)
	}
	return time.Duration(body.ExpiresIn) * time.Second
}

// issuerCounts is the token requests the issuer answered so far, by
// method, failures apart like the proxy's; none without an issuer.
func issuerCounts(reg *registrytest.Registry) counts {
	if reg.Tokens == nil {
		return counts{}
	}
	return tokenCounts(reg.Tokens.Requests())
}

func tokenCounts(reqs []registrytest.TokenRequest) counts {
	c := counts{}
	for _, r := range reqs {
		key := r.Method + " token"
		if r.Status >= 400 {
			key += fmt.Sprintf(" (%d)", r.Status)
		}
		c[key]++
	}
	return c
}

// watchReady watches the Artifacts and closes the returned channel once n
// of them are Ready for their current generation.
func watchReady(t *testing.T, k8s client.WithWatch, n int) <-chan struct{} {
	t.Helper()
	return watchReadyIn(t, k8s, benchNamespace, n)
}

// watchReadyIn is watchReady in namespace ns.
func watchReadyIn(t *testing.T, k8s client.WithWatch, ns string, n int) <-chan struct{} {
	t.Helper()
	return watchReadyGVK(t, k8s, ocisyncv1alpha1.GroupVersion.WithKind("Artifact"), ns, n)
}

// writeVerbs are the apiserver_request_total verbs that change state.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true, "DELETECOLLECTION": true, "APPLY": true}

var requestTotalRE = regexp.MustCompile(`^apiserver_request_total\{(.*)\} ([0-9.e+]+)$`)
var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// apiWrites scrapes the API server's /metrics and returns its write
// requests so far by resource. Leases are left out: the API server renews
// its own every few seconds, whatever the manager does.
func apiWrites(t *testing.T, cs *kubernetes.Clientset) map[string]int {
	t.Helper()
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(t.Context())
	if err != nil {
		t.Fatalf("reading the API server's /metrics: %v", err)
	}
	out := map[string]int{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		m := requestTotalRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, l := range labelRE.FindAllStringSubmatch(m[1], -1) {
			labels[l[1]] = l[2]
		}
		if !writeVerbs[labels["verb"]] || labels["resource"] == "leases" {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("parsing %q from /metrics: %v", line, err)
		}
		key := labels["resource"]
		if labels["subresource"] != "" {
			key += "/" + labels["subresource"]
		}
		out[key] += int(v)
	}
	return out
}

// writesBetween returns the writes from before to after, adding them by
// resource to byRes.
func writesBetween(before, after map[string]int, byRes map[string]int) int {
	total := 0
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			byRes[k] += d
			total += d
		}
	}
	return total
}

// hasFlag reports whether `ocisync manager -h` lists --name.
func hasFlag(t *testing.T, bin, name string) bool {
	t.Helper()
	out, err := exec.Command(bin, "manager", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("%s manager -h: %v\n%s", bin, err, out)
	}
	return regexp.MustCompile(`(?m)^\s+--?` + regexp.QuoteMeta(name) + `\b`).Match(out)
}

// manager is a running `ocisync manager`.
type manager struct {
	cmd         *exec.Cmd
	log         string
	metricsAddr string
	exited      chan struct{}
}

// startProcess runs bin with args, its output in a log of its own, and
// kills it when t ends, showing the log's tail if t failed. Only the
// kubeconfig leads it to a cluster; HOME and TMPDIR (where the manager
// keeps its blob cache) are a fresh folder, so each run starts empty.
// env adds variables.
func startProcess(t *testing.T, bin, kubeconfig, metricsAddr string, args []string, env ...string) *manager {
	t.Helper()
	dir := t.TempDir()
	m := &manager{log: filepath.Join(dir, filepath.Base(bin)+".log"), metricsAddr: metricsAddr, exited: make(chan struct{})}
	logf, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	m.cmd = exec.Command(bin, args...)
	m.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir, "KUBECONFIG=" + kubeconfig}, env...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		<-m.exited
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", filepath.Base(bin), m.log, m.logTail())
		}
	})
	return m
}

func (m *manager) pid() int { return m.cmd.Process.Pid }

var eventsDroppedRE = regexp.MustCompile(`(?m)^ocisync_events_dropped_total\{[^}]*\} ([0-9.e+]+)$`)

var syncsTotalRE = regexp.MustCompile(`(?m)^ocisync_artifact_syncs_total\{.*result="([^"]*)".*\} ([0-9.e+]+)$`)

// syncResults scrapes the manager's ocisync_artifact_syncs_total, by
// result. Not its log: zap samples a message logged over 100 times a
// second, and at scale the sync lines are.
func (m *manager) syncResults(t *testing.T) counts {
	t.Helper()
	c := counts{}
	for _, sm := range syncsTotalRE.FindAllStringSubmatch(m.metrics(t), -1) {
		v, err := strconv.ParseFloat(sm[2], 64)
		if err != nil {
			t.Fatalf("parsing %q of the manager's /metrics: %v", sm[0], err)
		}
		c[sm[1]] += int(v)
	}
	return c
}

// metrics is the manager's /metrics page.
func (m *manager) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + m.metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("reading the manager's /metrics: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the manager's /metrics: %v", err)
	}
	return string(raw)
}

// syncs is the number of syncs the manager has done so far.
func (m *manager) syncs(t *testing.T) int {
	t.Helper()
	return m.syncResults(t).total()
}

// stop sends SIGTERM, waits for the exit and returns the CPU seconds the
// process used, user and system.
func (m *manager) stop(t *testing.T) float64 {
	t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stopping the manager: %v", err)
	}
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the manager did not exit within 30s of SIGTERM; its log:\n%s", m.logTail())
	}
	ps := m.cmd.ProcessState
	if code := ps.ExitCode(); code != 0 {
		t.Errorf("the manager exited with %d after SIGTERM, want 0; its log:\n%s", code, m.logTail())
	}
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}

func (m *manager) logTail() string {
	b, err := os.ReadFile(m.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 16 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// procPeakRSS is VmHWM of a running process in bytes: the peak of its own
// memory, exact for a child that has exec'd, unlike the rusage of a child
// of a Go program (see test/integration/volume_memory_test.go).
func procPeakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the peak RSS of process %d: %v", pid, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parsing %q of /proc/%d/status: %v", line, pid, err)
			}
			return kib * 1024
		}
	}
	t.Fatalf("/proc/%d/status has no VmHWM line", pid)
	return 0
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// procCPUSeconds is the user and system CPU time of a running process.
func procCPUSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading the CPU time of process %d: %v", pid, err)
	}
	// The command name may hold spaces; the fields after it are fixed:
	// state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if i < 0 || len(f) < 13 {
		t.Fatalf("/proc/%d/stat is %q, want its documented fields", pid, data)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parsing utime %q and stime %q of /proc/%d/stat", f[11], f[12], pid)
	}
	return float64(utime+stime) / clockTicks
}

// childrenCPU returns the CPU seconds of this process's children by
// name: etcd, kube-apiserver and the registry, which share the machine's
// cores with the manager.
func childrenCPU(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("listing /proc: %v", err)
	}
	self := os.Getpid()
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone since the listing
		}
		open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(data[end+1:]))
		if len(f) < 13 || f[1] != strconv.Itoa(self) {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		out[string(data[open+1:end])] += float64(utime+stime) / clockTicks
	}
	return out
}

// freeAddr returns a free 127.0.0.1 address.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// fetchProfile fetches /debug/pprof/<what> from the manager in the
// background, retrying while the manager starts, and sends the profile
// (nil on failure, which it logs).
func fetchProfile(t *testing.T, addr, what string) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		url := "http://" + addr + "/debug/pprof/" + what
		for range 100 {
			resp, err := http.Get(url)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Logf("fetching %s: %s %v", url, resp.Status, err)
				ch <- nil
				return
			}
			ch <- b
			return
		}
		t.Logf("fetching %s: the manager did not answer", url)
		ch <- nil
	}()
	return ch
}

// apiProfileHide leaves out of kube-apiserver's profile the frames every
// request passes (its filters, HTTP/2, TLS, the runtime), so that the
// top lines by cumulative time name the work: which storage calls,
// decoding, managed fields, authentication.
const apiProfileHide = `-hide=(filters|apiserver/pkg/server|otelhttp|flowcontrol|finisher|mux|go-restful|net/http|^runtime\.|crypto/tls|golang.org/x/net/http2|internal/poll|syscall|\.func[0-9])`

// fetchAPIServerProfile takes a CPU profile of kube-apiserver over d in
// the background (its /debug/pprof is on, as by default) and sends it,
// nil on failure, which it logs.
func fetchAPIServerProfile(t *testing.T, rc *rest.Config, d time.Duration) <-chan []byte {
	ch := make(chan []byte, 1)
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		t.Fatalf("an HTTP client for kube-apiserver: %v", err)
	}
	go func() {
		url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(rc.Host, "/"), int(d.Seconds()))
		resp, err := hc.Get(url)
		if err != nil {
			t.Logf("fetching %s: %v", url, err)
			ch <- nil
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Logf("fetching %s: %s %v", url, resp.Status, err)
			ch <- nil
			return
		}
		ch <- b
	}()
	return ch
}

// saveProfile writes a profile into dir and returns the top of
// `go tool pprof -top` of it, for the report.
func saveProfile(t *testing.T, dir, name string, data []byte, pprofArgs ...string) string {
	t.Helper()
	if data == nil {
		return ""
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"tool", "pprof", "-top", "-nodecount=15"}, pprofArgs...)
	out, err := exec.Command("go", append(args, path)...).CombinedOutput()
	if err != nil {
		t.Logf("go tool pprof -top %s: %v\n%s", path, err, out)
		return ""
	}
	return strings.TrimSpace(string(out))
}

func TestTokenCounts(t *testing.T) {
	got := tokenCounts([]registrytest.TokenRequest{
		{Method: "GET", Status: 200},
		{Method: "GET", Status: 200},
		{Method: "POST", GrantType: "password", Status: 200},
		{Method: "GET", Status: 401},
	})
	if want := "GET token 2, GET token (401) 1, POST token 1"; got.String() != want {
		t.Errorf("tokenCounts = %q, want %q", got, want)
	}
}

// startControlPlane starts etcd and kube-apiserver for one run and
// returns a kubeconfig for the manager, and the harness's own config and
// client, whose rate limits are raised so that they never limit the run.
func startControlPlane(t *testing.T) (string, *rest.Config, client.WithWatch) {
	t.Helper()
	cp := controlplane.Start(t)
	kubeconfig := cp.WriteKubeconfig(t, "ocisync-bench-admin")
	rc := rest.CopyConfig(cp.Config)
	rc.QPS, rc.Burst = 1000, 2000
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := ocisyncv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	k8s, err := client.NewWithWatch(rc, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("creating a client for the test cluster: %v", err)
	}
	return kubeconfig, rc, k8s
}

// waitAllReady waits for ready (watchReady of n Artifacts), failing the
// run with the manager's log when it exits or timeout passes first.
func waitAllReady(t *testing.T, mgr *manager, ready <-chan struct{}, n int, timeout time.Duration) {
	t.Helper()
	select {
	case <-ready:
	case <-mgr.exited:
		t.Fatalf("the manager exited before all %d Artifacts were Ready; its log:\n%s", n, mgr.logTail())
	case <-time.After(timeout):
		t.Fatalf("not all %d Artifacts were Ready within %s; manager log:\n%s", n, timeout, mgr.logTail())
	}
}
