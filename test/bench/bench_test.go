//go:build linux

// Package bench measures ocisync at scale and with a big blob, against the
// real control plane and registry `make test` builds, and writes the
// results table of docs/benchmarks.md.
//
// By default TestBench is a smoke run of a few seconds (5 Artifacts, a
// 1 MiB blob), so that the harness cannot rot; `make bench` runs it with
// the figures of issue 6 (100 and 1000 Artifacts, a 1 GiB blob) and
// writes the table:
//
//	OCISYNC_BENCH_N         comma-separated Artifact counts (default 5)
//	OCISYNC_BENCH_BLOB      big blob size, a Kubernetes quantity (default 1Mi)
//	OCISYNC_BENCH_INTERVAL  the Artifacts' spec.interval, and the steady-state window (default 3s)
//	OCISYNC_BENCH_REPOS     repositories the Artifacts are spread over (default 5)
//	OCISYNC_BENCH_TOKEN_N   Artifacts of the token-auth run, 0 to skip it (default the smallest of OCISYNC_BENCH_N when that is set, else 0)
//	OCISYNC_BENCH_CONCURRENT  comma-separated --concurrent values of the manager, each run for every count, when it has the flag (default 10, as the anchor)
//	OCISYNC_BENCH_NOISE     Secrets (48 KiB, helm.sh/release.v1) and ConfigMaps (32 KiB) each of the cluster noise run, 0 to skip it (default 40)
//	OCISYNC_BENCH_NOISE_NS  namespaces the noise is spread over (default 20 when OCISYNC_BENCH_NOISE is set, else 4)
//	OCISYNC_BENCH_SHARD_N   Artifacts of the shard run, split between two managers, 0 to skip it (default 40)
//	OCISYNC_BENCH_CREATE_N  Artifacts created while the manager runs, 0 to skip that run (default 20)
//	OCISYNC_BENCH_PUSH_N    Artifacts of the push run, 10 per repository, each repository pushed twice in rotation, 0 to skip it (default 20)
//	OCISYNC_BENCH_VERIFY_N  Artifacts of the signature verification run, a scale run with every repository signed and spec.verify on each Artifact, 0 to skip it (default 20)
//	OCISYNC_BENCH_FLUX      Flux source-controller's binary (make flux), for the same run with OCIRepositories side by side; unset: ocisync alone
//	OCISYNC_BENCH_FLUX_CRDS the folder of its CRDs (default crds beside the binary)
//	OCISYNC_BENCH_ONLY      run only this section: scale, token, verify, blob, noise, shard, create or push (default all)
//	OCISYNC_BENCH_OUT       where to write the Markdown results (default: a temp file)
//	OCISYNC_BENCH_PROFILE_DIR  where to keep the CPU and heap profiles of the manager (default: a temp folder)
package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

const mib = 1 << 20

// config is what one run measures.
type config struct {
	counts     []int
	blobSize   int64
	interval   time.Duration
	repos      int
	concurrent []int
	tokenN     int    // Artifacts of the token-auth run; 0 skips it
	noise      int    // Secrets and ConfigMaps each of the noise run; 0 skips it
	noiseNS    int    // namespaces the noise is spread over
	shardN     int    // Artifacts of the shard run; 0 skips it
	createN    int    // Artifacts created while the manager runs; 0 skips it
	pushN      int    // Artifacts of the push run; 0 skips it
	verifyN    int    // Artifacts of the signature verification run; 0 skips it
	flux       string // Flux source-controller's binary, "" for none
	fluxCRDs   string
	only       string
	out        string
	profileDir string
}

