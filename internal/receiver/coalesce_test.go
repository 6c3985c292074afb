package receiver

import (
	"reflect"
	"testing"
	"time"
)

// fakeTimer collects the functions the Coalescer arms, to fire by hand.
type fakeTimer struct{ armed []func() }

func (f *fakeTimer) after(_ time.Duration, fn func()) { f.armed = append(f.armed, fn) }

func (f *fakeTimer) fireAll() {
	fns := f.armed
	f.armed = nil
	for _, fn := range fns {
		fn()
	}
}

func TestCoalescer(t *testing.T) {
	var flushed [][]Change
	timer := &fakeTimer{}
	c := NewCoalescer(time.Second, func(ch []Change) { flushed = append(flushed, ch) })
	c.after = timer.after

	// A flood for one repository, a few tags, and one other repository.
	for i := range 300 {
		c.Add([]Change{{Host: "reg", Repository: "team/app", Tag: "v" + string(rune('a'+i%3))}})
	}
	c.Add([]Change{{Host: "reg", Repository: "team/other", Tag: "v1"}})
	c.Add([]Change{{Host: "mirror", Repository: "team/app", Tag: "v1"}})
	if len(timer.armed) != 1 {
		t.Fatalf("%d timers armed for one window, want 1", len(timer.armed))
	}
	if got := c.Pending(); got != 3 {
		t.Errorf("%d repositories pending, want 3", got)
	}
	timer.fireAll()
	want := [][]Change{{
		{Host: "reg", Repository: "team/app", Tag: "vc"},
		{Host: "reg", Repository: "team/other", Tag: "v1"},
		{Host: "mirror", Repository: "team/app", Tag: "v1"},
	}}
	if !reflect.DeepEqual(flushed, want) {
		t.Errorf("flushed %+v, want %+v: each repository once, in the order first seen", flushed, want)
	}

	// The next event opens a new window.
	c.Add([]Change{{Host: "reg", Repository: "team/app"}})
	if len(timer.armed) != 1 || c.Pending() != 1 {
		t.Fatalf("after a flush: %d timers armed and %d pending, want 1 and 1", len(timer.armed), c.Pending())
	}
	timer.fireAll()
	if len(flushed) != 2 {
		t.Errorf("%d flushes, want 2", len(flushed))
	}

	// Nothing added, nothing armed, nothing flushed.
	c.Add(nil)
	if len(timer.armed) != 0 {
		t.Errorf("an empty Add armed a timer")
	}
}

func TestCoalescerRealTimer(t *testing.T) {
	done := make(chan []Change, 1)
	c := NewCoalescer(20*time.Millisecond, func(ch []Change) { done <- ch })
	c.Add([]Change{{Repository: "a"}})
	c.Add([]Change{{Repository: "a"}})
	select {
	case got := <-done:
		if len(got) != 1 {
			t.Errorf("flushed %v, want one change", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no flush within 5s of a 20ms window")
	}
}
