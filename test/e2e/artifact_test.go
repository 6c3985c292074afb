package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// syncImage is the image the manager is told to run sync Jobs with.
const syncImage = "registry.example/ocisync:e2e"

const (
	namespace = "ocisync-e2e"
	// syncTimeout bounds every wait for the manager: a sync takes well under
	// a second, but the first one also waits for the manager to start.
	syncTimeout = 60 * time.Second
	user        = "e2e-user"
)

// sample is the Artifact of config/samples, pointed at the test registry,
// and what the test needs to know of it.
type sample struct {
	obj        *unstructured.Unstructured
	ref        string // spec.reference, on the test registry
	mediaType  string // spec.mediaType
	pullSecret string // spec.pullSecrets[0].name
	configMap  string // spec.configMap.name
}

// loadSample reads the sample as `kubectl apply -f` would and points it at
// host: the registry part of spec.reference is replaced, plainHTTP set, and
// the interval shortened so that a new push is noticed within seconds.
func loadSample(host string) sample {
	data, err := os.ReadFile(sampleFile)
	Expect(err).NotTo(HaveOccurred(), "read the sample Artifact")
	obj := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal(data, &obj.Object)).To(Succeed(), "decode %s", sampleFile)
	Expect(obj.GroupVersionKind()).To(Equal(ocisyncv1alpha1.GroupVersion.WithKind("Artifact")), "kind of %s", sampleFile)

	str := func(fields ...string) string {
		v, found, err := unstructured.NestedString(obj.Object, fields...)
		Expect(err).NotTo(HaveOccurred(), "%s: field %s", sampleFile, strings.Join(fields, "."))
		Expect(found).To(BeTrue(), "%s must set %s: this test relies on it", sampleFile, strings.Join(fields, "."))
		return v
	}
	s := sample{obj: obj, mediaType: str("spec", "mediaType"), configMap: str("spec", "configMap", "name")}
	secrets, _, err := unstructured.NestedSlice(obj.Object, "spec", "pullSecrets")
	Expect(err).NotTo(HaveOccurred())
	Expect(secrets).To(HaveLen(1), "%s must name one pull secret: this test creates it", sampleFile)
	s.pullSecret, _ = secrets[0].(map[string]any)["name"].(string)
	Expect(s.pullSecret).NotTo(BeEmpty(), "%s: spec.pullSecrets[0].name", sampleFile)

	_, repoAndTag, ok := strings.Cut(str("spec", "reference"), "/")
	Expect(ok).To(BeTrue(), "%s: spec.reference should be registry/repository:tag", sampleFile)
	Expect(repoAndTag).NotTo(ContainSubstring("@"), "%s: spec.reference should name a tag, not a digest, for the test to push to", sampleFile)
	s.ref = host + "/" + repoAndTag

	obj.SetNamespace(namespace)
	Expect(unstructured.SetNestedField(obj.Object, s.ref, "spec", "reference")).To(Succeed())
	Expect(unstructured.SetNestedField(obj.Object, true, "spec", "plainHTTP")).To(Succeed())
	Expect(unstructured.SetNestedField(obj.Object, "2s", "spec", "interval")).To(Succeed())
	return s
}

// artifactFile is a file the test pushes, and expects in the ConfigMap when
// its media type is the sample's.
type artifactFile struct {
	name, mediaType string
	data            []byte
}

// pushFiles writes files into a fresh folder and pushes them to ref with
// the ORAS CLI, which titles each layer with its file name; it returns
// the manifest digest ORAS resolves the tag to.
func pushFiles(oras *registrytest.CLI, reg *registrytest.Registry, dockerConfig, ref string, files []artifactFile) string {
	dir := GinkgoT().TempDir()
	args := append([]string{"push"}, reg.OrasFlags(dockerConfig)...)
	args = append(args, ref)
	for _, f := range files {
		Expect(os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600)).To(Succeed())
		args = append(args, f.name+":"+f.mediaType)
	}
	oras.In(dir).MustRun(GinkgoT(), args...)
	res := oras.MustRun(GinkgoT(), append(append([]string{"resolve"}, reg.OrasFlags(dockerConfig)...), ref)...)
	digest := res.LastLine()
	Expect(digest).To(MatchRegexp(`^sha256:[a-f0-9]{64}$`), "oras resolve %s", ref)
	return digest
}

