package metrics

import (
	"testing"

	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

func TestBlobCacheCounters(t *testing.T) {
	// Every series exists from registration, so that a hit ratio can be
	// computed before the first miss.
	Register()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if series[f.GetName()] == nil {
					series[f.GetName()] = map[string]bool{}
				}
				series[f.GetName()][l.GetName()+"="+l.GetValue()] = true
			}
		}
	}
	for name, labels := range map[string][]string{
		"ocisync_blob_cache_lookups_total":   {"result=hit", "result=miss", "result=bypass"},
		"ocisync_blob_cache_evictions_total": {"reason=lru", "reason=corrupt"},
	} {
		for _, l := range labels {
			if !series[name][l] {
				t.Errorf("%s{%s} is not served; series: %v", name, l, series[name])
			}
		}
	}

	for _, r := range []string{CacheHit, CacheMiss, CacheBypass} {
		before := value(t, blobCacheLookups.WithLabelValues(r))
		ObserveBlobCacheLookup(r)
		if got := value(t, blobCacheLookups.WithLabelValues(r)) - before; got != 1 {
			t.Errorf("ocisync_blob_cache_lookups_total{result=%q} grew by %v, want 1", r, got)
		}
	}
	for _, r := range []string{EvictionLRU, EvictionCorrupt} {
		before := value(t, blobCacheEvictions.WithLabelValues(r))
		ObserveBlobCacheEviction(r)
		if got := value(t, blobCacheEvictions.WithLabelValues(r)) - before; got != 1 {
			t.Errorf("ocisync_blob_cache_evictions_total{reason=%q} grew by %v, want 1", r, got)
		}
	}
}
