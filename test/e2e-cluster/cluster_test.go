package e2ecluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	clustertest "github.com/ocisync/ocisync/test/cluster"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// The specs share one installed manager and run in order: the last ones
// delete the manager Pod and then uninstall it.
var _ = Describe("ocisync installed from its bundle", Ordered, func() {
	It("runs the manager as a Pod that is Ready, holds the leader Lease, serves metrics through its Service and logs JSON", func() {
		pod := managerPod()
		Expect(jsonpath(managerNS, "pod/"+pod, ".status.phase")).To(Equal("Running"))
		Expect(jsonpath(managerNS, "pod/"+pod, `.status.conditions[?(@.type=="Ready")].status`)).To(Equal("True"))
		Expect(jsonpath(managerNS, "pod/"+pod, ".spec.containers[0].image")).To(HavePrefix("127.0.0.1:5000/ocisync:"))

		Eventually(func() string {
			out, _ := kubectlErr("-n", managerNS, "get", "lease", leaseName, "-o", "jsonpath={.spec.holderIdentity}")
			return out
		}, 2*time.Minute, time.Second).Should(HavePrefix(pod+"_"), "the manager Pod %s holds the Lease %s", pod, leaseName)

		ip := jsonpath(managerNS, "service/"+metricsService, ".spec.clusterIP")
		port := jsonpath(managerNS, "service/"+metricsService, ".spec.ports[0].port")
		var metrics string
		Eventually(func() error {
			resp, err := http.Get("http://" + ip + ":" + port + "/metrics")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /metrics through the Service: %s", resp.Status)
			}
			metrics = string(b)
			return err
		}, time.Minute, time.Second).Should(Succeed())
		Expect(metrics).To(ContainSubstring("controller_runtime_reconcile_total"))

		logs := kubectl("-n", managerNS, "logs", "pod/"+pod)
		lines := nonEmpty(logs)
		Expect(lines).NotTo(BeEmpty())
		for _, l := range lines {
			Expect(json.Valid([]byte(l))).To(BeTrue(), "a manager log line is not JSON: %s", l)
		}
	})

	It("publishes a ConfigMap that a consumer Deployment mounts and reads", func() {
		const ns = "e2e-configmap"
		namespace(ns)
		files := map[string]string{
			"app.conf": "listen = 8080\nname = e2e\n",
			"motd.txt": "hello from an OCI registry\n",
		}
		digest := pushFiles("e2e/config", "v1", files)
		apply(artifactYAML(ns, "app-config", reg.Ref("e2e/config", "v1"), `configMap: {name: app-config}`))
		Expect(waitReady(ns, "app-config", 2*time.Minute)).To(Equal(digest))

		apply(consumerDeployment(ns, "consumer", `configMap: {name: app-config}`))
		kubectl("-n", ns, "rollout", "status", "deployment/consumer", "--timeout=2m")
		Eventually(func() string { return podLogs(ns, "app=consumer") }, time.Minute, time.Second).Should(ContainSubstring("== end"))
		logs := podLogs(ns, "app=consumer")
		for name, content := range files {
			Expect(logs).To(ContainSubstring(fmt.Sprintf("== %s %d\n%s\n", name, len(content), content)))
		}
	})

	Context("rolling out workloads on change", func() {
		const ns = "e2e-rollout"

		// podsOf names the Pods of a consumer, running or not.
		podsOf := func(app string) []string {
			return nonEmpty(kubectl("-n", ns, "get", "pods", "-l", "app="+app, "-o", `jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}`))
		}
		// readsAll: the consumer's current Pods' logs hold every file.
		readsAll := func(app string, files map[string]string) func(g Gomega) {
			return func(g Gomega) {
				logs := podLogs(ns, "app="+app)
				for name, content := range files {
					g.Expect(logs).To(ContainSubstring(fmt.Sprintf("== %s %d\n%s\n", name, len(content), content)))
				}
			}
		}

		It("restarts a Deployment mounting the ConfigMap and one mounting the Secret when a new version is published, and their new Pods read it", func() {
			namespace(ns)
			v1 := map[string]string{"app.conf": "version = 1\n", "token.txt": "license-v1\n"}
			v2 := map[string]string{"app.conf": "version = 2\n", "token.txt": "license-v2\n"}
			d1 := pushFiles("e2e/rollout", "live", v1)
			apply(artifactYAML(ns, "cfg", reg.Ref("e2e/rollout", "live"), `configMap: {name: app-config}
  rollout: {workloads: [{kind: Deployment, name: cm-consumer}]}`))
			apply(artifactYAML(ns, "sec", reg.Ref("e2e/rollout", "live"), `secret: {name: app-secret}
  rollout: {workloads: [{kind: Deployment, name: secret-consumer}]}`))
			Expect(waitReady(ns, "cfg", 2*time.Minute)).To(Equal(d1))
			Expect(waitReady(ns, "sec", 2*time.Minute)).To(Equal(d1))

			// Created after the publication: annotated when they appear, and
			// their first Pods read v1.
			apply(consumerDeployment(ns, "cm-consumer", `configMap: {name: app-config}`))
			apply(consumerDeployment(ns, "secret-consumer", `secret: {secretName: app-secret}`))
			for _, app := range []string{"cm-consumer", "secret-consumer"} {
				Eventually(func() string {
					return jsonpath(ns, "deployment/"+app, `.spec.template.metadata.annotations`)
				}, time.Minute, time.Second).Should(ContainSubstring(d1), "%s was not annotated with the published digest when it appeared", app)
				kubectl("-n", ns, "rollout", "status", "deployment/"+app, "--timeout=2m")
				Eventually(readsAll(app, v1), time.Minute, time.Second).Should(Succeed())
			}
			before := map[string][]string{"cm-consumer": podsOf("cm-consumer"), "secret-consumer": podsOf("secret-consumer")}

			d2 := pushFiles("e2e/rollout", "live", v2)
			Expect(d2).NotTo(Equal(d1))
			now := time.Now().Format(time.RFC3339Nano)
			kubectl("-n", ns, "annotate", "--overwrite", "artifact/cfg", "artifact/sec", "reconcile.ocisync.io/requestedAt="+now)
			for _, a := range []string{"cfg", "sec"} {
				Eventually(func() string { return jsonpath(ns, "artifact/"+a, ".status.digest") }, 2*time.Minute, time.Second).Should(Equal(d2))
			}
			for _, app := range []string{"cm-consumer", "secret-consumer"} {
				Eventually(func() string {
					return jsonpath(ns, "deployment/"+app, `.spec.template.metadata.annotations`)
				}, time.Minute, time.Second).Should(ContainSubstring(d2))
				kubectl("-n", ns, "rollout", "status", "deployment/"+app, "--timeout=2m")
				// Only the new ReplicaSet's Pod is left once the rollout is
				// done, and it is not one of the Pods that read v1.
				Eventually(func() []string { return podsOf(app) }, time.Minute, time.Second).Should(And(HaveLen(1), Not(ContainElements(before[app]))))
				Eventually(readsAll(app, v2), time.Minute, time.Second).Should(Succeed(), "the new Pod of %s did not read v2; its logs:\n%s", app, podLogs(ns, "app="+app))
				Expect(podLogs(ns, "app="+app)).NotTo(ContainSubstring("version = 1"))
			}
			// One rollout per digest: the template holds d2 and the
			// Deployment's generation moved once for each digest (created,
			// d1 annotation, d2 annotation at most).
			for _, app := range []string{"cm-consumer", "secret-consumer"} {
				Expect(strings.Count(jsonpath(ns, "deployment/"+app, `.spec.template.metadata.annotations`), "sha256:")).To(Equal(1))
			}
		})
	})

	Context("with volume output, in a namespace that enforces Pod Security restricted", Ordered, func() {
		const ns = "e2e-volume"
		v1 := versionFiles("v1", map[string]string{"data/a.txt": "alpha 1\n", "data/b.txt": strings.Repeat("bravo 1\n", 5000)})
		v2 := versionFiles("v2", map[string]string{"data/a.txt": "alpha 2\n", "data/b.txt": strings.Repeat("bravo 2\n", 7000), "data/c.txt": "charlie\n"})

		It("runs the sync Job's Pod as 65532 and a consumer Pod reads current/ byte for byte", func() {
			namespace(ns, "pod-security.kubernetes.io/enforce=restricted")
			claim(ns, "content")
			digest := pushFolder("e2e/site", "live", v1)
			apply(artifactYAML(ns, "site", reg.Ref("e2e/site", "live"), `volume: {claimName: content}`))
			Expect(waitReady(ns, "site", 3*time.Minute)).To(Equal(digest))

			By("the sync Job's Pod ran to completion as 65532 with fsGroup and a read-only pull Secret")
			job := jsonpath(ns, "artifact/site", ".status.volume.job")
			Expect(job).NotTo(BeEmpty())
			Expect(jsonpath(ns, "job/"+job, `.status.conditions[?(@.type=="Complete")].status`)).To(Equal("True"))
			pod := strings.TrimSpace(kubectl("-n", ns, "get", "pods", "-l", "job-name="+job, "-o", "jsonpath={.items[0].metadata.name}"))
			Expect(jsonpath(ns, "pod/"+pod, ".status.phase")).To(Equal("Succeeded"))
			Expect(jsonpath(ns, "pod/"+pod, ".spec.securityContext.runAsUser")).To(Equal("65532"))
			Expect(jsonpath(ns, "pod/"+pod, ".spec.securityContext.fsGroup")).To(Equal("65532"))
			Expect(jsonpath(ns, "pod/"+pod, `.spec.containers[0].volumeMounts[?(@.name=="pull-secret-0")].readOnly`)).To(Equal("true"))

			By("a consumer Pod that mounts the claim follows current/")
			consumerPod(ns, "reader", "content", "watch", "/data", folder)
			Eventually(func() string { return podLogs(ns, "app=reader") }, time.Minute, time.Second).Should(ContainSubstring("seen v1 ok"))
			Expect(readVolume(ns, "reader", v1)).To(Succeed())
			stat := kubectl("-n", ns, "exec", "reader", "--", "/testtools", "stat", "/data/current/"+folder+"/VERSION", "/data/.ocisync")
			Expect(stat).To(MatchRegexp(`/data/current/site/VERSION -r\S+ 65532 65532`), "written by the Job's user")
			Expect(stat).To(MatchRegexp(`/data/.ocisync d\S+ \d+ 65532`), "the version folders, group-owned by fsGroup")
		})

		It("swaps current to a new push, and the consumer never sees a version half written", func() {
			digest := pushFolder("e2e/site", "live", v2)
			kubectl("-n", ns, "annotate", "artifact", "site", "--overwrite", fmt.Sprintf("reconcile.ocisync.io/requestedAt=%d", time.Now().UnixNano()))
			Eventually(func() string {
				return jsonpath(ns, "artifact/site", ".status.digest")
			}, 3*time.Minute, time.Second).Should(Equal(digest))
			waitReady(ns, "site", time.Minute)
			Eventually(func() string { return podLogs(ns, "app=reader") }, time.Minute, time.Second).Should(ContainSubstring("seen v2 ok"))
			Expect(podLogs(ns, "app=reader")).NotTo(ContainSubstring("BAD"))
			Expect(readVolume(ns, "reader", v2)).To(Succeed())
		})
	})

	It("extracts an ORAS folder and a real tar but writes plain files that ORAS typed as tar as files", func() {
		const ns = "e2e-extract"
		namespace(ns, "pod-security.kubernetes.io/enforce=restricted")
		claim(ns, "unpacked")
		dir := GinkgoT().TempDir()
		writeFiles(dir, map[string]string{"site/index.html": "<h1>e2e</h1>\n", "site/css/main.css": "body{}\n", "notes.txt": "plain notes, not a tar\n"})
		Expect(os.WriteFile(filepath.Join(dir, "bundle.tar"), tarOf(map[string]string{"one.txt": "one\n", "etc/two.txt": "two\n"}), 0o644)).To(Succeed())
		// notes.txt goes without a media type: ORAS gives it
		// application/vnd.oci.image.layer.v1.tar, as it does any file.
		digest := pushIn(dir, "e2e/mixed", "v1", "site", "bundle.tar:application/vnd.oci.image.layer.v1.tar", "notes.txt")
		apply(artifactYAML(ns, "mixed", reg.Ref("e2e/mixed", "v1"), `volume: {claimName: unpacked, extract: true}`))
		Expect(waitReady(ns, "mixed", 3*time.Minute)).To(Equal(digest))

		consumerPod(ns, "reader", "unpacked", "pause")
		for path, want := range map[string]string{
			"site/index.html":   "<h1>e2e</h1>\n",
			"site/css/main.css": "body{}\n",
			// A tar's entries go into a folder named by its title.
			"bundle.tar/one.txt":     "one\n",
			"bundle.tar/etc/two.txt": "two\n",
			"notes.txt":              "plain notes, not a tar\n",
		} {
			Expect(kubectl("-n", ns, "exec", "reader", "--", "/testtools", "cat", "/data/current/"+path)).To(Equal(want), "current/%s", path)
		}
	})

	It("with the push-receiver component and two replicas, syncs within seconds of a push the registry notifies through the Service, and of one posted to the replica that does not lead", func() {
		const ns = "e2e-push"
		namespace(ns)
		token := "e2e-push-token-" + strings.Repeat("x", 32)
		kubectl("-n", managerNS, "create", "secret", "generic", "ocisync-push-receiver-token", "--from-literal=token="+token)

		By("make build-installer INSTALL_COMPONENTS=push-receiver, applied, scaled to two replicas")
		bundle := buildInstaller(jsonpath(managerNS, "deployment/"+managerDeployment, ".spec.template.spec.containers[0].image"), "push-receiver")
		kubectl("apply", "-f", bundle)
		// The uninstall spec deletes what was applied last; the spec's
		// own temporary folder goes when it ends, the suite's stays.
		b, err := os.ReadFile(bundle)
		Expect(err).NotTo(HaveOccurred())
		installYAML = filepath.Join(filepath.Dir(installYAML), "install-push-receiver.yaml")
		Expect(os.WriteFile(installYAML, b, 0o600)).To(Succeed())
		kubectl("-n", managerNS, "scale", "deployment/"+managerDeployment, "--replicas=2")
		kubectl("-n", managerNS, "rollout", "status", "deployment/"+managerDeployment, "--timeout=3m")
		DeferCleanup(func() {
			kubectl("-n", managerNS, "scale", "deployment/"+managerDeployment, "--replicas=1")
			kubectl("-n", managerNS, "rollout", "status", "deployment/"+managerDeployment, "--timeout=3m")
		})
		ip := jsonpath(managerNS, "service/ocisync-push-receiver", ".spec.clusterIP")
		hook := "http://" + ip + ":80/hooks/distribution"

		By("a registry whose notifications go to the receiver's Service")
		nreg := registrytest.Start(GinkgoT(), registrytest.Options{Host: clustertest.NodeIP, Notify: registrytest.Notify{URL: hook, Token: token}})
		dir := GinkgoT().TempDir()
		push := func(r *registrytest.Registry, config, repo, text string) {
			GinkgoHelper()
			writeFiles(dir, map[string]string{"a.txt": text})
			pusher.In(dir).MustRun(GinkgoT(), append(append([]string{"push", r.Ref(repo, "v1")}, r.OrasFlags(config)...), "a.txt")...)
		}
		push(nreg, "", "e2e/pushed", "one\n")
		push(reg, pushConfig, "e2e/posted", "one\n")
		apply(artifactYAML(ns, "pushed", nreg.Ref("e2e/pushed", "v1"), `configMap: {name: pushed}`))
		apply(artifactYAML(ns, "posted", reg.Ref("e2e/posted", "v1"), `configMap: {name: posted}`))
		waitReady(ns, "pushed", 2*time.Minute)
		waitReady(ns, "posted", 2*time.Minute)
		content := func(name string) func() string {
			return func() string { return kubectlOr("-n", ns, "get", "configmap", name, "-o", `jsonpath={.data.a\.txt}`) }
		}

		By("refusing a notification without the token")
		envelope := `{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"e2e/posted","tag":"v1"}}]}`
		post := func(url, bearer string) int {
			GinkgoHelper()
			req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(envelope))
			Expect(err).NotTo(HaveOccurred())
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			return resp.StatusCode
		}
		Expect(post(hook, "")).To(Equal(http.StatusUnauthorized))

		By("pushing: the registry notifies the Service, an hour before the interval")
		pushed := time.Now()
		push(nreg, "", "e2e/pushed", "two\n")
		Eventually(content("pushed"), 20*time.Second, 100*time.Millisecond).Should(Equal("two\n"))
		GinkgoWriter.Printf("the push reached the ConfigMap in %s\n", time.Since(pushed))

		By("posting to the replica that does not lead")
		holder := kubectl("-n", managerNS, "get", "lease", leaseName, "-o", "jsonpath={.spec.holderIdentity}")
		var follower string
		for _, line := range nonEmpty(kubectl("-n", managerNS, "get", "pods", "-l", managerSelector, "-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.podIP}{"\n"}{end}`)) {
			f := strings.Fields(line)
			if len(f) == 2 && !strings.HasPrefix(holder, f[0]+"_") {
				follower = f[1]
			}
		}
		Expect(follower).NotTo(BeEmpty(), "a manager Pod that does not hold the Lease %q", holder)
		push(reg, pushConfig, "e2e/posted", "two\n")
		Expect(post("http://"+follower+":9443/hooks/distribution", token)).To(Equal(http.StatusAccepted))
		Eventually(content("posted"), 20*time.Second, 100*time.Millisecond).Should(Equal("two\n"))
		Expect(jsonpath(ns, "artifact/posted", `.metadata.annotations.reconcile\.ocisync\.io/requestedAt`)).NotTo(BeEmpty(),
			"the replica that does not lead asked the leader through the annotation")
	})

	It("replaces a manager Pod deleted in the middle of syncs: the new Pod takes the Lease and every Artifact becomes Ready, nothing lost or half written", func() {
		const ns = "e2e-failover"
		namespace(ns, "pod-security.kubernetes.io/enforce=restricted")
		claim(ns, "failover")
		const n = 6
		want := map[string]map[string]string{}
		for i := range n {
			name := fmt.Sprintf("cm-%d", i)
			want[name] = map[string]string{"value.txt": fmt.Sprintf("artifact %d\n%s", i, strings.Repeat("x", 20000*i))}
			pushFiles("e2e/failover-"+name, "v1", want[name])
		}
		vfiles := versionFiles("v1", map[string]string{"data/big.bin": strings.Repeat("0123456789abcdef", 1<<16)})
		vdigest := pushFolder("e2e/failover-vol", "v1", vfiles)

		old := managerPod()
		var all strings.Builder
		for i := range n {
			name := fmt.Sprintf("cm-%d", i)
			all.WriteString(artifactYAML(ns, name, reg.Ref("e2e/failover-"+name, "v1"), `configMap: {name: `+name+`}`) + "\n---\n")
		}
		all.WriteString(artifactYAML(ns, "vol", reg.Ref("e2e/failover-vol", "v1"), `volume: {claimName: failover}`))
		apply(all.String())
		// Mid-sync: as soon as the first Artifact has a status.
		Eventually(func() string {
			out, _ := kubectlErr("-n", ns, "get", "artifacts", "-o", "jsonpath={.items[*].status.conditions[*].type}")
			return out
		}, time.Minute, 100*time.Millisecond).ShouldNot(BeEmpty())
		kubectl("-n", managerNS, "delete", "pod", old, "--wait=false")

		Eventually(func() string {
			p, _ := managerPodErr()
			return p
		}, 2*time.Minute, time.Second).ShouldNot(Or(BeEmpty(), Equal(old)))
		kubectl("-n", managerNS, "rollout", "status", "deployment/"+managerDeployment, "--timeout=3m")
		replacement := managerPod()
		Eventually(func() string {
			out, _ := kubectlErr("-n", managerNS, "get", "lease", leaseName, "-o", "jsonpath={.spec.holderIdentity}")
			return out
		}, 2*time.Minute, time.Second).Should(HavePrefix(replacement + "_"))

		for name, files := range want {
			waitReady(ns, name, 3*time.Minute)
			for key, content := range files {
				Expect(jsonpath(ns, "configmap/"+name, ".data."+strings.ReplaceAll(key, ".", `\.`))).To(Equal(content), "ConfigMap %s key %s", name, key)
			}
		}
		Expect(waitReady(ns, "vol", 3*time.Minute)).To(Equal(vdigest))
		consumerPod(ns, "reader", "failover", "pause")
		Expect(readVolume(ns, "reader", vfiles)).To(Succeed())
	})

	It("uninstalls with kubectl delete -f, leaving only what the Artifacts' deletion leaves", func() {
		// Outputs are owned by their Artifact: deleting the CRD deletes the
		// Artifacts, and the garbage collector their ConfigMaps and Jobs.
		// Claims are the user's and stay, with the content synced into them.
		kubectl("delete", "-f", installYAML, "--timeout=3m")
		Eventually(func() string {
			out, _ := kubectlErr("get", "namespace", managerNS, "--ignore-not-found", "-o", "name")
			return out
		}, 2*time.Minute, time.Second).Should(BeEmpty())
		Expect(kubectlOr("get", "crd", "artifacts.ocisync.io", "--ignore-not-found", "-o", "name")).To(BeEmpty())
		Expect(kubectl("get", "clusterroles,clusterrolebindings", "-o", "name")).NotTo(ContainSubstring("ocisync"))
		Eventually(func() string {
			return kubectlOr("get", "configmaps,jobs", "-A", "-l", "ocisync.io/artifact", "-o", "name")
		}, 2*time.Minute, time.Second).Should(BeEmpty())
		Expect(kubectl("-n", "e2e-configmap", "get", "configmap", "app-config", "--ignore-not-found", "-o", "name")).To(BeEmpty())
		Expect(strings.TrimSpace(kubectl("-n", "e2e-volume", "get", "pvc", "content", "-o", "name"))).To(Equal("persistentvolumeclaim/content"))
	})

	It("runs make demo-cluster's story as the README tells it: the bundle installed, the sample Artifact Ready, its ConfigMap", func() {
		bin := os.Getenv("OCISYNC_TEST_BIN")
		Expect(bin).NotTo(BeEmpty(), "OCISYNC_TEST_BIN is not set: run make test")
		cmd := exec.Command(filepath.Join(repoRoot(), "hack", "demo-cluster.sh"))
		cmd.Env = append(os.Environ(), "CLUSTER_STATE="+cluster.State, "IMAGE_DIR="+os.Getenv(EnvImage), "OCISYNC="+bin)
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "hack/demo-cluster.sh:\n%s", out)
		Expect(string(out)).To(ContainSubstring("artifact.ocisync.io/app-config condition met"))
		Expect(jsonpath("default", "configmap/app-config", `.data.app\.yaml`)).To(ContainSubstring("replicas: 2"))
		pod := managerPod()
		Expect(jsonpath(managerNS, "pod/"+pod, `.status.conditions[?(@.type=="Ready")].status`)).To(Equal("True"))
	})
})

