package receiver

import (
	"sync"
	"time"
)

// Coalescer gathers changes for a short window and hands each repository
// on once per window, however many events named it: a registry retries,
// a pipeline pushes many tags, and each must make one sync per Artifact,
// not one per event.
type Coalescer struct {
	window time.Duration
	flush  func([]Change)
	after  func(time.Duration, func()) // time.AfterFunc, a fake in tests

	mu      sync.Mutex
	pending map[repoKey]Change
	order   []repoKey
	armed   bool
}

// repoKey is what makes two changes the same for coalescing: the
// repository on the host. Tags and digests do not matter, since a sync
// resolves the Artifact's own reference anyway.
type repoKey struct{ host, repository string }

// NewCoalescer returns a Coalescer that calls flush with the changes of
// each window, one per repository, window after the first of them.
func NewCoalescer(window time.Duration, flush func([]Change)) *Coalescer {
	return &Coalescer{window: window, flush: flush, after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }, pending: map[repoKey]Change{}}
}

// Add queues changes; it never blocks on the flush.
func (c *Coalescer) Add(changes []Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range changes {
		k := repoKey{ch.Host, ch.Repository}
		if _, ok := c.pending[k]; !ok {
			c.order = append(c.order, k)
		}
		// The latest tag and digest, for the log; the repository is what
		// counts.
		c.pending[k] = Change{Host: ch.Host, Repository: ch.Repository, Tag: ch.Tag, Digest: ch.Digest}
	}
	if !c.armed && len(c.order) > 0 {
		c.armed = true
		c.after(c.window, c.fire)
	}
}

// Pending is how many repositories wait for the next flush.
func (c *Coalescer) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order)
}

func (c *Coalescer) fire() {
	c.mu.Lock()
	out := make([]Change, 0, len(c.order))
	for _, k := range c.order {
		out = append(out, c.pending[k])
	}
	c.pending, c.order, c.armed = map[repoKey]Change{}, nil, false
	c.mu.Unlock()
	if len(out) > 0 {
		c.flush(out)
	}
}
