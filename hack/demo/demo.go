package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

const (
	// fieldOwner is the server-side apply field manager of what the demo
	// applies.
	fieldOwner = "ocisync-demo"
	// registryUser is the registry account the demo pushes and pulls as.
	registryUser = "demo"
	// stopTimeout bounds how long the manager has to exit after SIGTERM.
	stopTimeout = 30 * time.Second
	// startTimeout bounds how long the manager has to answer /readyz.
	startTimeout = time.Minute
	// poll is how often the demo looks at the Artifacts.
	poll = 250 * time.Millisecond
)

// binaries are the programs the demo runs, from `make test-env`.
type binaries struct {
	assets   string // KUBEBUILDER_ASSETS: etcd and kube-apiserver
	registry string
	ocisync  string
}

// demo is one run. It also serves as the registrytest.T of the registry
// harness: its cleanups join the demo's, and its temp dirs live in dir.
type demo struct {
	out  io.Writer
	opts options

	dir      string // everything the demo writes lives here
	cleanups []cleanup
	tempDirs int
	ready    bool

	bins      binaries
	crds      []*unstructured.Unstructured
	samples   []*unstructured.Unstructured
	artifacts []client.ObjectKey

	cfg        *rest.Config
	k8s        client.Client
	kubeconfig string

	reg          *registrytest.Registry
	dockerConfig string
	files        []string // the pushed files, PATH:MEDIATYPE, absolute
	ref          string   // where they are pushed

	managerLog  string
	managerDone chan struct{}
	metricsAddr string

	kubectl string // kubectl's path, or empty to print through the API
}

type cleanup struct {
	what string
	do   func() error
}

// onExit registers f to run, last registered first, when the demo stops.
func (d *demo) onExit(what string, f func() error) {
	d.cleanups = append(d.cleanups, cleanup{what, f})
}

// cleanup stops everything the demo started and removes its folder.
func (d *demo) cleanup() error {
	if d.dir == "" {
		return nil
	}
	fmt.Fprintf(d.out, "==> Stopping everything and removing %s\n", d.dir)
	var errs []error
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		c := d.cleanups[i]
		if err := d.harness(c.do); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.what, err))
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", d.dir, err))
	}
	if len(errs) == 0 {
		fmt.Fprintln(d.out, "Stopped.")
	}
	return errors.Join(errs...)
}

// The registrytest.T methods.

func (d *demo) Helper() {}

func (d *demo) Cleanup(f func()) {
	d.onExit("the registry harness's cleanup", func() error { f(); return nil })
}

func (d *demo) TempDir() string {
	d.tempDirs++
	dir := filepath.Join(d.dir, fmt.Sprintf("registry-%d", d.tempDirs))
	if err := os.Mkdir(dir, 0o700); err != nil {
		d.Fatalf("creating %s: %v", dir, err)
	}
	return dir
}

// harnessFailure carries a Fatalf of the registry harness up to harness.
type harnessFailure string

func (d *demo) Fatalf(format string, args ...any) {
	panic(harnessFailure(fmt.Sprintf(format, args...)))
}

func (d *demo) Logf(format string, args ...any) {
	fmt.Fprintf(d.out, "    "+format+"\n", args...)
}

// harness runs f, turning a Fatalf of the registry harness into an error.
func (d *demo) harness(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, ok := r.(harnessFailure)
			if !ok {
				panic(r)
			}
			err = errors.New(string(msg))
		}
	}()
	return f()
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "==> "+format+"\n", args...)
}

func (d *demo) info(format string, args ...any) {
	fmt.Fprintf(d.out, "    "+format+"\n", args...)
}

// run brings everything up, shows the result and, unless
// --exit-when-ready, follows the Artifacts until ctx ends.
func (d *demo) run(ctx context.Context) error {
	// envtest logs through controller-runtime; the demo says what matters.
	ctrllog.SetLogger(logr.Discard())

	var err error
	if d.bins, err = findBinaries(); err != nil {
		return err
	}
	if d.crds, err = readKustomization(filepath.Join(d.opts.configDir, "crd")); err != nil {
		return err
	}
	if d.samples, err = readKustomization(filepath.Join(d.opts.configDir, "samples")); err != nil {
		return err
	}
	if d.kubectl, err = exec.LookPath(d.opts.kubectl); d.opts.kubectl == "" || err != nil {
		d.kubectl = ""
	}

	if d.dir, err = os.MkdirTemp("", "ocisync-demo-"); err != nil {
		return fmt.Errorf("creating a temporary folder: %w", err)
	}
	fmt.Fprintf(d.out, "ocisync demo: everything runs on this machine, in %s, until Ctrl-C.\n", d.dir)
	for _, sub := range []string{"etcd", "apiserver", "home", "tmp", "content"} {
		if err := os.Mkdir(filepath.Join(d.dir, sub), 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", sub, err)
		}
	}

	steps := []func(context.Context) error{
		d.startControlPlane,
		d.startRegistry,
		d.publish,
		d.startManager,
		d.applySamples,
		d.waitReady,
		d.show,
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := d.harness(func() error { return s(ctx) }); err != nil {
			return err
		}
	}
	d.ready = true
	if d.opts.exitWhenReady {
		fmt.Fprintln(d.out, readyLine)
		return nil
	}
	d.printTry(ctx)
	fmt.Fprintf(d.out, "%s Press Ctrl-C to stop everything and remove %s.\n", readyLine, d.dir)
	return d.follow(ctx)
}

