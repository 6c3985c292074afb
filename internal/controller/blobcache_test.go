package controller

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ocisync/ocisync/internal/blobcache"
)

// newSuiteBlobCache gives the suite's reconciler a blob cache, as the
// manager has one by default. Entries are per repository, and each spec
// has its own, so specs do not serve each other's blobs.
func newSuiteBlobCache() *blobcache.Cache {
	GinkgoHelper()
	c, err := blobcache.New(GinkgoT().TempDir(), 64<<20)
	Expect(err).NotTo(HaveOccurred(), "open the blob cache")
	return c
}

var _ = Describe("The blob cache", func() {
	It("downloads a layer shared by two Artifacts, and a layer unchanged in a new version, once", func() {
		ns1, ns2 := newNamespace(), newNamespace()
		// One repository for both Artifacts, each in its own namespace.
		repo := repoFor(ns1)
		shared := textLayer("shared.txt", "in both tags of "+repo+"\n")
		d1, m1 := pushPlain(repo, "one", shared, textLayer("one.txt", "one\n"))
		d2, m2 := pushPlain(repo, "two", shared, textLayer("two.txt", "two\n"))
		hits := metricValue("ocisync_blob_cache_lookups_total", "result", "hit")

		createArtifact(ns1, baseSpec(repo, "one"))
		createArtifact(ns2, baseSpec(repo, "two"))
		expectPublished(ns1, proxy.Host, repo, "one", d1, m1, m1.Layers,
			map[string][]byte{"shared.txt": shared.data, "one.txt": []byte("one\n")})
		expectPublished(ns2, proxy.Host, repo, "two", d2, m2, m2.Layers,
			map[string][]byte{"shared.txt": shared.data, "two.txt": []byte("two\n")})
		// Both ConfigMaps hold every blob, so each was downloaded at least
		// once: as many GETs as distinct blobs means each exactly once.
		Expect(proxy.Count(repo, "GET", "blobs")).To(Equal(3), "one GET per distinct blob: shared.txt, one.txt, two.txt")

		By("pushing a new version of one that keeps shared.txt")
		d3, m3 := pushPlain(repo, "one", shared, textLayer("one.txt", "one, again\n"))
		expectPublished(ns1, proxy.Host, repo, "one", d3, m3, m3.Layers,
			map[string][]byte{"shared.txt": shared.data, "one.txt": []byte("one, again\n")})
		Expect(proxy.Count(repo, "GET", "blobs")).To(Equal(4), "only the changed layer is downloaded")
		Expect(metricValue("ocisync_blob_cache_lookups_total", "result", "hit")-hits).To(BeNumerically(">=", 2),
			"the second Artifact's and the new version's shared.txt are cache hits")
	})
})