func loadConfig(t *testing.T) config {
	t.Helper()
	c := config{counts: []int{5}, blobSize: mib, interval: 3 * time.Second, repos: 5, concurrent: []int{10}, noise: 40, noiseNS: 4, shardN: 40, createN: 20, pushN: 2 * pushPerRepo, verifyN: 20}
	for name, dst := range map[string]*[]int{"OCISYNC_BENCH_N": &c.counts, "OCISYNC_BENCH_CONCURRENT": &c.concurrent} {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		*dst = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want comma-separated positive numbers, e.g. 100,1000", name, v)
			}
			*dst = append(*dst, n)
		}
	}
	if v := os.Getenv("OCISYNC_BENCH_BLOB"); v != "" {
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Value() < 1 {
			t.Fatalf("OCISYNC_BENCH_BLOB=%q: want a positive size such as 1Gi", v)
		}
		c.blobSize = q.Value()
	}
	if v := os.Getenv("OCISYNC_BENCH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			t.Fatalf("OCISYNC_BENCH_INTERVAL=%q: want a duration of at least 1s, such as 10s", v)
		}
		c.interval = d
	}
	if v := os.Getenv("OCISYNC_BENCH_REPOS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("OCISYNC_BENCH_REPOS=%q: want a positive number", v)
		}
		c.repos = n
	}
	// The token run's figures are per sync and per Artifact: the smallest
	// count shows them as well as the largest, at a fraction of the time.
	// The smoke run skips it: it would double the smoke run's time.
	if os.Getenv("OCISYNC_BENCH_N") != "" {
		c.tokenN = slices.Min(c.counts)
	}
	if v := os.Getenv("OCISYNC_BENCH_TOKEN_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("OCISYNC_BENCH_TOKEN_N=%q: want a number of Artifacts, or 0 to skip the token-auth run", v)
		}
		c.tokenN = n
	}
	if v := os.Getenv("OCISYNC_BENCH_NOISE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("OCISYNC_BENCH_NOISE=%q: want a number of Secrets and of ConfigMaps, or 0 to skip the noise run", v)
		}
		c.noise, c.noiseNS = n, 20
	}
	if v := os.Getenv("OCISYNC_BENCH_NOISE_NS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("OCISYNC_BENCH_NOISE_NS=%q: want a positive number", v)
		}
		c.noiseNS = n
	}
	for name, dst := range map[string]*int{"OCISYNC_BENCH_SHARD_N": &c.shardN, "OCISYNC_BENCH_CREATE_N": &c.createN} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n%2 != 0 {
				t.Fatalf("%s=%q: want an even number of Artifacts, or 0 to skip the run", name, v)
			}
			*dst = n
		}
	}
	if v := os.Getenv("OCISYNC_BENCH_PUSH_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n%pushPerRepo != 0 {
			t.Fatalf("OCISYNC_BENCH_PUSH_N=%q: want a multiple of %d Artifacts (%d per repository), or 0 to skip the push run", v, pushPerRepo, pushPerRepo)
		}
		c.pushN = n
	}
	if v := os.Getenv("OCISYNC_BENCH_VERIFY_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("OCISYNC_BENCH_VERIFY_N=%q: want a number of Artifacts, or 0 to skip the signature verification run", v)
		}
		c.verifyN = n
	}
	if c.flux = os.Getenv("OCISYNC_BENCH_FLUX"); c.flux != "" {
		c.fluxCRDs = os.Getenv("OCISYNC_BENCH_FLUX_CRDS")
		if c.fluxCRDs == "" {
			c.fluxCRDs = filepath.Join(filepath.Dir(c.flux), "crds")
		}
		for _, p := range []string{c.flux, c.fluxCRDs} {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("OCISYNC_BENCH_FLUX=%q: %v; run make flux to build Flux source-controller, or unset it", c.flux, err)
			}
		}
	}
	c.only = os.Getenv("OCISYNC_BENCH_ONLY")
	if !slices.Contains([]string{"", "scale", "token", "verify", "blob", "noise", "shard", "create", "push"}, c.only) {
		t.Fatalf("OCISYNC_BENCH_ONLY=%q: want scale, token, verify, blob, noise, shard, create or push", c.only)
	}
	c.profileDir = os.Getenv("OCISYNC_BENCH_PROFILE_DIR")
	if c.profileDir == "" {
		c.profileDir = t.TempDir()
	}
	c.out = os.Getenv("OCISYNC_BENCH_OUT")
	if c.out == "" {
		c.out = filepath.Join(t.TempDir(), "benchmarks.md")
	}
	return c
}

