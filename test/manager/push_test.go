package manager_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// manifestCounter is a reverse proxy in front of a registry that counts
// the manifest requests per repository, so a test can tell which
// Artifacts the manager asked the registry about.
type manifestCounter struct {
	Host string
	mu   sync.Mutex
	n    map[string]int
}

func startManifestCounter(target string) *manifestCounter {
	u, err := url.Parse(target)
	Expect(err).NotTo(HaveOccurred())
	m := &manifestCounter{n: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if repo, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/"); ok {
			m.mu.Lock()
			m.n[repo]++
			m.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	DeferCleanup(srv.Close)
	m.Host = strings.TrimPrefix(srv.URL, "http://")
	return m
}

// settled returns the count of repo once it has not moved for a second.
func (m *manifestCounter) settled(repo string) int {
	prev := m.count(repo)
	for range 30 {
		time.Sleep(time.Second)
		if n := m.count(repo); n != prev {
			prev = n
			continue
		}
		return prev
	}
	Fail("the requests for " + repo + " never settled")
	return 0
}

func (m *manifestCounter) count(repo string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[repo]
}

// pushFixture is a registry that notifies receiverURL, a pusher, and a
// namespace with Artifacts that follow repositories through a counting
// proxy, each with an interval of an hour.
type pushFixture struct {
	reg     *registrytest.Registry
	proxy   *manifestCounter
	c       client.Client
	ns      string
	src     string
	oc      *registrytest.CLI
	tokFile string
}

const pushToken = "push-receiver-test-token"

func newPushFixture(receiverURL string, repos ...string) *pushFixture {
	f := &pushFixture{c: newClient(), src: GinkgoT().TempDir(), oc: registrytest.Ocisync(GinkgoT())}
	f.tokFile = filepath.Join(GinkgoT().TempDir(), "token")
	Expect(os.WriteFile(f.tokFile, []byte(pushToken+"\n"), 0o600)).To(Succeed())
	f.reg = registrytest.Start(GinkgoT(), registrytest.Options{Notify: registrytest.Notify{URL: receiverURL, Token: pushToken}})
	f.proxy = startManifestCounter(f.reg.URL)
	ctx := context.Background()
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "push-"}}
	Expect(f.c.Create(ctx, nsObj)).To(Succeed())
	f.ns = nsObj.Name
	for _, repo := range repos {
		f.push(repo, repo+" one\n")
		// Through the proxy: the Artifacts name the registry otherwise
		// than its notifications do, as an in-cluster Service would.
		a := &v1alpha1.Artifact{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: nameOf(repo)},
			Spec: v1alpha1.ArtifactSpec{
				Reference: f.proxy.Host + "/" + repo + ":v1",
				PlainHTTP: true,
				Interval:  metav1.Duration{Duration: time.Hour},
				ConfigMap: &v1alpha1.ConfigMapOutput{Name: nameOf(repo)},
			},
		}
		Expect(f.c.Create(ctx, a)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(f.c.Delete(ctx, a))).To(Succeed()) })
	}
	return f
}

func nameOf(repo string) string { return strings.ReplaceAll(repo, "/", "-") }

func (f *pushFixture) push(repo, text string) {
	Expect(os.WriteFile(filepath.Join(f.src, "a.txt"), []byte(text), 0o600)).To(Succeed())
	f.oc.In(f.src).MustRun(GinkgoT(), append(append([]string{"push"}, f.reg.OcisyncFlags("")...), f.reg.Ref(repo, "v1"), "a.txt")...)
}

func (f *pushFixture) content(repo string) func() string {
	return func() string {
		cm := &corev1.ConfigMap{}
		if err := f.c.Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: nameOf(repo)}, cm); err != nil {
			return ""
		}
		return cm.Data["a.txt"]
	}
}