// findBinaries reads the binaries' paths from the environment `make
// test-env` prints.
func findBinaries() (binaries, error) {
	var b binaries
	var err error
	if b.assets, err = fromEnv("KUBEBUILDER_ASSETS", true); err != nil {
		return b, err
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if err := executable(filepath.Join(b.assets, name)); err != nil {
			return b, fmt.Errorf("KUBEBUILDER_ASSETS=%s has no %s (%v): run make demo, which builds it", b.assets, name, err)
		}
	}
	if b.registry, err = fromEnv(registrytest.EnvRegistry, false); err != nil {
		return b, err
	}
	if b.ocisync, err = fromEnv(registrytest.EnvOcisync, false); err != nil {
		return b, err
	}
	return b, nil
}

// fromEnv returns the absolute path held in the environment variable name:
// a folder when dir is set, else an executable.
func fromEnv(name string, dir bool) (string, error) {
	p := os.Getenv(name)
	if p == "" {
		return "", fmt.Errorf("%s is not set: run make demo, which builds the tools and sets it", name)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%s=%s is not an absolute path: run make demo, which sets it", name, p)
	}
	if dir {
		return p, nil
	}
	if err := executable(p); err != nil {
		return "", fmt.Errorf("%s=%s: %v: run make demo, which builds it", name, p, err)
	}
	return p, nil
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// startControlPlane starts etcd and kube-apiserver with the CRDs of
// config/crd installed, and writes a kubeconfig for an admin.
func (d *demo) startControlPlane(context.Context) error {
	d.step("Starting etcd and kube-apiserver with the CRDs of %s", filepath.Join(d.opts.configDir, "crd"))
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, u := range d.crds {
		if u.GetKind() != "CustomResourceDefinition" {
			return fmt.Errorf("%s lists a %s %s: the demo installs only CustomResourceDefinitions from it", filepath.Join(d.opts.configDir, "crd"), u.GetKind(), u.GetName())
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, crd); err != nil {
			return fmt.Errorf("decoding the CustomResourceDefinition %s: %w", u.GetName(), err)
		}
		crds = append(crds, crd)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: d.bins.assets,
		CRDs:                  crds,
		// Never the cluster of the user's kubeconfig.
		UseExistingCluster: ptr.To(false),
		ControlPlane: envtest.ControlPlane{
			Etcd:      &envtest.Etcd{DataDir: filepath.Join(d.dir, "etcd")},
			APIServer: &envtest.APIServer{CertDir: filepath.Join(d.dir, "apiserver")},
		},
	}
	// Registered first, so it runs last: whatever talks to the API server
	// stops before it. Stop copes with a half-started control plane.
	d.onExit("stopping etcd and kube-apiserver", env.Stop)
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver from %s: %w", d.bins.assets, err)
	}
	d.cfg = cfg

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := ocisyncv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if d.k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return fmt.Errorf("creating a client for %s: %w", cfg.Host, err)
	}

	admin, err := env.AddUser(envtest.User{Name: "ocisync-demo", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding a cluster admin: %w", err)
	}
	data, err := admin.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing a kubeconfig: %w", err)
	}
	d.kubeconfig = filepath.Join(d.dir, "kubeconfig")
	if err := os.WriteFile(d.kubeconfig, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", d.kubeconfig, err)
	}
	d.info("API server %s, kubeconfig %s", cfg.Host, d.kubeconfig)
	return nil
}

