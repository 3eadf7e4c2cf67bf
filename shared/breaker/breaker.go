// Package breaker is a circuit breaker for one upstream. After Threshold
// consecutive failures it opens: requests are refused at once (the gateway
// and order-service answer 503 with Retry-After) instead of each waiting for
// a dial or a timeout against a service that is down. After OpenFor it lets one probe
// through (half-open); the probe's success closes it, its failure opens it
// again.
package breaker

import (
	"sync"
	"time"
)

// State of a breaker.
type State int

// The states, in the order of the state gauge's values.
const (
	Closed State = iota
	HalfOpen
	Open
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half_open"
	}
	return "open"
}

// Options configure a Breaker.
type Options struct {
	// Threshold consecutive failures open the circuit (default 5).
	Threshold int
	// OpenFor is how long the circuit stays open before a probe (default 5s).
	OpenFor time.Duration
	// OnChange is told every state change (metrics, logs); it runs with
	// the breaker's lock released.
	OnChange func(from, to State)
	Now      func() time.Time
}

// Breaker is safe for concurrent use.
type Breaker struct {
	o        Options
	mu       sync.Mutex
	state    State
	failures int
	openedAt time.Time
	probing  bool
}

// New returns a closed breaker.
func New(o Options) *Breaker {
	if o.Threshold <= 0 {
		o.Threshold = 5
	}
	if o.OpenFor <= 0 {
		o.OpenFor = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Breaker{o: o}
}

// Allow asks to send one request. When it returns ok, the caller must
// report the outcome with Done. When it does not, retryAfter says how long
// until the next probe.
func (b *Breaker) Allow() (ok bool, retryAfter time.Duration) {
	b.mu.Lock()
	switch b.state {
	case Closed:
		b.mu.Unlock()
		return true, 0
	case Open:
		wait := b.o.OpenFor - b.o.Now().Sub(b.openedAt)
		if wait > 0 {
			b.mu.Unlock()
			return false, wait
		}
		b.state, b.probing = HalfOpen, true
		b.mu.Unlock()
		b.changed(Open, HalfOpen)
		return true, 0
	default: // half-open: one probe at a time
		if b.probing {
			b.mu.Unlock()
			return false, time.Second
		}
		b.probing = true
		b.mu.Unlock()
		return true, 0
	}
}

// Done reports the outcome of a request Allow let through.
func (b *Breaker) Done(success bool) {
	b.mu.Lock()
	from := b.state
	switch {
	case success:
		b.failures = 0
		b.state, b.probing = Closed, false
	case b.state == HalfOpen:
		b.state, b.probing, b.openedAt = Open, false, b.o.Now()
	default:
		b.failures++
		if b.state == Closed && b.failures >= b.o.Threshold {
			b.state, b.openedAt = Open, b.o.Now()
		}
	}
	to := b.state
	b.mu.Unlock()
	if from != to {
		b.changed(from, to)
	}
}

// Abandon gives back a request Allow let through whose outcome says
// nothing about the upstream (the client went away): a half-open probe
// slot is freed without closing or re-opening the circuit.
func (b *Breaker) Abandon() {
	b.mu.Lock()
	if b.state == HalfOpen {
		b.probing = false
	}
	b.mu.Unlock()
}

// State returns the current state.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func (b *Breaker) changed(from, to State) {
	if b.o.OnChange != nil {
		b.o.OnChange(from, to)
	}
}
