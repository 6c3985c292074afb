package manager_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// managerEnv is the environment of a manager process: this process's, with
// no way to find a cluster but the given kubeconfig ("" for none).
func managerEnv(kubeconfigPath string) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "KUBECONFIG", "HOME", "TMPDIR", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT":
			continue
		}
		env = append(env, kv)
	}
	// TMPDIR too: the manager keeps its blob cache there.
	env = append(env, "HOME="+GinkgoT().TempDir(), "TMPDIR="+GinkgoT().TempDir())
	if kubeconfigPath != "" {
		env = append(env, "KUBECONFIG="+kubeconfigPath)
	}
	return env
}

// startManager runs `ocisync manager args...` against the test cluster and
// kills it, if still running, when the spec ends.
func startManager(args ...string) *gexec.Session {
	cmd := exec.Command(ocisyncBin, append([]string{"manager"}, args...)...)
	cmd.Env = managerEnv(kubeconfig)
	session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred(), "start %s", ocisyncBin)
	DeferCleanup(func() { session.Kill().Wait(10 * time.Second) })
	return session
}

// stopManager sends SIGTERM and expects a clean exit.
func stopManager(s *gexec.Session) {
	s.Terminate()
	Eventually(s).WithTimeout(30*time.Second).Should(gexec.Exit(0),
		"the manager should exit 0 after SIGTERM; its log is in the spec output")
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

// httpGet returns the status code and body of GET url, or an error.
func httpGet(url string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func expectReady(s *gexec.Session, probeAddr string) {
	Eventually(func() (int, error) {
		code, _, err := httpGet("http://" + probeAddr + "/readyz")
		return code, err
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Equal(http.StatusOK),
		"GET /readyz on %s", probeAddr)
	Expect(s.ExitCode()).To(Equal(-1), "the manager exited before it was stopped")
}

var _ = Describe("ocisync manager", func() {
	DescribeTable("refuses to start, with one line saying why",
		func(args []string, withCluster bool, wantCode int, wantStderr string) {
			cmd := exec.Command(ocisyncBin, append([]string{"manager"}, args...)...)
			cmd.Env = managerEnv("")
			if withCluster {
				cmd.Env = managerEnv(kubeconfig)
			}
			s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { s.Kill().Wait(10 * time.Second) })
			Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit(wantCode))
			stderr := strings.TrimSpace(string(s.Err.Contents()))
			Expect(stderr).To(ContainSubstring(wantStderr))
			Expect(strings.Count(stderr, "\n")).To(BeZero(), "stderr should be one line, got:\n%s", stderr)
			Expect(s.Out.Contents()).To(BeEmpty())
		},
		Entry("an unknown flag", []string{"--no-such-flag"}, true, 2, "flag provided but not defined: -no-such-flag"),
		Entry("a bad flag value", []string{"--leader-elect=maybe"}, true, 2, `invalid boolean value "maybe" for -leader-elect`),
		Entry("a bad label selector", []string{"--watch-label-selector", "shard in (a"}, true, 2, `--watch-label-selector "shard in (a" is not a label selector`),
		Entry("a bad namespace", []string{"--watch-namespaces", "team-a,Team_B"}, true, 2, `"Team_B" is not a namespace name`),
		Entry("an argument", []string{"extra"}, true, 2, `unexpected argument "extra"`),
		Entry("no cluster to be found", []string{"--health-probe-bind-address", "0"}, false, 1, "cannot find a Kubernetes cluster"),
		Entry("a kubeconfig that does not exist", []string{"--kubeconfig", "/nonexistent/kubeconfig"}, false, 1, "/nonexistent/kubeconfig"),
	)

	It("prints its flags for -h", func() {
		cmd := exec.Command(ocisyncBin, "manager", "-h")
		cmd.Env = managerEnv("")
		s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		for _, flag := range []string{"-metrics-bind-address", "-health-probe-bind-address", "-leader-elect", "-leader-election-id", "-kubeconfig", "-zap-log-level"} {
			Expect(string(s.Out.Contents())).To(ContainSubstring(flag))
		}
		Expect(s.Err.Contents()).To(BeEmpty())
	})

	It("becomes ready and stops cleanly on SIGTERM", func() {
		probe := freeAddr()
		s := startManager("--health-probe-bind-address", probe, "--metrics-bind-address", "0")
		expectReady(s, probe)
		code, _, err := httpGet("http://" + probe + "/healthz")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusOK), "GET /healthz")
		stopManager(s)
	})

	It("takes the leader election Lease, hands it over on SIGTERM and serves metrics", func() {
		const ns, leaseName = "default", "manager-test.ocisync.io"
		leaseHolder := func() (string, error) {
			lease, err := clientset.CoordinationV1().Leases(ns).Get(context.Background(), leaseName, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			return holder(lease), nil
		}
		leaderArgs := func(probe, metrics string) []string {
			return []string{"--leader-elect", "--leader-election-namespace", ns, "--leader-election-id", leaseName,
				"--health-probe-bind-address", probe, "--metrics-bind-address", metrics}
		}

		By("starting a first manager, which takes the Lease")
		probeA, metricsA := freeAddr(), freeAddr()
		a := startManager(leaderArgs(probeA, metricsA)...)
		expectReady(a, probeA)
		Eventually(leaseHolder).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).ShouldNot(BeEmpty(),
			"Lease %s/%s should get a holder", ns, leaseName)
		first, err := leaseHolder()
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() (string, error) {
			_, body, err := httpGet("http://" + metricsA + "/metrics")
			return body, err
		}).WithTimeout(10*time.Second).Should(ContainSubstring(fmt.Sprintf("leader_election_master_status{name=%q} 1", leaseName)),
			"the metrics should show this manager as the leader")

		By("starting a second manager, which waits")
		probeB := freeAddr()
		b := startManager(leaderArgs(probeB, "0")...)
		expectReady(b, probeB)
		Consistently(leaseHolder).WithTimeout(3*time.Second).Should(Equal(first),
			"the second manager must not take the Lease while the first holds it")

		By("stopping the first manager, which releases the Lease to the second")
		stopManager(a)
		// Well before the 15s Lease duration: the second manager can only
		// be this quick if the first released the Lease on its way out.
		Eventually(leaseHolder).WithTimeout(10*time.Second).WithPolling(200*time.Millisecond).Should(
			And(Not(BeEmpty()), Not(Equal(first))), "the second manager should take the released Lease")
		stopManager(b)
	})
})

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