// Restricted Pod Security, for the consumer Pods.
const (
	podSecurity       = `securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}`
	containerSecurity = `securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}`
)

// artifactYAML is an Artifact pulling ref with the pull Secret of
// namespace(), over plain HTTP, with output (YAML flow) under spec.
func artifactYAML(ns, name, ref, output string) string {
	return fmt.Sprintf(`
apiVersion: ocisync.io/v1alpha1
kind: Artifact
metadata: {name: %s, namespace: %s}
spec:
  reference: %s
  plainHTTP: true
  interval: 1h
  pullSecrets: [{name: registry-creds}]
  %s
`, name, ns, ref, output)
}

// claim creates a PersistentVolumeClaim on one of the cluster's local
// PersistentVolumes and waits until it is bound.
func claim(ns, name string) {
	GinkgoHelper()
	apply(fmt.Sprintf(`
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s, namespace: %s}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local
  resources: {requests: {storage: 1Gi}}
`, name, ns))
	kubectl("-n", ns, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/"+name, "--timeout=1m")
}

// consumerPod runs the testtools image with args, the claim mounted
// read-only at /data, and waits until it runs.
func consumerPod(ns, name, claimName string, args ...string) {
	GinkgoHelper()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	apply(fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {app: %s}}
spec:
  %s
  containers:
  - name: reader
    image: %s
    args: [%s]
    %s
    volumeMounts: [{name: data, mountPath: /data, readOnly: true}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: %s, readOnly: true}
`, name, ns, name, podSecurity, testtoolsImage, strings.Join(quoted, ", "), containerSecurity, claimName))
	kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=2m")
}

// readVolume reads every file of want (a folder pushed by pushFolder)
// through the consumer Pod, under /data/current, and compares the bytes.
func readVolume(ns, pod string, want map[string]string) error {
	for path, content := range want {
		out, err := kubectlErr("-n", ns, "exec", pod, "--", "/testtools", "cat", "/data/current/"+folder+"/"+path)
		if err != nil {
			return err
		}
		if out != content {
			return fmt.Errorf("current/%s read by Pod %s: %d bytes, want %d bytes", path, pod, len(out), len(content))
		}
	}
	return nil
}

// versionFiles adds VERSION and SUMS (what testtools watch checks) to a
// folder's files: paths relative to the folder pushed.
func versionFiles(version string, files map[string]string) map[string]string {
	out := map[string]string{"VERSION": version + "\n"}
	var names []string
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var sums strings.Builder
	for _, name := range names {
		out[name] = files[name]
		sum := sha256.Sum256([]byte(files[name]))
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), name)
	}
	out["SUMS"] = sums.String()
	return out
}

// folder is the name of the folder pushFolder pushes; the volume output
// writes it as current/site.
const folder = "site"

// pushFolder pushes files as one folder, as `oras push REF site` does
// (one tar+gzip layer that ORAS marks for unpacking).
func pushFolder(repo, tag string, files map[string]string) string {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	writeFiles(filepath.Join(dir, folder), files)
	return pushIn(dir, repo, tag, folder)
}

// pushFiles pushes each file as a layer of its own.
func pushFiles(repo, tag string, files map[string]string) string {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	writeFiles(dir, files)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	return pushIn(dir, repo, tag, names...)
}

// pushIn runs oras push in dir with paths, returning the manifest digest.
func pushIn(dir, repo, tag string, paths ...string) string {
	GinkgoHelper()
	args := append([]string{"push", reg.Ref(repo, tag)}, reg.OrasFlags(pushConfig)...)
	res := pusher.In(dir).MustRun(GinkgoT(), append(args, paths...)...)
	return digestOf(res.Stdout)
}

func writeFiles(dir string, files map[string]string) {
	GinkgoHelper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		Expect(os.MkdirAll(filepath.Dir(p), 0o755)).To(Succeed())
		Expect(os.WriteFile(p, []byte(content), 0o644)).To(Succeed())
	}
}

// tarOf is an uncompressed tar of files.
func tarOf(files map[string]string) []byte {
	GinkgoHelper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		Expect(tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg})).To(Succeed())
		_, err := tw.Write([]byte(files[name]))
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(tw.Close()).To(Succeed())
	return buf.Bytes()
}

// managerPod is the name of the running manager Pod.
func managerPod() string {
	GinkgoHelper()
	var pod string
	Eventually(func() error {
		var err error
		pod, err = managerPodErr()
		if err == nil && pod == "" {
			err = fmt.Errorf("no running manager Pod")
		}
		return err
	}, 2*time.Minute, time.Second).Should(Succeed())
	return pod
}

// managerPodErr names the manager Pod that is not being deleted, if any.
func managerPodErr() (string, error) {
	out, err := kubectlErr("-n", managerNS, "get", "pods", "-l", managerSelector, "-o",
		`jsonpath={range .items[*]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{"\n"}{end}`)
	if err != nil {
		return "", err
	}
	for _, line := range nonEmpty(out) {
		f := strings.Fields(line)
		if len(f) == 1 {
			return f[0], nil
		}
	}
	return "", nil
}

func nonEmpty(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// consumerDeployment is a Deployment of namespace ns whose one container
// prints the files of volume (a volume source), mounted at /config, when
// it starts, then sleeps: new content reaches it only through a new Pod.
func consumerDeployment(ns, name, volume string) string {
	return fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      %s
      terminationGracePeriodSeconds: 1
      containers:
      - name: consumer
        image: %s
        args: [show, /config]
        %s
        volumeMounts: [{name: config, mountPath: /config}]
      volumes:
      - name: config
        %s
`, name, ns, name, name, podSecurity, testtoolsImage, containerSecurity, volume)
}
