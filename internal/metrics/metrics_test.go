package metrics

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ocisync/ocisync/api/v1alpha1"
)

func TestInstrumentRoundTripperCountsByMethodAndCode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusOK
		switch r.URL.Path {
		case "/missing":
			code = http.StatusNotFound
		case "/busy":
			code = http.StatusServiceUnavailable
		case "/drop":
			// Closing without an answer is a transport error.
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	c := &http.Client{Transport: InstrumentRoundTripper(srv.Client().Transport)}

	tests := []struct {
		method, path, code string
	}{
		{http.MethodGet, "/", "200"},
		{http.MethodHead, "/", "200"},
		{http.MethodGet, "/missing", "404"},
		{http.MethodPut, "/busy", "503"},
		{http.MethodGet, "/drop", "error"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			counter := registryRequests.WithLabelValues(tt.method, tt.code)
			before := value(t, counter)
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if tt.code == "error" {
				if err == nil {
					resp.Body.Close()
					t.Fatal("the request succeeded; the test needs a transport error")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			if got := value(t, counter) - before; got != 1 {
				t.Errorf("ocisync_registry_requests_total{method=%q,code=%q} grew by %v, want 1", tt.method, tt.code, got)
			}
		})
	}
}

func TestInstrumentRoundTripperNilUsesDefaultTransport(t *testing.T) {
	rt := InstrumentRoundTripper(nil).(*countingTransport)
	if rt.next != http.DefaultTransport {
		t.Errorf("next = %T, want http.DefaultTransport", rt.next)
	}
}

func TestObserveSyncAndPulledBytes(t *testing.T) {
	syncsBefore := value(t, syncs.WithLabelValues(ResultFailed, v1alpha1.ReasonNotFound))
	bytesBefore := value(t, pulledBytes.WithLabelValues(OutputConfigMap))

	ObserveSync(ResultFailed, v1alpha1.ReasonNotFound, 1500*time.Millisecond)
	AddPulledBytes(OutputConfigMap, 1234)
	AddPulledBytes(OutputConfigMap, 0)

	if got := value(t, syncs.WithLabelValues(ResultFailed, v1alpha1.ReasonNotFound)) - syncsBefore; got != 1 {
		t.Errorf("syncs grew by %v, want 1", got)
	}
	if got := value(t, pulledBytes.WithLabelValues(OutputConfigMap)) - bytesBefore; got != 1234 {
		t.Errorf("pulled bytes grew by %v, want 1234", got)
	}
	// The histogram is served from controller-runtime's registry.
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() != "ocisync_artifact_sync_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == ResultFailed {
				found = m.GetHistogram().GetSampleCount() >= 1 && m.GetHistogram().GetSampleSum() >= 1.5
			}
		}
	}
	if !found {
		t.Error("ocisync_artifact_sync_duration_seconds{result=\"failed\"} has no 1.5s observation in controller-runtime's registry")
	}
}

func artifact(name string, ready *metav1.ConditionStatus) *v1alpha1.Artifact {
	a := &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	if ready != nil {
		a.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: *ready, Reason: "Test", LastTransitionTime: metav1.Now()}}
	}
	return a
}

func TestArtifactsCollector(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	status := func(s metav1.ConditionStatus) *metav1.ConditionStatus { return &s }
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		artifact("a", status(metav1.ConditionTrue)),
		artifact("b", status(metav1.ConditionTrue)),
		artifact("c", status(metav1.ConditionFalse)),
		artifact("d", status(metav1.ConditionUnknown)),
		artifact("no-condition-yet", nil),
	).Build()
	failing := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			return errors.New("the cache is broken")
		},
	}).Build()
	elected := make(chan struct{})
	close(elected)

	tests := []struct {
		name    string
		reader  client.Reader
		elected <-chan struct{}
		want    map[string]float64
	}{
		{"counts by Ready status", reader, elected, map[string]float64{"True": 2, "False": 1, "Unknown": 2}},
		{"a replica that does not lead reports nothing", reader, make(chan struct{}), map[string]float64{}},
		{"a failed List leaves the metric out", failing, elected, map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ReportArtifacts(tt.reader, tt.elected)
			t.Cleanup(func() { artifacts.source.Store(nil) })
			if got := collectArtifacts(t); !maps.Equal(got, tt.want) {
				t.Errorf("ocisync_artifacts = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("nothing before ReportArtifacts", func(t *testing.T) {
		artifacts.source.Store(nil)
		if got := collectArtifacts(t); len(got) != 0 {
			t.Errorf("ocisync_artifacts = %v, want nothing", got)
		}
	})
}

// collectArtifacts gathers ocisync_artifacts from controller-runtime's
// registry, by the value of its ready label.
func collectArtifacts(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering the metrics: %v", err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "ocisync_artifacts" {
			continue
		}
		if f.GetType() != dto.MetricType_GAUGE {
			t.Errorf("ocisync_artifacts is a %v, want a gauge", f.GetType())
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "ready" {
				t.Fatalf("ocisync_artifacts has labels %v, want only ready", m.GetLabel())
			}
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
