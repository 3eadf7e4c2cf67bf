// Package seceventtest records security events in tests: the emitter a
// handler under test is given, so the test can assert exactly which events
// a refusal produced.
package seceventtest

import (
	"context"
	"sync"

	"github.com/rampart-go/rampart/shared/secevent"
)

// Recorder is an emitter that keeps every event it is given. The zero
// value is ready; it is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []secevent.Event
}

// Emit records ev.
func (r *Recorder) Emit(_ context.Context, ev secevent.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// Take returns the events recorded since the last Take, and forgets them.
func (r *Recorder) Take() []secevent.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}
