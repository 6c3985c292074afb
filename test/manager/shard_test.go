package manager_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

var _ = Describe("two managers with --watch-label-selector", func() {
	It("split the Artifacts between them, each with its own Lease", func() {
		ctx := context.Background()
		reg := registrytest.Start(GinkgoT(), registrytest.Options{Auth: registrytest.AuthNone})
		src := filepath.Join(GinkgoT().TempDir(), "a.txt")
		Expect(os.WriteFile(src, []byte("a\n"), 0o600)).To(Succeed())
		ref := reg.Ref("shards/app", "v1")
		digest := registrytest.Ocisync(GinkgoT()).MustRun(GinkgoT(), append(append([]string{"push"}, reg.OcisyncFlags("")...), ref, src)...).LastLine()

		c := newClient()
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "shards-"}}
		Expect(c.Create(ctx, nsObj)).To(Succeed())
		ns := nsObj.Name

		// Artifacts of a shard no manager runs, too: nobody touches it.
		for _, shard := range []string{"a", "b", "c"} {
			a := &v1alpha1.Artifact{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-" + shard, Labels: map[string]string{"ocisync.io/shard": shard}},
				Spec: v1alpha1.ArtifactSpec{
					Reference: ref,
					PlainHTTP: true,
					Interval:  metav1.Duration{Duration: time.Second},
					ConfigMap: &v1alpha1.ConfigMapOutput{Name: "app-" + shard},
				},
			}
			Expect(c.Create(ctx, a)).To(Succeed())
			// Managers of later specs must not find it polling.
			DeferCleanup(func() { Expect(client.IgnoreNotFound(c.Delete(ctx, a))).To(Succeed()) })
		}

		managers := map[string]*gexec.Session{}
		for _, shard := range []string{"a", "b"} {
			probe := freeAddr()
			managers[shard] = startManager("--health-probe-bind-address", probe, "--metrics-bind-address", "0",
				"--watch-label-selector", "ocisync.io/shard="+shard,
				"--leader-elect", "--leader-election-namespace", "default", "--leader-election-id", "shard-"+shard+".ocisync.io")
			expectReady(managers[shard], probe)
		}
		for _, shard := range []string{"a", "b"} {
			Eventually(func(g Gomega) {
				a := &v1alpha1.Artifact{}
				g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "app-" + shard}, a)).To(Succeed())
				g.Expect(meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "Ready; status %+v", a.Status)
				g.Expect(a.Status.Digest).To(Equal(digest))
				cm := &corev1.ConfigMap{}
				g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "app-" + shard}, cm)).To(Succeed())
				g.Expect(cm.Labels).To(HaveKeyWithValue("ocisync.io/shard", shard), "the output is labelled for its shard")
			}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "Artifact app-%s", shard)
			lease, err := clientset.CoordinationV1().Leases("default").Get(ctx, "shard-"+shard+".ocisync.io", metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred(), "shard %s elects its leader through its own Lease", shard)
			Expect(holder(lease)).NotTo(BeEmpty())
		}
		other := &v1alpha1.Artifact{}
		Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "app-c"}, other)).To(Succeed())
		Expect(other.Status.Conditions).To(BeEmpty(), "no manager runs shard c")

		for shard, s := range managers {
			stopManager(s)
			log := string(s.Err.Contents())
			Expect(log).To(ContainSubstring(`"artifact":"`+ns+`/app-`+shard+`"`), "manager %s syncs its Artifact", shard)
			for _, notMine := range []string{"a", "b", "c"} {
				if notMine != shard {
					Expect(log).NotTo(ContainSubstring(ns+`/app-`+notMine), "manager %s touched Artifact app-%s", shard, notMine)
				}
			}
			Expect(strings.Count(log, `"leaderElectionID"`)).To(BeZero(), "no warning about a shared Lease: each has its own")
		}
	})
})
