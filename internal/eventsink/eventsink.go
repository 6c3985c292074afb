// Package eventsink records Kubernetes Events (events.k8s.io/v1) through
// a bounded queue and a few writers. client-go's own event broadcaster
// starts a goroutine per Event and keeps every Event it sent for 6 to 12
// minutes, to fold repeats into a series: with thousands of Artifacts
// publishing at once that is thousands of writes in flight and megabytes
// held for nothing, since the reconciler records an Event only when
// something is news. Here memory and writes in flight stay bounded; when
// the API server cannot keep up, Events are dropped and counted, never
// the syncs delayed.
package eventsink

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/reference"
)

// Creator creates one Event; the events/v1 client's Events(ns).Create
// in the manager, a fake in tests.
type Creator func(ctx context.Context, ev *eventsv1.Event) error

// What the API server accepts in an Event's note and reportingInstance.
const (
	maxNote              = 1024
	maxReportingInstance = 128
)

// Recorder implements client-go's events.EventRecorder.
type Recorder struct {
	create     Creator
	scheme     *runtime.Scheme
	controller string
	instance   string
	queue      chan *eventsv1.Event
	workers    int
	retries    int
	backoff    time.Duration
	// OnDrop is called, if set, for each Event dropped (queue full, or
	// writes failed), with the reason: for a metric and a log line.
	OnDrop  func(reason string, ev *eventsv1.Event)
	dropped atomic.Int64
	now     func() time.Time
}

// Options shape a Recorder; zero values take the defaults.
type Options struct {
	QueueSize int           // Events waiting to be written (default 4096)
	Workers   int           // writes in flight (default 4)
	Retries   int           // further attempts of a failed write (default 2; negative: none)
	Backoff   time.Duration // before a retry (default 1s)
}

// New returns a Recorder reporting as controller, whose instance is the
// host name. It writes nothing until Start runs.
func New(create Creator, scheme *runtime.Scheme, controller string, opts Options) *Recorder {
	host, _ := os.Hostname()
	r := &Recorder{
		create: create, scheme: scheme, controller: controller,
		instance: controller + "-" + host,
		workers:  opts.Workers, retries: max(opts.Retries, 0), backoff: opts.Backoff,
		now: time.Now,
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if r.workers <= 0 {
		r.workers = 4
	}
	if opts.Retries == 0 {
		r.retries = 2
	}
	if r.backoff <= 0 {
		r.backoff = time.Second
	}
	r.queue = make(chan *eventsv1.Event, opts.QueueSize)
	return r
}

// Dropped is how many Events were dropped so far.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Eventf queues an Event about regarding (and related, when not nil). It
// never blocks: with the queue full the Event is dropped.
func (r *Recorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	ref, err := reference.GetReference(r.scheme, regarding)
	if err != nil {
		r.drop("unreferenceable", &eventsv1.Event{Reason: reason})
		return
	}
	ev := r.makeEvent(eventtype, reason, action, fmt.Sprintf(note, args...))
	ev.Regarding = *ref
	if related != nil {
		if rel, err := reference.GetReference(r.scheme, related); err == nil {
			ev.Related = rel
		}
	}
	ev.Namespace = ref.Namespace
	if ev.Namespace == "" {
		ev.Namespace = metav1.NamespaceDefault
	}
	ev.Name = fmt.Sprintf("%s.%x", ref.Name, r.now().UnixNano())
	select {
	case r.queue <- ev:
	default:
		r.drop("queue full", ev)
	}
}

func (r *Recorder) makeEvent(eventtype, reason, action, note string) *eventsv1.Event {
	if len(note) > maxNote {
		note = note[:maxNote-3] + "..."
	}
	return &eventsv1.Event{
		EventTime:           metav1.NewMicroTime(r.now()),
		ReportingController: r.controller,
		ReportingInstance:   truncate(r.instance, maxReportingInstance),
		Action:              action,
		Reason:              reason,
		Note:                note,
		Type:                eventtype,
	}
}

// Start writes queued Events until ctx ends; it is a manager Runnable.
// Events still queued then are dropped: the process is stopping.
func (r *Recorder) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for range r.workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-r.queue:
					r.write(ctx, ev)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// NeedLeaderElection is false: a replica that is not the leader records
// nothing, and one that is must not wait to write what it recorded.
func (r *Recorder) NeedLeaderElection() bool { return false }

func (r *Recorder) write(ctx context.Context, ev *eventsv1.Event) {
	for attempt := 0; ; attempt++ {
		err := r.create(ctx, ev)
		if err == nil || apierrors.IsAlreadyExists(err) {
			return
		}
		// A namespace being deleted, or an Event the API server refuses,
		// will not go through on a second try.
		if attempt >= r.retries || apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
			r.drop("write failed", ev)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.backoff):
		}
	}
}

func (r *Recorder) drop(reason string, ev *eventsv1.Event) {
	r.dropped.Add(1)
	if r.OnDrop != nil {
		r.OnDrop(reason, ev)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
