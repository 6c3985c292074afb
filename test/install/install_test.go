// Package install tests what a platform team installs: the bundle `make
// build-installer` writes (dist/install.yaml, from config/default) applied
// with kubectl to a real API server, the manager running with nothing but
// the bundle's RBAC, and the image the Dockerfile builds. It needs the
// binaries `make test-tools build` builds (see test/registry) and kubectl.
package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/test/controlplane"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// image is what the bundle is built with; nothing pulls it.
const image = "registry.example.com/ocisync:install-test"

// waitTimeout bounds each wait on the API server or the manager.
const waitTimeout = 60 * time.Second

// TestInstallBundle builds the bundle, checks what it holds, applies it
// the way the README says (kubectl apply -f dist/install.yaml) and runs the
// manager under the bundle's ServiceAccount.
func TestInstallBundle(t *testing.T) {
	ocisyncBin := registrytest.BinaryFromEnv(t, registrytest.EnvOcisync)
	path := buildInstaller(t, image)
	objs := decodeObjects(t, path)
	b := checkBundle(t, objs)
	b.path = path

	cp := controlplane.Start(t)
	k8s := newClient(t, cp)
	admin := cp.WriteKubeconfig(t, "install-admin")

	apply := exec.Command(kubectl(t), "--kubeconfig", admin, "apply", "-f", b.path)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -f install.yaml: %v\n%s", err, out)
	}
	ctx := context.Background()
	for _, o := range objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
			t.Fatalf("after kubectl apply, %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		// The CRD is there before (the control plane installs it), so
		// check that the apply reached each object.
		if _, ok := got.GetAnnotations()[corev1.LastAppliedConfigAnnotation]; !ok {
			t.Fatalf("%s %s was not applied by kubectl apply", o.GetKind(), o.GetName())
		}
	}

	t.Run("the manager Pod meets the restricted Pod Security profile", func(t *testing.T) {
		expectRestricted(t, k8s, b.deployment.Spec.Template)
	})
	t.Run("the manager does its work with the bundle's RBAC", func(t *testing.T) {
		runWithBundleRBAC(t, cp, k8s, admin, ocisyncBin, b, "install-test")
	})
}

// bundle is what the tests need to know of the install bundle.
type bundle struct {
	path           string
	namespace      string
	serviceAccount string
	deployment     *appsv1.Deployment
	manager        *corev1.Container
}

