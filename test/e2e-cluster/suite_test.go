package e2ecluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	clustertest "github.com/ocisync/ocisync/test/cluster"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// EnvImage names the manager image's OCI layout that make image wrote.
const EnvImage = "OCISYNC_TEST_IMAGE"

// Names of the installed manager, as config/default names them.
const (
	managerNS         = "ocisync-system"
	managerDeployment = "ocisync-controller-manager"
	managerSelector   = "control-plane=controller-manager"
	metricsService    = "ocisync-controller-manager-metrics-service"
	leaseName         = "manager.ocisync.io"
)

// testtoolsImage is the consumer Pods' image (hack/clusterimages), which
// containerd pulls from the cluster registry.
const testtoolsImage = "127.0.0.1:5000/testtools:v1"

var (
	cluster *clustertest.Cluster
	// installYAML is the install bundle make build-installer wrote.
	installYAML string
	// reg is the registry Artifacts pull from: htpasswd auth, on the
	// node's address so that the manager and the sync Jobs reach it.
	reg *registrytest.Registry
	// pusher pushes to reg as a user would, with the ORAS CLI.
	pusher *registrytest.CLI
	// pushConfig is the docker config the pusher logs in with.
	pushConfig string
)

const (
	regUser     = "e2e"
	regPassword = "e2e-cluster-password"
)

var _ = BeforeSuite(func() {
	var ok bool
	cluster, ok = clustertest.FromEnv()
	Expect(ok).To(BeTrue(), "the suite runs inside the cluster's namespace (TestMain starts it)")
	layout := os.Getenv(EnvImage)
	Expect(layout).NotTo(BeEmpty(), "%s is not set: run make test, which runs make image and sets it", EnvImage)
	Expect(filepath.Join(layout, "index.json")).To(BeAnExistingFile(), "no image layout at %s: run make image", layout)

	By("pushing the manager image of make image to the cluster registry with oras")
	oras := registrytest.Oras(GinkgoT())
	tag := layoutTag(layout)
	img := "127.0.0.1:5000/ocisync:" + tag
	oras.MustRun(GinkgoT(), "cp", "--from-oci-layout", "--to-plain-http", layout+":"+tag, img)

	By("make build-installer IMG=" + img)
	installYAML = buildInstaller(img)

	By("kubectl apply -f dist/install.yaml")
	kubectl("apply", "-f", installYAML)
	kubectl("-n", managerNS, "rollout", "status", "deployment/"+managerDeployment, "--timeout=3m")

	By("starting a registry with htpasswd auth on the node's address")
	reg = registrytest.Start(GinkgoT(), registrytest.Options{
		Auth:  registrytest.AuthHtpasswd,
		Users: []registrytest.User{{Name: regUser, Password: regPassword}},
		Host:  clustertest.NodeIP,
	})
	pushConfig = reg.WriteDockerConfig(GinkgoT(), regUser)
	pusher = oras
})

var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() {
		dumpCluster()
	}
})

// dumpCluster prints what a user would look at when something is wrong.
func dumpCluster() {
	for _, args := range [][]string{
		{"get", "pods,jobs,artifacts,pvc,pv", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"-n", managerNS, "logs", "deployment/" + managerDeployment, "--tail=80"},
	} {
		out, err := kubectlErr(args...)
		GinkgoWriter.Printf("$ kubectl %s\n%s%v\n", strings.Join(args, " "), out, errOrEmpty(err))
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// layoutTag is the tag index.json names the image by.
func layoutTag(layout string) string {
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	Expect(err).NotTo(HaveOccurred())
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	Expect(json.Unmarshal(b, &idx)).To(Succeed())
	for _, m := range idx.Manifests {
		if t := m.Annotations["org.opencontainers.image.ref.name"]; t != "" {
			return t
		}
	}
	Fail("the image layout " + layout + " names no tag; run make image")
	return ""
}

// repoRoot is the repository's root folder.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// buildInstaller runs `make build-installer IMG=img
// INSTALL_COMPONENTS=components` on a copy of the Makefile, hack/ and
// config/, so that nothing is written into the repository, and returns
// the dist/install.yaml it wrote.
func buildInstaller(img string, components ...string) string {
	dir := filepath.Join(GinkgoT().TempDir(), "repo")
	for _, p := range []string{"Makefile", "hack", "config"} {
		cmd := exec.Command("cp", "-r", filepath.Join(repoRoot(), p), filepath.Join(dir, p))
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "copying %s: %s", p, out)
	}
	cmd := exec.Command("make", "-s", "build-installer", "IMG="+img, "KUBECTL="+cluster.Kubectl, "INSTALL_COMPONENTS="+strings.Join(components, " "))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "make build-installer IMG=%s: %s", img, out)
	return filepath.Join(dir, "dist", "install.yaml")
}

// kubectlErr runs the cluster's kubectl and returns its standard output,
// and an error with its standard error when it fails.
func kubectlErr(args ...string) (string, error) {
	return kubectlIn("", args...)
}

// kubectlIn runs kubectl with stdin.
func kubectlIn(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cluster.Kubectl, append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// kubectl runs kubectl and fails the spec when it fails.
func kubectl(args ...string) string {
	GinkgoHelper()
	out, err := kubectlErr(args...)
	Expect(err).NotTo(HaveOccurred())
	return out
}

// apply applies YAML manifests.
func apply(manifests string) {
	GinkgoHelper()
	_, err := kubectlIn(manifests, "apply", "-f", "-")
	Expect(err).NotTo(HaveOccurred())
}

// jsonpath reads one field of an object.
func jsonpath(ns, obj, path string) string {
	GinkgoHelper()
	return kubectl("-n", ns, "get", obj, "-o", "jsonpath={"+path+"}")
}

// digestOf finds "Digest: sha256:..." in oras push output.
func digestOf(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if d, ok := strings.CutPrefix(strings.TrimSpace(line), "Digest: "); ok {
			return d
		}
	}
	Fail("no Digest line in oras output:\n" + out)
	return ""
}

// namespace creates a namespace with labels and deletes it after the spec's
// container is done.
func namespace(name string, labels ...string) {
	GinkgoHelper()
	kubectl("create", "namespace", name)
	if len(labels) > 0 {
		kubectl(append([]string{"label", "namespace", name}, labels...)...)
	}
	// A pull Secret for the artifact registry, as a user creates one.
	kubectl("-n", name, "create", "secret", "docker-registry", "registry-creds",
		"--docker-server="+reg.Host, "--docker-username="+regUser, "--docker-password="+regPassword)
}

// waitReady waits until an Artifact is Ready and returns its digest.
func waitReady(ns, name string, timeout time.Duration) string {
	GinkgoHelper()
	_, err := kubectlErr("-n", ns, "wait", "--for=condition=Ready", "artifact/"+name, fmt.Sprintf("--timeout=%ds", int(timeout.Seconds())))
	Expect(err).NotTo(HaveOccurred(), "Artifact %s/%s did not become Ready; its status:\n%s", ns, name, kubectlOr("-n", ns, "get", "artifact", name, "-o", "yaml"))
	return jsonpath(ns, "artifact/"+name, ".status.digest")
}

// kubectlOr is kubectl's output or its error, for messages.
func kubectlOr(args ...string) string {
	out, err := kubectlErr(args...)
	if err != nil {
		return err.Error()
	}
	return out
}

// podLogs returns the logs of the Pods that match selector.
func podLogs(ns, selector string) string {
	out, _ := kubectlErr("-n", ns, "logs", "-l", selector, "--tail=-1")
	return out
}