// startRegistry starts a Distribution registry on loopback that wants a
// password, and writes a Docker config with it.
func (d *demo) startRegistry(context.Context) error {
	d.step("Starting a Distribution registry on loopback, with htpasswd authentication")
	password := make([]byte, 16)
	if _, err := rand.Read(password); err != nil {
		return fmt.Errorf("generating the registry password: %w", err)
	}
	d.reg = registrytest.Start(d, registrytest.Options{
		Auth:   registrytest.AuthHtpasswd,
		Users:  []registrytest.User{{Name: registryUser, Password: hex.EncodeToString(password)}},
		Binary: d.bins.registry,
	})
	d.dockerConfig = d.reg.WriteDockerConfig(d, registryUser)
	d.info("registry http://%s, user %q, credentials in %s", d.reg.Host, registryUser, d.dockerConfig)
	return nil
}

// sampleFiles are what the demo publishes: the files of the sample
// Artifact's comment, with the media type it selects.
var sampleFiles = []struct{ name, data string }{
	{"app.yaml", "# Published by make demo: edit me and push again.\nreplicas: 2\nimage: example/app:1.0\n"},
	{"rules.yaml", "- alert: HighLatency\n  expr: latency_seconds > 0.5\n"},
}

// publish pushes the sample files with `ocisync push` to where the first
// sample Artifact will look for them.
func (d *demo) publish(ctx context.Context) error {
	var art *unstructured.Unstructured
	for _, u := range d.samples {
		if u.GroupVersionKind() == ocisyncv1alpha1.GroupVersion.WithKind("Artifact") {
			art = u
			break
		}
	}
	if art == nil {
		return fmt.Errorf("%s has no Artifact to demonstrate", filepath.Join(d.opts.configDir, "samples"))
	}
	ref, err := d.localReference(art)
	if err != nil {
		return err
	}
	mediaType, _, _ := unstructured.NestedString(art.Object, "spec", "mediaType")
	d.step("Publishing the files of Artifact %s with ocisync push", art.GetName())
	d.ref = ref
	d.files = nil
	for _, f := range sampleFiles {
		p := filepath.Join(d.dir, "content", f.name)
		if err := os.WriteFile(p, []byte(f.data), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if mediaType != "" {
			p += ":" + mediaType
		}
		d.files = append(d.files, p)
	}
	fmt.Fprintf(d.out, "$ %s\n", shellJoin(d.pushCommand()))
	cmd := exec.CommandContext(ctx, d.bins.ocisync, d.pushCommand()[1:]...)
	cmd.Env = d.toolEnv()
	cmd.SysProcAttr = ownProcessGroup()
	out, err := cmd.CombinedOutput()
	_, _ = d.out.Write(out)
	if err != nil {
		return fmt.Errorf("ocisync push %s failed: %v", ref, err)
	}
	return nil
}

// localReference is the Artifact's spec.reference on the local registry.
func (d *demo) localReference(art *unstructured.Unstructured) (string, error) {
	ref, _, _ := unstructured.NestedString(art.Object, "spec", "reference")
	_, repo, ok := strings.Cut(ref, "/")
	if !ok || strings.Contains(repo, "@") {
		return "", fmt.Errorf("artifact/%s: spec.reference %q is not registry/repository:tag, which the demo needs to push to", art.GetName(), ref)
	}
	return d.reg.Host + "/" + repo, nil
}

// pushCommand is the ocisync push command line of the sample files, with
// the binary as the user can type it.
func (d *demo) pushCommand() []string {
	args := []string{userPath(d.bins.ocisync), "push", "--plain-http", "--docker-config", d.dockerConfig, d.ref}
	return append(args, d.files...)
}

// toolEnv is the environment of the processes the demo runs: they find the
// cluster and the registry only as the demo tells them, and write only
// into its folder.
func (d *demo) toolEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "KUBECONFIG", "HOME", "DOCKER_CONFIG", "TMPDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
			"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+filepath.Join(d.dir, "home"), "TMPDIR="+filepath.Join(d.dir, "tmp"), "KUBECONFIG="+d.kubeconfig)
}

// startManager runs `ocisync manager` against the local API server and
// waits until it answers /readyz.
func (d *demo) startManager(ctx context.Context) error {
	probe, err := freeAddr()
	if err != nil {
		return err
	}
	if d.metricsAddr, err = freeAddr(); err != nil {
		return err
	}
	args := []string{"manager", "--kubeconfig", d.kubeconfig, "--health-probe-bind-address", probe, "--metrics-bind-address", d.metricsAddr}
	d.managerLog = filepath.Join(d.dir, "manager.log")
	d.step("Starting the manager: %s", shellJoin(append([]string{userPath(d.bins.ocisync)}, args...)))
	d.info("its log: %s", d.managerLog)
	logf, err := os.Create(d.managerLog)
	if err != nil {
		return fmt.Errorf("creating %s: %w", d.managerLog, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(d.bins.ocisync, args...)
	cmd.Env = d.toolEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C in the terminal reaches only the
	// demo, which stops the manager before the API server.
	cmd.SysProcAttr = ownProcessGroup()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s manager: %w", d.bins.ocisync, err)
	}
	d.managerDone = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(d.managerDone)
	}()
	d.onExit("stopping the manager", func() error {
		select {
		case <-d.managerDone:
			return nil
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.managerDone:
			return nil
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-d.managerDone
			return fmt.Errorf("the manager did not exit within %s of SIGTERM and was killed", stopTimeout)
		}
	})

	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+probe+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the manager did not answer http://%s/readyz within %s%s", probe, startTimeout, d.managerLogTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.managerDone:
			return fmt.Errorf("the manager exited before it was ready%s", d.managerLogTail())
		case <-time.After(poll):
		}
	}
}

