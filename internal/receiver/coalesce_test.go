package receiver

import (
	"errors"
	"fmt"
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
	add := func(ch ...Change) {
		t.Helper()
		if err := c.Add(ch); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	for i := range 300 {
		add(Change{Host: "reg", Repository: "team/app", Tag: "v" + string(rune('a'+i%3)), Digest: fmt.Sprint("sha256:", i)})
	}
	add(Change{Host: "reg", Repository: "team/other", Tag: "v1"})
	add(Change{Host: "mirror", Repository: "team/app", Tag: "v1"})
	if len(timer.armed) != 1 {
		t.Fatalf("%d timers armed for one window, want 1", len(timer.armed))
	}
	if got := c.Pending(); got != 5 {
		t.Errorf("%d repository tags pending, want 5", got)
	}
	timer.fireAll()
	// Every tag stays: the followers of va must sync as well as those of
	// vc. The digest is the latest of each.
	want := [][]Change{{
		{Host: "reg", Repository: "team/app", Tag: "va", Digest: "sha256:297"},
		{Host: "reg", Repository: "team/app", Tag: "vb", Digest: "sha256:298"},
		{Host: "reg", Repository: "team/app", Tag: "vc", Digest: "sha256:299"},
		{Host: "reg", Repository: "team/other", Tag: "v1"},
		{Host: "mirror", Repository: "team/app", Tag: "v1"},
	}}
	if !reflect.DeepEqual(flushed, want) {
		t.Errorf("flushed %+v, want %+v: each repository tag once, in the order first seen", flushed, want)
	}

	// The next event opens a new window.
	add(Change{Host: "reg", Repository: "team/app"})
	if len(timer.armed) != 1 || c.Pending() != 1 {
		t.Fatalf("after a flush: %d timers armed and %d pending, want 1 and 1", len(timer.armed), c.Pending())
	}
	timer.fireAll()
	if len(flushed) != 2 {
		t.Errorf("%d flushes, want 2", len(flushed))
	}

	// Nothing added, nothing armed, nothing flushed.
	add()
	if len(timer.armed) != 0 {
		t.Errorf("an empty Add armed a timer")
	}
}

// A flood of distinct repositories is refused past MaxPending, all of a
// call or nothing, and taken again after the flush.
func TestCoalescerBound(t *testing.T) {
	timer := &fakeTimer{}
	flushed := 0
	c := NewCoalescer(time.Second, func(ch []Change) { flushed += len(ch) })
	c.after = timer.after
	for i := range MaxPending - 1 {
		if err := c.Add([]Change{{Repository: fmt.Sprint("r", i)}}); err != nil {
			t.Fatalf("change %d refused under the bound: %v", i, err)
		}
	}
	if err := c.Add([]Change{{Repository: "x"}, {Repository: "y"}}); !errors.Is(err, ErrBusy) {
		t.Fatalf("two more past the bound: %v, want ErrBusy", err)
	}
	if err := c.Add([]Change{{Repository: "r0"}}); err != nil {
		t.Errorf("a change already pending refused: %v", err)
	}
	if c.Pending() != MaxPending-1 {
		t.Errorf("%d pending, want %d: a refused call must add nothing", c.Pending(), MaxPending-1)
	}
	timer.fireAll()
	if flushed != MaxPending-1 {
		t.Errorf("%d flushed, want %d", flushed, MaxPending-1)
	}
	if err := c.Add([]Change{{Repository: "x"}}); err != nil {
		t.Errorf("refused after the flush: %v", err)
	}
}

func TestCoalescerRealTimer(t *testing.T) {
	done := make(chan []Change, 1)
	c := NewCoalescer(20*time.Millisecond, func(ch []Change) { done <- ch })
	_ = c.Add([]Change{{Repository: "a"}})
	_ = c.Add([]Change{{Repository: "a"}})
	select {
	case got := <-done:
		if len(got) != 1 {
			t.Errorf("flushed %v, want one change", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no flush within 5s of a 20ms window")
	}
}
