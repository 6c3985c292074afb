package controller

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/receiver"
)

var _ = Describe("Push triggers", func() {
	It("syncs at once the Artifacts that follow a pushed repository, whatever host the event names, and no other", func() {
		ns := newNamespace()
		repo, other := repoFor(ns), repoFor(ns)+"-other"
		first, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		pushPlain(other, "v1", textLayer("a.txt", "other\n"))

		follows := baseSpec(repo, "v1")
		follows.Interval = every(time.Hour)
		createNamedArtifact(ns, "follows", follows)
		pinned := baseSpec(repo, "v1")
		pinned.Reference = proxy.Host + "/" + repo + "@" + first.Digest.String()
		pinned.Interval = every(time.Hour)
		pinned.ConfigMap = &v1alpha1.ConfigMapOutput{Name: "pinned"}
		createNamedArtifact(ns, "pinned", pinned)
		elsewhere := baseSpec(other, "v1")
		elsewhere.Interval = every(time.Hour)
		elsewhere.ConfigMap = &v1alpha1.ConfigMapOutput{Name: "other"}
		createNamedArtifact(ns, "other", elsewhere)
		for _, name := range []string{"follows", "pinned", "other"} {
			waitNamedReady(ns, name)
		}

		second, _ := pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
		otherRequests := proxy.Counts(other)
		// The pusher names the registry otherwise than the Artifacts do.
		counts, err := reconciler.TriggerChanges(bg, []receiver.Change{{Host: "registry.elsewhere.example:5000", Repository: repo, Tag: "v1"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(counts).To(Equal([]int{1}), "the Artifact following the tag, not the one pinned to a digest")
		Eventually(func() string {
			if cm := getConfigMap(ns, configMapName); cm != nil {
				return cm.Data["a.txt"]
			}
			return ""
		}).WithTimeout(10*time.Second).Should(Equal("two\n"), "published long before the hour's interval")
		Eventually(func() string { return getNamedArtifact(ns, "follows").Status.Digest }).Should(Equal(second.Digest.String()))
		Expect(getNamedArtifact(ns, "pinned").Status.Digest).To(Equal(first.Digest.String()))
		Consistently(func() map[requestKey]int { return countsSince(otherRequests, proxy.Counts(other)) }).
			WithTimeout(time.Second).Should(BeEmpty(), "another repository's Artifact is not polled")

		By("recording an Event only when a triggered sync published something new")
		for range 3 {
			_, err = reconciler.TriggerChanges(bg, []receiver.Change{{Repository: repo, Tag: "v1"}})
			Expect(err).NotTo(HaveOccurred())
		}
		published := func() []string {
			var notes []string
			for _, e := range eventsAbout(ns, "follows") {
				if e.Reason == "Published" && e.Series == nil {
					notes = append(notes, e.Note)
				} else if e.Reason == "Published" {
					notes = append(notes, "repeated: "+e.Note)
				}
			}
			return notes
		}
		Eventually(published).Should(ConsistOf(ContainSubstring(first.Digest.String()), ContainSubstring(second.Digest.String())))
		Consistently(published).WithTimeout(time.Second).Should(HaveLen(2), "syncs that found nothing new record no Event")

		By("leaving alone Artifacts of another tag, and a repository nobody follows")
		counts, err = reconciler.TriggerChanges(bg, []receiver.Change{{Repository: repo, Tag: "v9"}, {Repository: repoFor(ns) + "-nobody"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(counts).To(Equal([]int{0, 0}))

		By("narrowing to the Artifacts of the event's host when some name it")
		// The same registry under another name: localhost for 127.0.0.1.
		_, port, found := strings.Cut(proxy.Host, ":")
		Expect(found).To(BeTrue())
		byName := baseSpec(repo, "v1")
		byName.Reference = "localhost:" + port + "/" + repo + ":v1"
		byName.Interval = every(time.Hour)
		byName.ConfigMap = &v1alpha1.ConfigMapOutput{Name: "by-name"}
		createNamedArtifact(ns, "by-name", byName)
		waitNamedReady(ns, "by-name")
		for _, tc := range []struct {
			host string
			want int
		}{
			{proxy.Host, 1},                   // the one naming 127.0.0.1
			{"localhost:" + port, 1},          // the one naming localhost
			{"registry.elsewhere.example", 2}, // no Artifact names it: both
			{"", 2},                           // no host in the event: both
		} {
			counts, err = reconciler.TriggerChanges(bg, []receiver.Change{{Host: tc.host, Repository: repo, Tag: "v1"}})
			Expect(err).NotTo(HaveOccurred())
			Expect(counts).To(Equal([]int{tc.want}), "an event naming host %q", tc.host)
		}
	})
	It("asks the leader through the requestedAt annotation from a replica that does not lead", func() {
		ns := newNamespace()
		repo := repoFor(ns)
		first, _ := pushPlain(repo, "v1", textLayer("a.txt", "one\n"))
		follows := baseSpec(repo, "v1")
		follows.Interval = every(time.Hour)
		createNamedArtifact(ns, "follows", follows)
		otherTag := baseSpec(repo, "v2")
		otherTag.Interval = every(time.Hour)
		otherTag.ConfigMap = &v1alpha1.ConfigMapOutput{Name: "other-tag"}
		pushPlain(repo, "v2", textLayer("a.txt", "v2\n"))
		createNamedArtifact(ns, "other-tag", otherTag)
		pinned := baseSpec(repo, "v1")
		pinned.Reference = proxy.Host + "/" + repo + "@" + first.Digest.String()
		pinned.Interval = every(time.Hour)
		pinned.ConfigMap = &v1alpha1.ConfigMapOutput{Name: "pinned"}
		createNamedArtifact(ns, "pinned", pinned)
		for _, name := range []string{"follows", "other-tag", "pinned"} {
			waitNamedReady(ns, name)
		}

		pushPlain(repo, "v1", textLayer("a.txt", "two\n"))
		// The same tag twice (two hosts): one patch, counted for both.
		counts, err := reconciler.RequestChanges(bg, []receiver.Change{{Repository: repo, Tag: "v1"}, {Host: "elsewhere", Repository: repo, Tag: "v1"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(counts).To(Equal([]int{1, 1}))
		requested := getNamedArtifact(ns, "follows").Annotations[v1alpha1.AnnotationReconcileRequestedAt]
		Expect(requested).NotTo(BeEmpty(), "the due Artifact carries the request")
		Expect(getNamedArtifact(ns, "other-tag").Annotations).NotTo(HaveKey(v1alpha1.AnnotationReconcileRequestedAt))
		Expect(getNamedArtifact(ns, "pinned").Annotations).NotTo(HaveKey(v1alpha1.AnnotationReconcileRequestedAt))
		Eventually(func() string {
			if cm := getConfigMap(ns, configMapName); cm != nil {
				return cm.Data["a.txt"]
			}
			return ""
		}).WithTimeout(10*time.Second).Should(Equal("two\n"), "the leader synced on the annotation, long before the hour's interval")
		Eventually(func() string { return getNamedArtifact(ns, "follows").Status.LastHandledReconcileAt }).Should(Equal(requested))
	})
})