// selected returns the files of mediaType, by name.
func selected(files []artifactFile, mediaType string) map[string][]byte {
	out := map[string][]byte{}
	for _, f := range files {
		if f.mediaType == mediaType {
			out[f.name] = f.data
		}
	}
	return out
}

// configMapFiles returns the files a ConfigMap holds, text and binary.
func configMapFiles(g Gomega, cm *corev1.ConfigMap) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range cm.Data {
		out[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		g.Expect(out).NotTo(HaveKey(k), "ConfigMap %s has key %q in both data and binaryData", cm.Name, k)
		out[k] = v
	}
	return out
}

// waitSynced waits until the Artifact is Ready for the current generation
// with manifest digest, and returns it.
func waitSynced(name, digest string) *ocisyncv1alpha1.Artifact {
	art := &ocisyncv1alpha1.Artifact{}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, art)).To(Succeed())
		ready := apimeta.FindStatusCondition(art.Status.Conditions, ocisyncv1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil(), "Artifact %s has no Ready condition; status: %+v", name, art.Status)
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %s: %s", ready.Reason, ready.Message)
		g.Expect(art.Status.ObservedGeneration).To(Equal(art.Generation))
		g.Expect(art.Status.Digest).To(Equal(digest))
	}).WithTimeout(syncTimeout).WithPolling(250 * time.Millisecond).Should(Succeed())
	return art
}

// expectStatus checks what the status says about a synced artifact.
func expectStatus(art *ocisyncv1alpha1.Artifact, s sample, digest string, want map[string][]byte) {
	ready := apimeta.FindStatusCondition(art.Status.Conditions, ocisyncv1alpha1.ConditionReady)
	Expect(ready.Reason).To(Equal(ocisyncv1alpha1.ReasonSucceeded))
	Expect(apimeta.FindStatusCondition(art.Status.Conditions, ocisyncv1alpha1.ConditionStalled)).To(BeNil(),
		"Stalled should be absent once Ready")
	Expect(art.Status.ObservedGeneration).To(Equal(art.Generation))
	Expect(art.Status.ShortDigest).To(Equal(strings.TrimPrefix(digest, "sha256:")[:12]))
	Expect(art.Status.ResolvedReference).To(Equal(s.ref + "@" + digest))
	Expect(art.Status.Tag).To(Equal(s.ref[strings.LastIndex(s.ref, ":")+1:]))
	Expect(art.Status.LastSyncTime).NotTo(BeNil())

	var names []string
	var total int64
	for _, f := range art.Status.Files {
		names = append(names, f.Name)
		Expect(f.MediaType).To(Equal(s.mediaType), "status.files %s", f.Name)
		Expect(f.Size).To(BeEquivalentTo(len(want[f.Name])), "status.files %s", f.Name)
		Expect(f.Digest).To(MatchRegexp(`^sha256:[a-f0-9]{64}$`), "status.files %s", f.Name)
		total += f.Size
	}
	Expect(names).To(ConsistOf(slices.Collect(maps.Keys(want))), "status.files")
	Expect(art.Status.Size).To(Equal(total), "status.size")
}

// expectConfigMap waits until the output ConfigMap holds exactly want,
// byte for byte, and is marked with the Artifact and digest.
func expectConfigMap(art *ocisyncv1alpha1.Artifact, s sample, digest string, want map[string][]byte) {
	Eventually(func(g Gomega) {
		cm := &corev1.ConfigMap{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: s.configMap}, cm)).To(Succeed())
		g.Expect(cm.Annotations).To(HaveKeyWithValue(ocisyncv1alpha1.AnnotationDigest, digest))
		g.Expect(configMapFiles(g, cm)).To(Equal(want), "ConfigMap %s should hold the selected files, byte for byte", s.configMap)
		g.Expect(cm.Labels).To(HaveKeyWithValue(ocisyncv1alpha1.LabelArtifactName, art.Name))
		owner := metav1.GetControllerOf(cm)
		g.Expect(owner).NotTo(BeNil(), "ConfigMap %s should be controlled by its Artifact", s.configMap)
		g.Expect(owner.UID).To(Equal(art.UID))
	}).WithTimeout(syncTimeout).WithPolling(250 * time.Millisecond).Should(Succeed())
}

