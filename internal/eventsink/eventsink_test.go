package eventsink

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// sink records what was created, and can fail or block the writes.
type sink struct {
	mu      sync.Mutex
	created []*eventsv1.Event
	calls   int
	fail    func(call int) error
	block   chan struct{} // when not nil, each write waits for it
}

func (s *sink) create(ctx context.Context, ev *eventsv1.Event) error {
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		if err := s.fail(s.calls); err != nil {
			return err
		}
	}
	s.created = append(s.created, ev.DeepCopy())
	return nil
}

func (s *sink) events() []*eventsv1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*eventsv1.Event(nil), s.created...)
}

func pod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: "uid-" + metav1.NamespaceDefault}}
}

func start(t *testing.T, r *Recorder) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestEventFields(t *testing.T) {
	s := &sink{}
	r := New(s.create, clientgoscheme.Scheme, "ocisync", Options{})
	start(t, r)
	long := strings.Repeat("x", 2000)
	r.Eventf(pod("a"), pod("b"), corev1.EventTypeWarning, "Failed", "Sync", "could not %s: %s", "pull", long)
	waitFor(t, "one Event", func() bool { return len(s.events()) == 1 })
	ev := s.events()[0]
	if ev.Namespace != "ns" || !strings.HasPrefix(ev.Name, "a.") {
		t.Errorf("Event %s/%s, want it in ns named a.<time>", ev.Namespace, ev.Name)
	}
	if ev.Regarding.Kind != "Pod" || ev.Regarding.Name != "a" || ev.Related == nil || ev.Related.Name != "b" {
		t.Errorf("regarding %+v related %+v, want Pod a and Pod b", ev.Regarding, ev.Related)
	}
	if ev.Type != corev1.EventTypeWarning || ev.Reason != "Failed" || ev.Action != "Sync" || ev.ReportingController != "ocisync" || !strings.HasPrefix(ev.ReportingInstance, "ocisync-") {
		t.Errorf("Event %+v: wrong type, reason, action or reporter", ev)
	}
	if len(ev.Note) != maxNote || !strings.HasPrefix(ev.Note, "could not pull: xxx") || !strings.HasSuffix(ev.Note, "...") {
		t.Errorf("note of %d bytes (%q...), want it cut to %d", len(ev.Note), ev.Note[:20], maxNote)
	}
	if ev.EventTime.IsZero() {
		t.Error("no eventTime: the API server refuses such an Event")
	}
}

func TestQueueFullDropsWithoutBlocking(t *testing.T) {
	s := &sink{block: make(chan struct{})}
	var mu sync.Mutex
	reasons := map[string]int{}
	r := New(s.create, clientgoscheme.Scheme, "ocisync", Options{QueueSize: 3, Workers: 1})
	r.OnDrop = func(reason string, _ *eventsv1.Event) {
		mu.Lock()
		defer mu.Unlock()
		reasons[reason]++
	}
	start(t, r)
	// One held by the blocked writer, three queued, the rest dropped at
	// once: Eventf must return although nothing is written.
	begin := time.Now()
	for i := range 10 {
		r.Eventf(pod("p"), nil, corev1.EventTypeNormal, "Published", "Publish", "n=%d", i)
		if i == 0 {
			waitFor(t, "the writer to take the first Event", func() bool { return len(r.queue) == 0 })
		}
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Eventf blocked for %s with the API server stuck", d)
	}
	if got := r.Dropped(); got != 6 {
		t.Errorf("dropped %d Events, want 6 (10 less one in flight and three queued)", got)
	}
	close(s.block)
	waitFor(t, "the four kept Events", func() bool { return len(s.events()) == 4 })
	mu.Lock()
	defer mu.Unlock()
	if reasons["queue full"] != 6 {
		t.Errorf("drop reasons %v, want 6 for a full queue", reasons)
	}
}

func TestRetries(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("busy")
	invalid := apierrors.NewInvalid(schema.GroupKind{Group: "events.k8s.io", Kind: "Event"}, "x", nil)
	for _, tc := range []struct {
		name      string
		fail      func(call int) error
		wantCalls int
		wantKept  int
		wantDrops int64
	}{
		{"written at once", nil, 1, 1, 0},
		{"a transient failure is retried", func(c int) error {
			if c == 1 {
				return unavailable
			}
			return nil
		}, 2, 1, 0},
		{"given up after the retries", func(int) error { return unavailable }, 3, 0, 1},
		{"an invalid Event is not retried", func(int) error { return invalid }, 1, 0, 1},
		{"already there counts as written", func(int) error { return apierrors.NewAlreadyExists(schema.GroupResource{}, "x") }, 1, 0, 0},
		{"another error is retried too", func(c int) error {
			if c < 3 {
				return errors.New("connection reset")
			}
			return nil
		}, 3, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sink{fail: tc.fail}
			r := New(s.create, clientgoscheme.Scheme, "ocisync", Options{Backoff: time.Millisecond})
			start(t, r)
			r.Eventf(pod("p"), nil, corev1.EventTypeNormal, "Published", "Publish", "x")
			waitFor(t, "the writes to end", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.calls >= tc.wantCalls && (len(s.created) == tc.wantKept) && r.Dropped() == tc.wantDrops
			})
			time.Sleep(20 * time.Millisecond) // no further attempt
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.calls != tc.wantCalls {
				t.Errorf("%d attempts, want %d", s.calls, tc.wantCalls)
			}
		})
	}
}

func TestUnreferenceableObjectIsDropped(t *testing.T) {
	s := &sink{}
	r := New(s.create, runtime.NewScheme(), "ocisync", Options{})
	r.Eventf(pod("p"), nil, corev1.EventTypeNormal, "Published", "Publish", "x")
	if r.Dropped() != 1 || len(r.queue) != 0 {
		t.Errorf("an object of a kind the scheme does not know: dropped %d, queued %d; want 1 and 0", r.Dropped(), len(r.queue))
	}
}