// checkBundle checks the objects of the bundle and how they refer to each
// other.
func checkBundle(t *testing.T, objs []*unstructured.Unstructured) bundle {
	t.Helper()
	b := bundle{namespace: only(t, objs, "Namespace").GetName()}
	if b.namespace != "ocisync-system" {
		t.Errorf("the bundle's namespace is %q; the README and the tests say ocisync-system", b.namespace)
	}
	crd := only(t, objs, "CustomResourceDefinition")
	if crd.GetName() != "artifacts.ocisync.io" {
		t.Errorf("the bundle's CRD is %s, want artifacts.ocisync.io", crd.GetName())
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding":
			if o.GetNamespace() != "" {
				t.Errorf("cluster-scoped %s %s has namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
			}
		default:
			if o.GetNamespace() != b.namespace {
				t.Errorf("%s %s is in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), b.namespace)
			}
		}
	}

	b.serviceAccount = only(t, objs, "ServiceAccount").GetName()
	clusterRole := only(t, objs, "ClusterRole").GetName()
	role := only(t, objs, "Role").GetName()
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		binding := typed[rbacv1.ClusterRoleBinding](t, only(t, objs, kind)) // the same fields
		want := map[string]string{"ClusterRoleBinding": clusterRole, "RoleBinding": role}[kind]
		wantKind := strings.TrimSuffix(kind, "Binding")
		if binding.RoleRef.Name != want || binding.RoleRef.Kind != wantKind {
			t.Errorf("%s %s binds %s %s, want %s %s", kind, binding.Name, binding.RoleRef.Kind, binding.RoleRef.Name, wantKind, want)
		}
		if !slices.Contains(binding.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: b.serviceAccount, Namespace: b.namespace}) {
			t.Errorf("%s %s does not bind ServiceAccount %s/%s: %+v", kind, binding.Name, b.namespace, b.serviceAccount, binding.Subjects)
		}
	}

	d := deploymentOf(t, objs)
	b.deployment = d
	b.manager = managerContainer(t, d)
	c := b.manager
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != b.serviceAccount {
		t.Errorf("the Deployment runs as ServiceAccount %q, the bundle's is %q", spec.ServiceAccountName, b.serviceAccount)
	}
	if c.Image != image {
		t.Errorf("the manager's image is %q, want %q (make build-installer IMG=...)", c.Image, image)
	}
	argv := managerArgv(c)
	if len(argv) < 2 || argv[1] != "manager" {
		t.Errorf("the container runs %v; want the ocisync binary with the manager command", argv)
	}
	if v, ok := flagValue(argv, "leader-elect"); !ok || v != "true" {
		t.Errorf("the manager runs without --leader-elect: %v", argv)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		if !hasReq || !hasLim || req.Cmp(lim) > 0 {
			t.Errorf("the manager's %s: request %v, limit %v; want both, the request no more than the limit", r, req.String(), lim.String())
		}
	}

	// Probes reach the port the manager serves them on.
	probeAddr, _ := flagValue(argv, "health-probe-bind-address")
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("the manager has no HTTP %s probe", name)
			continue
		}
		if port := containerPort(c, p.HTTPGet.Port); port == 0 || !strings.HasSuffix(probeAddr, ":"+strconv.Itoa(int(port))) {
			t.Errorf("the %s probe goes to port %s (%d); the manager serves probes at --health-probe-bind-address=%s", name, p.HTTPGet.Port.String(), port, probeAddr)
		}
	}
	// A metrics Service, when there is one, reaches the metrics port.
	for _, o := range ofKind(objs, "Service") {
		svc := typed[corev1.Service](t, o)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s selects %v, which does not pick the manager Pod (labels %v)", svc.Name, svc.Spec.Selector, d.Spec.Template.Labels)
		}
		metricsAddr, _ := flagValue(argv, "metrics-bind-address")
		for _, p := range svc.Spec.Ports {
			if port := containerPort(c, p.TargetPort); port == 0 || !strings.HasSuffix(metricsAddr, ":"+strconv.Itoa(int(port))) {
				t.Errorf("Service %s port %s targets %s (%d); the manager serves metrics at --metrics-bind-address=%s", svc.Name, p.Name, p.TargetPort.String(), port, metricsAddr)
			}
		}
	}
	return b
}

// managerArgv is what the container runs: its command, or the image's
// entrypoint (the ocisync binary), then its arguments.
func managerArgv(c *corev1.Container) []string {
	argv := slices.Clone(c.Command)
	if len(argv) == 0 {
		argv = []string{"/ocisync"}
	}
	return append(argv, c.Args...)
}

// containerPort resolves a probe's or a Service's target port against the
// container's ports; 0 when a name matches none.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func newClient(t *testing.T, cp *controlplane.ControlPlane) client.Client {
	t.Helper()
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := ocisyncv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("creating a client for the test cluster: %v", err)
	}
	return c
}

