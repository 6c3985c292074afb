package manager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/reference"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// hangingProxy forwards to a registry and, while hanging, holds blob
// downloads until released, so a sync can be caught in the middle.
type hangingProxy struct {
	mu      sync.Mutex
	release chan struct{} // nil while not hanging
	caught  chan struct{} // closed when a download is held
}

func (h *hangingProxy) hang() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.release, h.caught = make(chan struct{}), make(chan struct{})
}

func (h *hangingProxy) letGo() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.release != nil {
		close(h.release)
		h.release = nil
	}
}

func startHangingProxy(target string) (*hangingProxy, string) {
	u, err := url.Parse(target)
	Expect(err).NotTo(HaveOccurred())
	h := &hangingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		release, caught := h.release, h.caught
		h.mu.Unlock()
		if release != nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			select {
			case <-caught:
			default:
				close(caught)
			}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	DeferCleanup(func() {
		h.letGo()
		srv.CloseClientConnections()
		srv.Close()
	})
	return h, strings.TrimPrefix(srv.URL, "http://")
}

var _ = Describe("a manager killed in the middle of a sync", func() {
	It("leaves the published ConfigMap whole and finishes the sync once restarted", func() {
		ctx := context.Background()
		reg := registrytest.Start(GinkgoT(), registrytest.Options{Auth: registrytest.AuthNone})
		proxy, host := startHangingProxy(reg.URL)

		c := newClient()

		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crash-"}}
		Expect(c.Create(ctx, nsObj)).To(Succeed())
		ns := nsObj.Name

		pusher, err := oci.NewClient(oci.Options{PlainHTTP: true})
		Expect(err).NotTo(HaveOccurred())
		ref, err := reference.Parse(reg.Host + "/crash/app")
		Expect(err).NotTo(HaveOccurred())
		repo := pusher.Repository(ref)
		push := func(text string) digest.Digest {
			GinkgoHelper()
			data := []byte(text)
			l := ocispec.Descriptor{MediaType: "text/plain", Digest: digest.FromBytes(data), Size: int64(len(data)),
				Annotations: map[string]string{ocispec.AnnotationTitle: "a.txt"}}
			empty := ocispec.DescriptorEmptyJSON
			empty.Data = nil
			Expect(repo.PushBlob(ctx, empty, bytes.NewReader([]byte("{}")))).To(Succeed())
			Expect(repo.PushBlob(ctx, l, bytes.NewReader(data))).To(Succeed())
			m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
				ArtifactType: "application/vnd.ocisync.test", Config: empty, Layers: []ocispec.Descriptor{l}})
			Expect(err).NotTo(HaveOccurred())
			desc, err := repo.PushManifest(ctx, "v1", ocispec.MediaTypeImageManifest, m)
			Expect(err).NotTo(HaveOccurred())
			return desc.Digest
		}
		expectSynced := func(d digest.Digest, text string) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				a := &v1alpha1.Artifact{}
				g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "app"}, a)).To(Succeed())
				g.Expect(meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "Ready; status %+v", a.Status)
				g.Expect(a.Status.Digest).To(Equal(d.String()))
				expectWhole(g, c, ns, d, text)
			}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
		}

		d1 := push("one\n")
		art := &v1alpha1.Artifact{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
			Spec: v1alpha1.ArtifactSpec{
				Reference: host + "/crash/app:v1",
				PlainHTTP: true,
				Interval:  metav1.Duration{Duration: time.Second},
				ConfigMap: &v1alpha1.ConfigMapOutput{Name: "app"},
			},
		}
		Expect(c.Create(ctx, art)).To(Succeed())
		// Managers of later specs must not find it polling a closed proxy.
		DeferCleanup(func() { Expect(client.IgnoreNotFound(c.Delete(ctx, art))).To(Succeed()) })
		probe := freeAddr()
		first := startManager("--health-probe-bind-address", probe, "--metrics-bind-address", "0")
		expectReady(first, probe)
		expectSynced(d1, "one\n")

		By("killing the manager while it downloads a new version")
		proxy.hang()
		d2 := push("two\n")
		Eventually(proxy.caught).WithTimeout(30*time.Second).Should(BeClosed(), "the manager should start downloading the new version")
		first.Kill()
		Eventually(first).WithTimeout(10 * time.Second).Should(gexec.Exit())
		Consistently(func(g Gomega) { expectWhole(g, c, ns, d1, "one\n") }).WithTimeout(time.Second).Should(Succeed(),
			"the ConfigMap still holds the last good version, whole")

		By("starting it again")
		proxy.letGo()
		probe = freeAddr()
		second := startManager("--health-probe-bind-address", probe, "--metrics-bind-address", "0")
		expectReady(second, probe)
		expectSynced(d2, "two\n")
		stopManager(second)
	})
})

// expectWhole checks that ConfigMap app holds exactly the version d, text.
func expectWhole(g Gomega, c client.Client, ns string, d digest.Digest, text string) {
	cm := &corev1.ConfigMap{}
	g.Expect(c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "app"}, cm)).To(Succeed())
	g.Expect(cm.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationDigest, d.String()))
	g.Expect(cm.Data).To(Equal(map[string]string{"a.txt": text}))
	g.Expect(cm.BinaryData).To(BeEmpty())
}
