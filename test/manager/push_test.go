package manager_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

var _ = Describe("the push receiver", func() {
	It("syncs an Artifact whose interval is an hour within seconds of a push the registry notifies", func() {
		ctx := context.Background()
		receiverAddr := freeAddr()
		const token = "push-receiver-test-token"
		tokenFile := filepath.Join(GinkgoT().TempDir(), "token")
		Expect(os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)).To(Succeed())
		reg := registrytest.Start(GinkgoT(), registrytest.Options{Notify: registrytest.Notify{URL: "http://" + receiverAddr + "/hooks/distribution", Token: token}})
		oc := registrytest.Ocisync(GinkgoT())
		src := GinkgoT().TempDir()
		push := func(text string) string {
			Expect(os.WriteFile(filepath.Join(src, "a.txt"), []byte(text), 0o600)).To(Succeed())
			return oc.In(src).MustRun(GinkgoT(), append(append([]string{"push"}, reg.OcisyncFlags("")...), reg.Ref("push/app", "v1"), "a.txt")...).LastLine()
		}
		push("one\n")

		c := newClient()
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "push-"}}
		Expect(c.Create(ctx, nsObj)).To(Succeed())
		ns := nsObj.Name
		a := &v1alpha1.Artifact{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
			Spec: v1alpha1.ArtifactSpec{
				Reference: reg.Ref("push/app", "v1"),
				PlainHTTP: true,
				Interval:  metav1.Duration{Duration: time.Hour},
				ConfigMap: &v1alpha1.ConfigMapOutput{Name: "app"},
			},
		}
		Expect(c.Create(ctx, a)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(c.Delete(ctx, a))).To(Succeed()) })

		probe, metricsAddr := freeAddr(), freeAddr()
		m := startManager("--health-probe-bind-address", probe, "--metrics-bind-address", metricsAddr,
			"--watch-namespaces", ns, "--webhook-bind-address", receiverAddr, "--webhook-token-file", tokenFile)
		expectReady(m, probe)
		content := func() string {
			cm := &corev1.ConfigMap{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "app"}, cm); err != nil {
				return ""
			}
			return cm.Data["a.txt"]
		}
		Eventually(content).WithTimeout(30 * time.Second).Should(Equal("one\n"))

		By("refusing a notification without the token")
		body := `{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"push/app","tag":"v1"}}]}`
		resp, err := http.Post("http://"+receiverAddr+"/hooks/distribution", "application/vnd.docker.distribution.events.v2+json", strings.NewReader(body))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))

		By("following a push within seconds, an hour before the interval")
		pushed := time.Now()
		push("two\n")
		Eventually(content).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Equal("two\n"))
		GinkgoWriter.Printf("the push reached the ConfigMap in %s\n", time.Since(pushed))

		By("counting the requests by result")
		_, metrics, err := httpGet("http://" + metricsAddr + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		Expect(metrics).To(ContainSubstring(`ocisync_webhook_events_total{provider="distribution",result="unauthorized"} 1`))
		Expect(metrics).To(MatchRegexp(`ocisync_webhook_events_total\{provider="distribution",result="accepted"\} [1-9]`))
		stopManager(m)
	})
})