// expectRestricted creates a Pod from template, by server-side dry run, in
// a namespace that enforces the restricted Pod Security profile: the API
// server's PodSecurity admission judges it. A copy that may run as root
// must be refused, so the check cannot pass vacuously.
func expectRestricted(t *testing.T, k8s client.Client, template corev1.PodTemplateSpec) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "restricted-", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "manager", Labels: template.Labels}, Spec: template.Spec}
	// The Pod's ServiceAccount lives in the bundle's namespace, not here.
	pod.Spec.ServiceAccountName = ""
	if err := k8s.Create(ctx, pod.DeepCopy(), client.DryRunAll); err != nil {
		t.Errorf("the manager Pod is refused where the restricted profile is enforced: %v", err)
	}
	root := pod.DeepCopy()
	root.Spec.SecurityContext.RunAsNonRoot = nil
	for i := range root.Spec.Containers {
		if sc := root.Spec.Containers[i].SecurityContext; sc != nil {
			sc.RunAsNonRoot = nil
		}
	}
	if err := k8s.Create(ctx, root, client.DryRunAll); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "restricted") {
		t.Errorf("a copy of the manager Pod that may run as root should be refused by the restricted profile, got %v", err)
	}
}

// runWithBundleRBAC runs the manager the way the Deployment does (its
// arguments and environment), as the bundle's ServiceAccount, and has it
// sync an Artifact into a ConfigMap and start a sync Job for a volume, in
// namespace ns (created unless it exists).
func runWithBundleRBAC(t *testing.T, cp *controlplane.ControlPlane, k8s client.Client, admin, bin string, b bundle, ns string) {
	ctx := context.Background()
	account := "system:serviceaccount:" + b.namespace + ":" + b.serviceAccount
	kubeconfig := impersonating(t, admin, account)

	// A Pod standing in for the manager's own, which it reads to give sync
	// Jobs its image: nothing runs it, the API server just holds it.
	self := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.namespace, Name: b.deployment.Name + "-test", Labels: b.deployment.Spec.Template.Labels},
		Spec:       *b.deployment.Spec.Template.Spec.DeepCopy(),
	}
	if err := k8s.Create(ctx, self); err != nil {
		t.Fatalf("creating the stand-in manager Pod: %v", err)
	}

	const (
		user     = "install-user"
		password = "Inst4ll-pa55-bundle"
	)
	reg := registrytest.Start(t, registrytest.Options{Auth: registrytest.AuthHtpasswd, Users: []registrytest.User{{Name: user, Password: password}}})
	dockerConfig := reg.WriteDockerConfig(t, user)
	src := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(src, []byte("replicas: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("team/app", "v1")
	push := registrytest.Ocisync(t).MustRun(t, append(append([]string{"push"}, reg.OcisyncFlags(dockerConfig)...), ref, src)...)
	digest := push.LastLine()

	cfg, err := os.ReadFile(dockerConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-credentials"},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: cfg},
		},
		&corev1.ServiceAccount{
			ObjectMeta:       metav1.ObjectMeta{Namespace: ns, Name: "puller"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry-credentials"}},
		},
		// The workload the ConfigMap's Artifact restarts (spec.rollout).
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "app"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "app"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
				},
			},
		},
		&corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "files"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		},
	} {
		if err := k8s.Create(ctx, o); err != nil {
			if _, isNamespace := o.(*corev1.Namespace); isNamespace && apierrors.IsAlreadyExists(err) {
				continue
			}
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}

	mgr := startManager(t, bin, kubeconfig, b, self)
	for _, probe := range []*corev1.Probe{b.manager.LivenessProbe, b.manager.ReadinessProbe} {
		url := "http://" + mgr.probeAddr + probe.HTTPGet.Path
		waitFor(t, "the manager answers its probe "+probe.HTTPGet.Path, waitTimeout, func() error {
			if err := mgr.exited(); err != nil {
				return fmt.Errorf("the manager exited: %w\n%s", err, mgr.log())
			}
			resp, err := http.Get(url)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", url, resp.Status)
			}
			return nil
		})
	}
	waitFor(t, "the manager holds the leader election Lease in "+b.namespace, waitTimeout, func() error {
		var leases coordinationv1.LeaseList
		if err := k8s.List(ctx, &leases, client.InNamespace(b.namespace)); err != nil {
			return err
		}
		for _, l := range leases.Items {
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				return nil
			}
		}
		return fmt.Errorf("no Lease with a holder among %d\n%s", len(leases.Items), mgr.log())
	})

	toConfigMap := &ocisyncv1alpha1.Artifact{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-config"},
		Spec: ocisyncv1alpha1.ArtifactSpec{
			Reference:   ref,
			PlainHTTP:   true,
			PullSecrets: []corev1.LocalObjectReference{{Name: "registry-credentials"}},
			ConfigMap:   &ocisyncv1alpha1.ConfigMapOutput{Name: "app-config"},
			Rollout:     &ocisyncv1alpha1.RolloutSpec{Workloads: []ocisyncv1alpha1.WorkloadRef{{Kind: "Deployment", Name: "app"}}},
		},
	}
	toVolume := &ocisyncv1alpha1.Artifact{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-files"},
		Spec: ocisyncv1alpha1.ArtifactSpec{
			Reference:          ref,
			PlainHTTP:          true,
			ServiceAccountName: "puller",
			Volume:             &ocisyncv1alpha1.VolumeOutput{ClaimName: "files"},
		},
	}
	for _, a := range []*ocisyncv1alpha1.Artifact{toConfigMap, toVolume} {
		if err := k8s.Create(ctx, a); err != nil {
			t.Fatalf("creating Artifact %s: %v", a.Name, err)
		}
	}
	waitFor(t, "Artifact app-config becomes Ready", waitTimeout, func() error {
		a := &ocisyncv1alpha1.Artifact{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(toConfigMap), a); err != nil {
			return err
		}
		ready := apimeta.FindStatusCondition(a.Status.Conditions, ocisyncv1alpha1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || a.Status.Digest != digest {
			return fmt.Errorf("status %+v\n%s", a.Status, mgr.log())
		}
		return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-config"}, &corev1.ConfigMap{})
	})
	// The Deployment of spec.rollout gets the digest, unless the bundle
	// turned rollouts off (the no-rollout component): then the Artifact
	// says so, and the manager must not have asked for workloads at all
	// (the check for "forbidden" below).
	if v, _ := flagValue(managerArgv(b.manager), "rollout"); v == "false" {
		waitFor(t, "Artifact app-config reports RolloutDisabled", waitTimeout, func() error {
			a := &ocisyncv1alpha1.Artifact{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(toConfigMap), a); err != nil {
				return err
			}
			c := apimeta.FindStatusCondition(a.Status.Conditions, ocisyncv1alpha1.ConditionRolloutTriggered)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ocisyncv1alpha1.ReasonRolloutDisabled {
				return fmt.Errorf("RolloutTriggered %+v\n%s", c, mgr.log())
			}
			return nil
		})
	} else {
		waitFor(t, "Deployment app is annotated with the digest", waitTimeout, func() error {
			d := &appsv1.Deployment{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, d); err != nil {
				return err
			}
			if got := d.Spec.Template.Annotations[ocisyncv1alpha1.AnnotationRolloutPrefix+toConfigMap.Name]; got != digest {
				return fmt.Errorf("template annotations %v\n%s", d.Spec.Template.Annotations, mgr.log())
			}
			return nil
		})
	}
	// What the README and docs tell users to run, with a user's kubectl.
	kubectlAs := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(kubectl(t), append([]string{"--kubeconfig", admin}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	kubectlAs("wait", "-n", ns, "--for=condition=Ready", "artifact/app-config", "--timeout=30s")
	table := kubectlAs("get", "artifacts", "-n", ns, "-o", "wide")
	for _, col := range []string{"READY", "DIGEST", "REFERENCE", "AGE", "STATUS", "app-config", strings.TrimPrefix(digest, "sha256:")[:12]} {
		if !strings.Contains(table, col) {
			t.Errorf("kubectl get artifacts -o wide lacks %q:\n%s", col, table)
		}
	}
	explain := kubectlAs("explain", "artifact.spec")
	for _, field := range []string{"reference", "mediaType", "semver", "pullSecrets", "configMap", "volume", "Reference names the artifact"} {
		if !strings.Contains(explain, field) {
			t.Errorf("kubectl explain artifact.spec lacks %q:\n%s", field, explain)
		}
	}

	waitFor(t, "Artifact app-files gets a sync Job with the manager's image", waitTimeout, func() error {
		var jobs batchv1.JobList
		if err := k8s.List(ctx, &jobs, client.InNamespace(ns), client.MatchingLabels{ocisyncv1alpha1.LabelArtifactName: toVolume.Name}); err != nil {
			return err
		}
		if len(jobs.Items) != 1 {
			return fmt.Errorf("%d Jobs\n%s", len(jobs.Items), mgr.log())
		}
		if img := jobs.Items[0].Spec.Template.Spec.Containers[0].Image; img != image {
			return fmt.Errorf("the sync Job runs image %q, want the manager Pod's %q", img, image)
		}
		return nil
	})

	log := mgr.stop(t)
	if i := strings.Index(strings.ToLower(log), "forbidden"); i >= 0 {
		t.Errorf("the manager was refused something its work needs; the bundle's RBAC lacks a rule (add a +kubebuilder:rbac marker and run make manifests):\n%s", log[max(0, i-500):min(len(log), i+500)])
	}
	if strings.Contains(log, password) {
		t.Errorf("the manager logged the registry password")
	}
}

// impersonating writes a copy of the admin kubeconfig that acts as user.
func impersonating(t *testing.T, admin, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(admin)
	if err != nil {
		t.Fatalf("reading %s: %v", admin, err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "kubeconfig-"+strings.ReplaceAll(user, ":", "-"))
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	return path
}

// manager is a running `ocisync manager`.
type manager struct {
	cmd       *exec.Cmd
	probeAddr string
	done      chan struct{}
	waitErr   error
	out       *syncBuffer
}

// startManager runs the binary with the Deployment's arguments, on free
// loopback ports, with leader election in the bundle's namespace (in a
// cluster it is the namespace the manager runs in), and with the
// Deployment's environment resolved for the Pod self.
func startManager(t *testing.T, bin, kubeconfig string, b bundle, self *corev1.Pod) *manager {
	t.Helper()
	m := &manager{probeAddr: freeAddr(t), done: make(chan struct{}), out: &syncBuffer{}}
	// Later flags win over the Deployment's own.
	args := managerArgv(b.manager)[1:]
	args = append(args,
		"--health-probe-bind-address="+m.probeAddr,
		"--metrics-bind-address="+freeAddr(t),
		"--leader-election-namespace="+b.namespace,
		"--kubeconfig="+kubeconfig,
	)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir()}
	for _, e := range b.manager.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"="+self.Name)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+self.Namespace)
		default:
			t.Fatalf("the manager's environment variable %s comes from %+v, which this test cannot provide; extend startManager", e.Name, e.ValueFrom)
		}
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Env = env
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
		if t.Failed() {
			t.Logf("manager log:\n%s", m.out.String())
		}
	})
	return m
}

// exited returns an error once the manager has exited.
func (m *manager) exited() error {
	select {
	case <-m.done:
		if m.waitErr == nil {
			return errors.New("exit code 0")
		}
		return m.waitErr
	default:
		return nil
	}
}

// log returns the end of the manager's output, for failure messages.
func (m *manager) log() string {
	s := m.out.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return "manager log:\n" + s
}

// stop sends SIGTERM, expects a clean exit and returns the whole log.
func (m *manager) stop(t *testing.T) string {
	t.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the manager did not stop within 30s of SIGTERM\n%s", m.log())
	}
	if m.waitErr != nil {
		t.Errorf("the manager exited with %v after SIGTERM, want 0\n%s", m.waitErr, m.log())
	}
	return m.out.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