// managerLogTail returns the end of the manager's log, to add to an error:
// the log goes away with the demo's folder.
func (d *demo) managerLogTail() string {
	b, err := os.ReadFile(d.managerLog)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "; the end of the manager's log:\n" + strings.Join(lines, "\n")
}

func freeAddr() (string, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// applySamples applies config/samples, as `kubectl apply -k` would, with
// each Artifact pointed at the local registry, and creates the pull
// Secrets they name with the registry's credentials.
func (d *demo) applySamples(ctx context.Context) error {
	d.step("Applying %s, each Artifact pointed at %s", filepath.Join(d.opts.configDir, "samples"), d.reg.Host)
	dockerConfig, err := os.ReadFile(d.dockerConfig)
	if err != nil {
		return fmt.Errorf("reading %s: %w", d.dockerConfig, err)
	}
	for _, sample := range d.samples {
		u := sample.DeepCopy()
		namespaced, err := d.k8s.IsObjectNamespaced(u)
		if err != nil {
			return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
		}
		if namespaced && u.GetNamespace() == "" {
			u.SetNamespace(metav1.NamespaceDefault)
		}
		if u.GroupVersionKind() == ocisyncv1alpha1.GroupVersion.WithKind("Artifact") {
			if err := d.localize(ctx, u, dockerConfig); err != nil {
				return err
			}
			d.artifacts = append(d.artifacts, client.ObjectKeyFromObject(u))
		}
		if err := d.k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		d.info("%s/%s applied", strings.ToLower(u.GetKind()), u.GetName())
	}
	return nil
}

// localize points the Artifact u at the local registry and creates the
// pull Secrets it names.
func (d *demo) localize(ctx context.Context, u *unstructured.Unstructured, dockerConfig []byte) error {
	ref, err := d.localReference(u)
	if err != nil {
		return err
	}
	interval := d.opts.interval.String()
	for _, f := range []struct {
		value any
		path  []string
	}{
		{ref, []string{"spec", "reference"}},
		{true, []string{"spec", "plainHTTP"}},
		{interval, []string{"spec", "interval"}},
	} {
		if err := unstructured.SetNestedField(u.Object, f.value, f.path...); err != nil {
			return fmt.Errorf("artifact/%s: setting %s: %w", u.GetName(), strings.Join(f.path, "."), err)
		}
	}
	d.info("artifact/%s: spec.reference %s, spec.plainHTTP true, spec.interval %s", u.GetName(), ref, interval)

	secrets, _, err := unstructured.NestedSlice(u.Object, "spec", "pullSecrets")
	if err != nil {
		return fmt.Errorf("artifact/%s: spec.pullSecrets: %w", u.GetName(), err)
	}
	for _, s := range secrets {
		name, _ := s.(map[string]any)["name"].(string)
		if name == "" {
			continue
		}
		// What `kubectl create secret docker-registry` makes.
		secret := &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Namespace: u.GetNamespace(), Name: name},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: dockerConfig},
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(secret)
		if err != nil {
			return err
		}
		if err := d.k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: obj}),
			client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("creating the pull Secret %s/%s: %w", u.GetNamespace(), name, err)
		}
		d.info("secret/%s created with the registry credentials", name)
	}
	return nil
}

// userPath is p relative to the working directory when it lies under it,
// the way a user in the repository types bin/ocisync.
func userPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	rel, err := filepath.Rel(wd, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return p
	}
	if !strings.Contains(rel, string(filepath.Separator)) {
		return "." + string(filepath.Separator) + rel
	}
	return rel
}

func mustGetwd() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	return wd
}

// ownProcessGroup puts a child in a process group of its own, as envtest
// does for etcd and kube-apiserver: a Ctrl-C in the terminal then reaches
// only the demo, which stops its children in order. (envtest builds only
// where there are process groups, and so does the demo.)
func ownProcessGroup() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
