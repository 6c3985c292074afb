package controller

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/reference"
	"github.com/ocisync/ocisync/internal/oci/transport"
)

func TestJitteredStaysWithinTenPercentAbove(t *testing.T) {
	for _, d := range []time.Duration{time.Second, defaultInterval, 24 * time.Hour} {
		hi := d + d/10
		for _, u := range []float64{0, 0.25, 0.5, 0.999999, -1, 2} {
			got := jittered(d, u)
			if got < d || got > hi {
				t.Errorf("jittered(%v, %v) = %v; want within [%v, %v]", d, u, got, d, hi)
			}
		}
		if got := jittered(d, 0.5); got != d+d/20 {
			t.Errorf("jittered(%v, 0.5) = %v; want %v", d, got, d+d/20)
		}
	}
	// Drawn as Reconcile draws: Artifacts created together spread out.
	seen := map[time.Duration]bool{}
	for range 100 {
		got := jittered(defaultInterval, rand.Float64())
		if got < defaultInterval || got >= defaultInterval+defaultInterval/10 {
			t.Fatalf("jittered(%v) = %v; want within [%v, %v)", defaultInterval, got, defaultInterval, defaultInterval+defaultInterval/10)
		}
		seen[got] = true
	}
	if len(seen) < 50 {
		t.Errorf("100 draws gave only %d distinct requeues; they should spread", len(seen))
	}
}

func TestClassifyRateLimitPause(t *testing.T) {
	err := fmt.Errorf("resolving: %w", &transport.PausedError{Origin: "https://registry.example", Until: time.Now().Add(time.Minute)})
	se := classify(err)
	if se.reason != v1alpha1.ReasonRegistryUnavailable || se.stall {
		t.Errorf("classify(%v) = %s stall=%v; want %s, retried", err, se.reason, se.stall, v1alpha1.ReasonRegistryUnavailable)
	}
	if !errors.Is(err, oci.ErrTooManyRequests) {
		t.Errorf("a rate limiting pause is not oci.ErrTooManyRequests")
	}
}

// Artifacts with different TLS settings get different HTTP clients; a 429
// answered to one must still hold back the others' requests to that
// registry.
func TestRateLimitPauseIsSharedAcrossRegistryClients(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "3600") // past the retries' cap: the 429 comes back at once
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	other := httptest.NewTLSServer(http.NotFoundHandler())
	defer other.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Certificate().Raw})

	r := &ArtifactReconciler{RegistryLimits: &transport.Hosts{}}
	get := func(opts transport.Options) (*http.Response, error) {
		t.Helper()
		hc, err := r.httpClient(opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, srv.URL+"/v2/a/manifests/v1", nil)
		if err != nil {
			t.Fatal(err)
		}
		return hc.Do(req)
	}
	// The first through registryClient, as a sync builds it.
	host := strings.TrimPrefix(srv.URL, "http://")
	obj := &v1alpha1.Artifact{Spec: v1alpha1.ArtifactSpec{Reference: host + "/a:v1", PlainHTTP: true}}
	c, _, err := r.registryClient(t.Context(), obj)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := reference.Parse(obj.Spec.Reference)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Repository(ref).Resolve(t.Context(), "v1"); !errors.Is(err, oci.ErrTooManyRequests) {
		t.Fatalf("resolving: error %v; want the 429", err)
	}
	_, err = get(transport.Options{MaxRetries: -1, Limits: r.RegistryLimits, CAPEM: ca})
	if !errors.Is(err, oci.ErrTooManyRequests) {
		t.Fatalf("the other client's request: error %v; want the pause to fail it at once", err)
	}
	if n := len(r.clients.clients); n != 2 {
		t.Errorf("%d HTTP clients; want 2, one per TLS configuration", n)
	}
	if hits.Load() != 1 {
		t.Errorf("the registry got %d requests; want 1", hits.Load())
	}
}