// TestBench runs the scale runs, the big blob pull and the cluster noise
// run (or the one OCISYNC_BENCH_ONLY names) and writes the report. It
// checks only that the harness measured something; whether the targets
// are met is what the report says, but for the noise run at full size,
// whose target it checks.
func TestBench(t *testing.T) {
	cfg := loadConfig(t)
	rep := &report{cfg: cfg, started: time.Now()}
	rep.machine, rep.versions = describeMachine(t)
	run := func(section string) bool { return cfg.only == "" || cfg.only == section }
	for _, n := range cfg.counts {
		if !run("scale") {
			break
		}
		for _, c := range cfg.concurrent {
			t.Run(fmt.Sprintf("scale-%d-concurrent-%d", n, c), func(t *testing.T) {
				res := runScale(t, cfg, n, c, scaleOpts{})
				rep.scale = append(rep.scale, res)
				checkScale(t, res)
			})
		}
	}
	if cfg.tokenN > 0 && run("token") {
		// One --concurrent value: the anchor's, or the first asked for.
		t.Run(fmt.Sprintf("token-%d-concurrent-%d", cfg.tokenN, cfg.concurrent[0]), func(t *testing.T) {
			res := runScale(t, cfg, cfg.tokenN, cfg.concurrent[0], scaleOpts{token: true})
			rep.token = &res
			checkScale(t, res)
		})
	}
	if cfg.verifyN > 0 && run("verify") {
		// As the scale run of as many Artifacts with the first
		// --concurrent value, which the report compares it with.
		t.Run(fmt.Sprintf("verify-%d-concurrent-%d", cfg.verifyN, cfg.concurrent[0]), func(t *testing.T) {
			res := runScale(t, cfg, cfg.verifyN, cfg.concurrent[0], scaleOpts{verify: true})
			rep.verify = &res
			checkVerify(t, res)
		})
	}
	if run("blob") {
		for _, sizes := range pullShapes(cfg.blobSize) {
			t.Run(fmt.Sprintf("pull-%d-layers", len(sizes)), func(t *testing.T) {
				res := runBlob(t, sizes)
				rep.blobs = append(rep.blobs, res)
				for _, p := range []pullResult{res.ocisync, res.oras} {
					if p.seconds <= 0 || p.peakRSS <= 0 {
						t.Errorf("%s pull measured %.3f s and %d bytes peak RSS, want both positive", p.tool, p.seconds, p.peakRSS)
					}
				}
			})
		}
	}
	if cfg.noise > 0 && run("noise") {
		t.Run(fmt.Sprintf("noise-%d", cfg.noise), func(t *testing.T) {
			res := runNoise(t, cfg)
			rep.noise = &res
			checkNoise(t, res)
		})
	}
	if cfg.shardN > 0 && run("shard") {
		t.Run(fmt.Sprintf("shard-%d", cfg.shardN), func(t *testing.T) {
			res := runShard(t, cfg, cfg.shardN)
			rep.shard = &res
			checkShard(t, res)
		})
	}
	if cfg.createN > 0 && run("create") {
		t.Run(fmt.Sprintf("create-%d", cfg.createN), func(t *testing.T) {
			res := runCreate(t, cfg, cfg.createN)
			rep.create = &res
			checkCreate(t, res)
		})
	}
	if cfg.pushN > 0 && run("push") {
		t.Run(fmt.Sprintf("push-%d", cfg.pushN), func(t *testing.T) {
			res := runPush(t, cfg, cfg.pushN)
			rep.push = &res
			checkPush(t, res)
		})
	}
	if t.Failed() {
		return
	}
	md := rep.markdown()
	if err := os.WriteFile(cfg.out, []byte(md), 0o644); err != nil {
		t.Fatalf("writing the report %s: %v", cfg.out, err)
	}
	t.Logf("wrote %s", cfg.out)
	wants := []string{"kube-apiserver"}
	if run("scale") {
		// Not the noise section's "| Artifacts Ready, quiet".
		wants = append(wants, "| Artifacts Ready |")
	}
	if cfg.verifyN > 0 && run("verify") {
		wants = append(wants, "## Signature verification", "| Steady state: registry requests per sync |", "| First sync: verification's requests")
	}
	if run("blob") {
		wants = append(wants, "| ocisync pull", "| oras pull")
	}
	if cfg.tokenN > 0 && run("token") {
		wants = append(wants, "## Token auth", "| Steady state: token requests per sync")
	}
	if cfg.noise > 0 && run("noise") {
		wants = append(wants, "## Cluster noise", "| Manager peak RSS, growth with the noise", "| All Artifacts followed the push")
	}
	if cfg.shardN > 0 && run("shard") {
		wants = append(wants, "## Shards", "| Artifacts cached and published")
	}
	if cfg.createN > 0 && run("create") {
		wants = append(wants, "## Created while running", "| ocisync, median")
	}
	if cfg.pushN > 0 && run("push") {
		wants = append(wants, "## Push", "| Latency, median", "| Other repositories' requests")
	}
	for _, want := range wants {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
}

// checkScale fails t when a scale run measured nothing plausible: the
// harness is broken then, whatever the manager does.
func checkScale(t *testing.T, r scaleResult) {
	t.Helper()
	if r.readySeconds <= 0 {
		t.Errorf("time to Ready is %.3f s, want positive", r.readySeconds)
	}
	if m := r.first.count("GET manifest") + r.first.count("HEAD manifest"); m < r.n {
		t.Errorf("the proxy saw %d manifest requests on the first sync of %d Artifacts, want at least one each: %v", m, r.n, r.first)
	}
	if r.peakRSS <= 0 || r.cpuSeconds <= 0 {
		t.Errorf("manager peak RSS %d bytes and CPU %.2f s, want both positive", r.peakRSS, r.cpuSeconds)
	}
	if r.firstSyncs < r.n {
		t.Errorf("the manager logged %d syncs until %d Artifacts were Ready, want at least one each", r.firstSyncs, r.n)
	}
	if r.cpuProfile == "" || r.heapProfile == "" {
		t.Errorf("no CPU or heap profile of the manager was taken (see the log above)")
	}
	if r.firstWrites < r.n {
		t.Errorf("the API server counted %d writes on the first sync of %d Artifacts, want at least one each (a status update)", r.firstWrites, r.n)
	}
	// Every Artifact needs a token to be Ready: none counted means the
	// issuer is not what the registry sends the manager to.
	if r.token && r.firstTokens.count("GET token")+r.firstTokens.count("POST token") == 0 {
		t.Errorf("the token issuer granted no token on the first sync of %d Artifacts, want at least one: %v", r.n, r.firstTokens)
	}
}

// checkCreate fails t when a round measured nothing plausible.
func checkCreate(t *testing.T, r createResult) {
	t.Helper()
	for _, rd := range r.rounds {
		if rd.readySeconds <= 0 || rd.peakRSS <= 0 || rd.registry.total() < r.n || rd.writes < r.n {
			t.Errorf("%s round: Ready in %.3f s, peak RSS %d bytes, %d registry requests and %d API writes for %d objects, want all positive and at least one request and write each",
				rd.tool, rd.readySeconds, rd.peakRSS, rd.registry.total(), rd.writes, r.n)
		}
	}
}

// checkNoise fails t when an Artifact did not sync or follow the push in
// either noise run, and at full size when the noise grew the manager's
// peak RSS by more than the target. At a smaller size the growth is
// within what one run differs from the next: not asserted.
func checkNoise(t *testing.T, r noiseResult) {
	t.Helper()
	for _, run := range []noiseRun{r.quiet, r.noisy} {
		if run.readySeconds <= 0 || run.peakRSS <= 0 {
			t.Errorf("noise %v: time to Ready %.3f s and peak RSS %d bytes, want both positive", run.noise, run.readySeconds, run.peakRSS)
		}
		if !run.followed {
			t.Errorf("noise %v: not every Artifact followed the push (see the log above)", run.noise)
		}
	}
	if r.secrets >= targetNoise && r.growth() > targetNoiseRSS {
		t.Errorf("with %d Secrets and %d ConfigMaps of noise the manager's peak RSS grew by %.1f MiB (%.1f to %.1f MiB), want at most %d MiB",
			r.secrets, r.configMaps, float64(r.growth())/mib, float64(r.quiet.peakRSS)/mib, float64(r.noisy.peakRSS)/mib, targetNoiseRSS/mib)
	}
}