// notify posts a Distribution envelope with one manifest push of repo.
func notify(receiverURL, token, repo string) int {
	body := fmt.Sprintf(`{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":%q,"tag":"v1"}}]}`, repo)
	req, err := http.NewRequest(http.MethodPost, receiverURL, strings.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/vnd.docker.distribution.events.v2+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	return resp.StatusCode
}

var _ = Describe("the push receiver", func() {
	It("syncs an Artifact whose interval is an hour within seconds of a push the registry notifies, and no other", func() {
		receiverAddr := freeAddr()
		hook := "http://" + receiverAddr + "/hooks/distribution"
		f := newPushFixture(hook, "push/app", "push/other")

		probe, metricsAddr := freeAddr(), freeAddr()
		m := startManager("--health-probe-bind-address", probe, "--metrics-bind-address", metricsAddr,
			"--watch-namespaces", f.ns, "--webhook-bind-address", receiverAddr, "--webhook-token-file", f.tokFile)
		expectReady(m, probe)
		Eventually(f.content("push/app")).WithTimeout(30 * time.Second).Should(Equal("push/app one\n"))
		Eventually(f.content("push/other")).WithTimeout(30 * time.Second).Should(Equal("push/other one\n"))
		// The first syncs' follow-ups (the ConfigMap's creation makes one
		// more sync, a HEAD) end before counting starts.
		otherBefore := f.proxy.settled("push/other")

		By("refusing a notification without the token, or with another, and a malformed one")
		Expect(notify(hook, "", "push/app")).To(Equal(http.StatusUnauthorized))
		Expect(notify(hook, "not-"+pushToken, "push/app")).To(Equal(http.StatusUnauthorized))
		req, err := http.NewRequest(http.MethodPost, hook, strings.NewReader(`{"events": [`))
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Authorization", "Bearer "+pushToken)
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))

		By("following a push within seconds, an hour before the interval")
		appBefore := f.proxy.count("push/app")
		pushed := time.Now()
		f.push("push/app", "push/app two\n")
		Eventually(f.content("push/app")).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Equal("push/app two\n"))
		GinkgoWriter.Printf("the push reached the ConfigMap in %s\n", time.Since(pushed))
		Expect(f.proxy.count("push/app")-appBefore).To(BeNumerically("<=", 3), "a HEAD and a GET, and perhaps one more for the registry's retry")

		By("making a few syncs of a flood of 300 notifications for one repository")
		appBefore = f.proxy.count("push/app")
		var wg sync.WaitGroup
		codes := make(chan int, 300)
		for range 10 {
			wg.Go(func() {
				for range 30 {
					codes <- notify(hook, pushToken, "push/app")
				}
			})
		}
		wg.Wait()
		close(codes)
		for code := range codes {
			Expect(code).To(Or(Equal(http.StatusAccepted), Equal(http.StatusTooManyRequests)), "a flood is answered 2xx or 429")
		}
		time.Sleep(time.Second) // the last window and its syncs
		flood := f.proxy.count("push/app") - appBefore
		GinkgoWriter.Printf("300 notifications made %d manifest requests for the repository\n", flood)
		Expect(flood).To(And(BeNumerically(">=", 1), BeNumerically("<=", 10)), "at most a few syncs (one HEAD each) for 300 notifications")
		Expect(f.proxy.count("push/other")).To(Equal(otherBefore), "the other repository's Artifact was never asked about")
		Expect(f.content("push/other")()).To(Equal("push/other one\n"))

		By("counting the requests by result")
		_, metrics, err := httpGet("http://" + metricsAddr + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		Expect(metrics).To(ContainSubstring(`ocisync_webhook_events_total{provider="distribution",result="unauthorized"} 2`))
		Expect(metrics).To(ContainSubstring(`ocisync_webhook_events_total{provider="distribution",result="malformed"} 1`))
		Expect(metrics).To(MatchRegexp(`ocisync_webhook_events_total\{provider="distribution",result="accepted"\} [1-9][0-9][0-9]`))
		stopManager(m)
	})

	It("has a replica that does not lead hand a push to the leader, and follows pushes after a failover", func() {
		// The registry notifies the second replica, which will not lead.
		receiverA, receiverB := freeAddr(), freeAddr()
		f := newPushFixture("http://"+receiverB+"/hooks/distribution", "push/two")
		leaseName := "push-" + f.ns
		args := func(receiver, probe string) []string {
			return []string{"--leader-elect", "--leader-election-namespace", f.ns, "--leader-election-id", leaseName,
				"--health-probe-bind-address", probe, "--watch-namespaces", f.ns,
				"--webhook-bind-address", receiver, "--webhook-token-file", f.tokFile}
		}
		leaseHolder := func() (string, error) {
			lease, err := clientset.CoordinationV1().Leases(f.ns).Get(context.Background(), leaseName, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			return holder(lease), nil
		}
		probeA, probeB := freeAddr(), freeAddr()
		a := startManager(args(receiverA, probeA)...)
		expectReady(a, probeA)
		Eventually(leaseHolder).WithTimeout(60 * time.Second).ShouldNot(BeEmpty())
		leader, _ := leaseHolder()
		Eventually(f.content("push/two")).WithTimeout(30 * time.Second).Should(Equal("push/two one\n"))
		b := startManager(args(receiverB, probeB)...)
		expectReady(b, probeB)
		Consistently(leaseHolder).WithTimeout(time.Second).Should(Equal(leader), "the first manager keeps the Lease")

		By("pushing: the registry notifies the replica that does not lead")
		pushed := time.Now()
		f.push("push/two", "push/two two\n")
		Eventually(f.content("push/two")).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Equal("push/two two\n"))
		GinkgoWriter.Printf("through the replica that does not lead, the push reached the ConfigMap in %s\n", time.Since(pushed))
		art := &v1alpha1.Artifact{}
		Expect(f.c.Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: "push-two"}, art)).To(Succeed())
		Expect(art.Annotations).To(HaveKey(v1alpha1.AnnotationReconcileRequestedAt), "the replica asked the leader through the annotation")
		Expect(string(b.Out.Contents()) + string(b.Err.Contents())).To(ContainSubstring("requested from the leader"))

		By("stopping the leader: the second replica leads and queues pushes itself")
		stopManager(a)
		Eventually(leaseHolder).WithTimeout(20 * time.Second).Should(And(Not(BeEmpty()), Not(Equal(leader))))
		pushed = time.Now()
		f.push("push/two", "push/two three\n")
		Eventually(f.content("push/two")).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Equal("push/two three\n"))
		GinkgoWriter.Printf("after the failover, the push reached the ConfigMap in %s\n", time.Since(pushed))
		Eventually(func() string { return string(b.Err.Contents()) + string(b.Out.Contents()) }).Should(ContainSubstring(`"how":"queued"`))
		stopManager(b)
		Expect(b).To(gexec.Exit(0))
	})
})