// managerEnv is this process's environment without any other way to find
// a cluster or credentials than the given kubeconfig.
func managerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "KUBECONFIG", "HOME", "TMPDIR", "DOCKER_CONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT":
			continue
		}
		env = append(env, kv)
	}
	// TMPDIR too: the manager keeps its blob cache there.
	return append(env, "HOME="+GinkgoT().TempDir(), "TMPDIR="+GinkgoT().TempDir(), "KUBECONFIG="+kubeconfig)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

var _ = Describe("the sample Artifact", Ordered, func() {
	var (
		reg          *registrytest.Registry
		oras         *registrytest.CLI
		dockerConfig string
		s            sample
		// mgr is the manager process; its stderr holds its JSON log.
		mgr *gexec.Session
		// metricsAddr is where the manager serves /metrics.
		metricsAddr string
	)

	BeforeAll(func() {
		By("starting a plain-HTTP registry that requires a password")
		reg = registrytest.Start(GinkgoT(), registrytest.Options{
			Auth:  registrytest.AuthHtpasswd,
			Users: []registrytest.User{{Name: user, Password: "e2e-" + fmt.Sprint(time.Now().UnixNano())}},
		})
		oras = registrytest.Oras(GinkgoT())
		dockerConfig = reg.WriteDockerConfig(GinkgoT(), user)
		s = loadSample(reg.Host)

		By("starting ocisync manager")
		probe := freeAddr()
		metricsAddr = freeAddr()
		cmd := exec.Command(ocisyncBin, "manager", "--health-probe-bind-address", probe, "--metrics-bind-address", metricsAddr,
			"--zap-encoder=json", "--sync-image", syncImage, "--sync-job-ttl", "20m")
		cmd.Env = managerEnv()
		var err error
		mgr, err = gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred(), "start %s manager", ocisyncBin)
		// Cleanups run last registered first: SIGTERM, then a kill in case
		// that failed, then the registry's and the control plane's.
		DeferCleanup(func() { mgr.Kill().Wait(10 * time.Second) })
		DeferCleanup(func() {
			By("stopping ocisync manager with SIGTERM")
			mgr.Terminate()
			Eventually(mgr).WithTimeout(30*time.Second).Should(gexec.Exit(0),
				"the manager should exit 0 after SIGTERM; its log is in the spec output")
			password := reg.Password(GinkgoT(), user)
			log := string(mgr.Err.Contents()) + string(mgr.Out.Contents())
			for _, secret := range []string{password, base64.StdEncoding.EncodeToString([]byte(user + ":" + password))} {
				Expect(log).NotTo(ContainSubstring(secret), "the manager logged the registry credentials")
			}
		})

		Expect(k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
	})

	first := []artifactFile{
		{"app.yaml", "", []byte("replicas: 2\nimage: example/app:1.0\n")},
		{"rules.yaml", "", []byte("- alert: HighLatency\n  expr: latency_seconds > 0.5\n")},
		// Every byte value: not UTF-8, so it cannot travel as text.
		{"payload.bin", "", func() []byte {
			b := make([]byte, 256)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}()},
		// Another media type: the sample's selector leaves it out.
		{"README.md", "text/markdown", []byte("# not published\n")},
	}
	// The second push: app.yaml changes, rules.yaml goes, extra.yaml
	// comes.
	second := []artifactFile{
		{"app.yaml", "", []byte("replicas: 3\nimage: example/app:1.1\n")},
		first[2],
		{"extra.yaml", "", []byte("feature: on\n")},
		first[3],
	}
	// withMediaType gives the files without one the sample's media type.
	withMediaType := func(files []artifactFile) []artifactFile {
		out := slices.Clone(files)
		for i := range out {
			if out[i].mediaType == "" {
				out[i].mediaType = s.mediaType
			}
		}
		return out
	}
	var firstDigest string

	It("reports CredentialsNotFound while its pull secret is missing", func() {
		firstDigest = pushFiles(oras, reg, dockerConfig, s.ref, withMediaType(first))
		Expect(k8s.Create(context.Background(), s.obj)).To(Succeed(), "create the sample Artifact")
		Eventually(func(g Gomega) {
			art := &ocisyncv1alpha1.Artifact{}
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(s.obj), art)).To(Succeed())
			ready := apimeta.FindStatusCondition(art.Status.Conditions, ocisyncv1alpha1.ConditionReady)
			g.Expect(ready).NotTo(BeNil(), "Artifact has no Ready condition; status: %+v", art.Status)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(ocisyncv1alpha1.ReasonCredentialsNotFound), "Ready message: %s", ready.Message)
			g.Expect(ready.Message).To(ContainSubstring(s.pullSecret), "the message should name the missing Secret")
		}).WithTimeout(syncTimeout).WithPolling(250 * time.Millisecond).Should(Succeed())
	})

	It("becomes Ready with the pushed files once the pull secret exists", func() {
		cfg, err := os.ReadFile(dockerConfig)
		Expect(err).NotTo(HaveOccurred())
		// What `kubectl create secret docker-registry` makes.
		Expect(k8s.Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: s.pullSecret},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: cfg},
		})).To(Succeed())

		art := waitSynced(s.obj.GetName(), firstDigest)
		want := selected(withMediaType(first), s.mediaType)
		expectStatus(art, s, firstDigest, want)
		expectConfigMap(art, s, firstDigest, want)
	})

	It("follows a new push to the same tag", func() {
		digest := pushFiles(oras, reg, dockerConfig, s.ref, withMediaType(second))
		Expect(digest).NotTo(Equal(firstDigest))

		art := waitSynced(s.obj.GetName(), digest)
		want := selected(withMediaType(second), s.mediaType)
		expectStatus(art, s, digest, want)
		expectConfigMap(art, s, digest, want)
		firstDigest = digest
	})

	It("syncs into a claim through a Job that runs the --sync-image with the pull secret mounted", func() {
		ctx := context.Background()
		Expect(k8s.Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "files"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		})).To(Succeed())
		art := &ocisyncv1alpha1.Artifact{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "files"},
			Spec: ocisyncv1alpha1.ArtifactSpec{
				Reference:   s.ref,
				PlainHTTP:   true,
				PullSecrets: []corev1.LocalObjectReference{{Name: s.pullSecret}},
				Volume:      &ocisyncv1alpha1.VolumeOutput{ClaimName: "files"},
			},
		}
		Expect(k8s.Create(ctx, art)).To(Succeed())
		var job batchv1.Job
		Eventually(func(g Gomega) {
			var jobs batchv1.JobList
			g.Expect(k8s.List(ctx, &jobs, client.InNamespace(namespace), client.MatchingLabels{ocisyncv1alpha1.LabelArtifactName: art.Name})).To(Succeed())
			g.Expect(jobs.Items).To(HaveLen(1))
			job = jobs.Items[0]
		}).WithTimeout(syncTimeout).WithPolling(250 * time.Millisecond).Should(Succeed())
		c := job.Spec.Template.Spec.Containers[0]
		Expect(c.Image).To(Equal(syncImage))
		Expect(job.Spec.TTLSecondsAfterFinished).To(HaveValue(BeEquivalentTo(20 * 60)))
		Expect(c.Args).To(ContainElement(HaveSuffix("@" + firstDigest)))
		Expect(c.Args).To(ContainElement("--docker-config=/var/run/ocisync/pull-secrets/0/config.json"))
		Expect(job.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("VolumeSource.Secret.SecretName", s.pullSecret)))
	})
	It("serves Prometheus metrics about its syncs, its registry requests and its Artifacts", func() {
		families := scrape(metricsAddr)
		value := func(name string, labels ...string) float64 {
			GinkgoHelper()
			m := findMetric(families, name, labels...)
			Expect(m).NotTo(BeNil(), "%s%v is missing from /metrics", name, labels)
			return metricValue(m)
		}
		Expect(value("ocisync_artifact_syncs_total", "result", "published", "reason", "Succeeded")).To(BeNumerically(">=", 2),
			"the first sync and the one after the new push published")
		Expect(value("ocisync_artifact_syncs_total", "result", "failed", "reason", "CredentialsNotFound")).To(BeNumerically(">=", 1),
			"the syncs without the pull secret failed")
		Expect(value("ocisync_artifact_syncs_total", "result", "pending", "reason", "Progressing")).To(BeNumerically(">=", 1),
			"the volume's sync Job never runs here")
		published := findMetric(families, "ocisync_artifact_sync_duration_seconds", "result", "published")
		Expect(published).NotTo(BeNil())
		Expect(published.GetHistogram().GetSampleCount()).To(BeNumerically(">=", 2), "published syncs in the duration histogram")
		Expect(published.GetHistogram().GetSampleSum()).To(BeNumerically(">", 0))

		var want int64
		for _, files := range [][]artifactFile{withMediaType(first), withMediaType(second)} {
			for _, data := range selected(files, s.mediaType) {
				want += int64(len(data))
			}
		}
		Expect(value("ocisync_pulled_bytes_total", "output", "configmap")).To(BeNumerically(">=", want),
			"the bytes of the files of both pushes were downloaded")
		Expect(value("ocisync_registry_requests_total", "method", "GET", "code", "200")).To(BeNumerically(">=", 1))
		// A first sync asks with a GET, later ones with a HEAD: a 401 to
		// either shows the challenge.
		challenged := 0.0
		for _, method := range []string{"GET", "HEAD"} {
			if m := findMetric(families, "ocisync_registry_requests_total", "method", method, "code", "401"); m != nil {
				challenged += metricValue(m)
			}
		}
		Expect(challenged).To(BeNumerically(">=", 1), "the registry asked for credentials")
		Expect(findMetric(families, "controller_runtime_reconcile_total", "controller", "artifact", "result", "success")).NotTo(BeNil(),
			"controller-runtime's own metrics are served too")

		// Read again until the manager's cache and the API server agree.
		Eventually(func(g Gomega) {
			var list ocisyncv1alpha1.ArtifactList
			g.Expect(k8s.List(context.Background(), &list)).To(Succeed())
			want := map[string]float64{"True": 0, "False": 0, "Unknown": 0}
			for _, a := range list.Items {
				status := "Unknown"
				if c := apimeta.FindStatusCondition(a.Status.Conditions, ocisyncv1alpha1.ConditionReady); c != nil {
					status = string(c.Status)
				}
				want[status]++
			}
			g.Expect(want).To(HaveKeyWithValue("True", BeNumerically(">=", 1)), "the sample is Ready")
			families := scrape(metricsAddr)
			got := map[string]float64{}
			for status := range want {
				if m := findMetric(families, "ocisync_artifacts", "ready", status); m != nil {
					got[status] = metricValue(m)
				}
			}
			g.Expect(got).To(Equal(want), "ocisync_artifacts by Ready status")
		}).WithTimeout(syncTimeout).WithPolling(250 * time.Millisecond).Should(Succeed())
	})

	It("syncs again at once when reconcile.ocisync.io/requestedAt changes", func() {
		// What `kubectl annotate artifact NAME --overwrite
		// reconcile.ocisync.io/requestedAt="$(date +%s)"` sends.
		requested := fmt.Sprint(time.Now().Unix())
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, ocisyncv1alpha1.AnnotationReconcileRequestedAt, requested)
		Expect(k8s.Patch(context.Background(), s.obj.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
		Eventually(func(g Gomega) {
			art := &ocisyncv1alpha1.Artifact{}
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(s.obj), art)).To(Succeed())
			g.Expect(art.Status.LastHandledReconcileAt).To(Equal(requested))
		}).WithTimeout(syncTimeout).WithPolling(250 * time.Millisecond).Should(Succeed())
		Eventually(func() []map[string]any { return syncLines(mgr, s.obj.GetNamespace()+"/"+s.obj.GetName()) }).
			WithTimeout(syncTimeout).WithPolling(250*time.Millisecond).
			Should(ContainElement(And(
				HaveKeyWithValue("requestedAt", requested),
				HaveKeyWithValue("result", "published"),
				HaveKeyWithValue("digest", firstDigest),
			)), "the forced sync downloads and writes the ConfigMap again")
		waitSynced(s.obj.GetName(), firstDigest)
	})

	It("logs JSON, one line per sync with the artifact, result, digest, bytes and duration", func() {
		lines := bytes.Split(bytes.TrimSpace(mgr.Err.Contents()), []byte("\n"))
		Expect(lines).NotTo(BeEmpty())
		for _, l := range lines {
			var obj map[string]any
			Expect(json.Unmarshal(l, &obj)).To(Succeed(), "with --zap-encoder=json every line of stderr is a JSON object: %s", l)
		}

		syncs := syncLines(mgr, s.obj.GetNamespace()+"/"+s.obj.GetName())
		for _, l := range syncs {
			Expect(l).To(And(
				HaveKeyWithValue("level", "info"),
				HaveKey("ts"),
				HaveKeyWithValue("result", BeElementOf("published", "unchanged", "failed")),
				HaveKeyWithValue("reason", Not(BeEmpty())),
				HaveKeyWithValue("bytes", BeNumerically(">=", 0)),
				HaveKeyWithValue("duration", BeNumerically(">", 0)),
			), "sync line %v", l)
		}
		Expect(syncs).To(ContainElement(And(
			HaveKeyWithValue("result", "failed"),
			HaveKeyWithValue("reason", ocisyncv1alpha1.ReasonCredentialsNotFound),
			HaveKeyWithValue("error", ContainSubstring(s.pullSecret)),
		)), "a failed sync says why")
		var want float64
		for _, data := range selected(withMediaType(second), s.mediaType) {
			want += float64(len(data))
		}
		Expect(syncs).To(ContainElement(And(
			HaveKeyWithValue("result", "published"),
			HaveKeyWithValue("reason", ocisyncv1alpha1.ReasonSucceeded),
			HaveKeyWithValue("digest", firstDigest),
			HaveKeyWithValue("bytes", want),
		)), "the sync of the new push, with the bytes it downloaded")
		// The credentials are checked for in the whole log when the
		// manager stops.
	})
})

// syncLines returns the manager's JSON log lines about the syncs of
// artifact (namespace/name).
func syncLines(mgr *gexec.Session, artifact string) []map[string]any {
	var out []map[string]any
	for _, l := range bytes.Split(mgr.Err.Contents(), []byte("\n")) {
		var obj map[string]any
		if json.Unmarshal(l, &obj) == nil && obj["msg"] == "sync" && obj["artifact"] == artifact {
			out = append(out, obj)
		}
	}
	return out
}

// scrape reads the manager's metrics endpoint as Prometheus would.
func scrape(addr string) map[string]*dto.MetricFamily {
	GinkgoHelper()
	resp, err := http.Get("http://" + addr + "/metrics")
	Expect(err).NotTo(HaveOccurred(), "scrape the manager's metrics")
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusOK), "GET /metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	Expect(err).NotTo(HaveOccurred(), "parse /metrics in the Prometheus text format")
	return families
}

// findMetric returns the metric of family name with exactly the labels
// (name, value, ...), or nil.
func findMetric(families map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	f, ok := families[name]
	if !ok {
		return nil
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if maps.Equal(got, want) {
			return m
		}
	}
	return nil
}

// metricValue is a counter's or a gauge's value.
func metricValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}
