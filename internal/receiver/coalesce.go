package receiver

import (
	"sync"
	"time"
)

// Coalescer gathers changes for a short window and hands each repository
// tag on once per window, however many events named it: a registry retries,
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

// repoKey is what makes two changes the same for coalescing: the tag of
// the repository on the host. The tag is kept because it decides which
// Artifacts are due (a push of v1 then v2 must reach the followers of
// both); the digest does not, since a sync resolves the Artifact's own
// reference anyway.
type repoKey struct{ host, repository, tag string }

// MaxPending bounds the changes a Coalescer holds for one window; beyond
// it Add refuses with ErrBusy (429) so that a flood of distinct
// repositories cannot grow the manager's memory.
const MaxPending = 4096

// NewCoalescer returns a Coalescer that calls flush with the changes of
// each window, one per repository, window after the first of them.
func NewCoalescer(window time.Duration, flush func([]Change)) *Coalescer {
	return &Coalescer{window: window, flush: flush, after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }, pending: map[repoKey]Change{}}
}

// Add queues changes; it never blocks on the flush. It takes all of
// them or, when they would not fit under MaxPending, none and returns
// ErrBusy.
func (c *Coalescer) Add(changes []Change) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := 0
	for _, ch := range changes {
		if _, ok := c.pending[repoKey{ch.Host, ch.Repository, ch.Tag}]; !ok {
			fresh++
		}
	}
	if len(c.order)+fresh > MaxPending {
		return ErrBusy
	}
	for _, ch := range changes {
		k := repoKey{ch.Host, ch.Repository, ch.Tag}
		if _, ok := c.pending[k]; !ok {
			c.order = append(c.order, k)
		}
		// The latest digest, for the log.
		c.pending[k] = ch
	}
	if !c.armed && len(c.order) > 0 {
		c.armed = true
		c.after(c.window, c.fire)
	}
	return nil
}

// Pending is how many repository tags wait for the next flush.
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
