package breaker

import (
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestLifecycle walks closed → open → half-open → open → half-open →
// closed, checking who is let through at each step and that every change
// is reported once.
func TestLifecycle(t *testing.T) {
	clk := &clock{t: time.Unix(0, 0)}
	var changes []string
	b := New(Options{Threshold: 3, OpenFor: 10 * time.Second, Now: clk.now, OnChange: func(from, to State) {
		changes = append(changes, from.String()+"→"+to.String())
	}})
	fail := func() {
		t.Helper()
		if ok, _ := b.Allow(); !ok {
			t.Fatalf("refused while %s", b.State())
		}
		b.Done(false)
	}
	fail()
	fail()
	if ok, _ := b.Allow(); !ok {
		t.Fatal("closed breaker refused")
	}
	b.Done(true) // a success resets the count
	fail()
	fail()
	if b.State() != Closed {
		t.Fatalf("opened after 2 consecutive failures")
	}
	fail()
	if b.State() != Open {
		t.Fatalf("still %s after 3 consecutive failures", b.State())
	}
	if ok, wait := b.Allow(); ok || wait != 10*time.Second {
		t.Fatalf("open breaker: ok %v, retry after %v", ok, wait)
	}
	clk.add(10 * time.Second)
	if ok, _ := b.Allow(); !ok || b.State() != HalfOpen {
		t.Fatalf("no probe after OpenFor (%s)", b.State())
	}
	if ok, _ := b.Allow(); ok {
		t.Fatal("two probes at once")
	}
	b.Done(false) // the probe failed: open again, for a full OpenFor
	if ok, wait := b.Allow(); ok || wait != 10*time.Second {
		t.Fatalf("after a failed probe: ok %v, wait %v", ok, wait)
	}
	clk.add(10 * time.Second)
	if ok, _ := b.Allow(); !ok {
		t.Fatal("no second probe")
	}
	b.Abandon() // the client went away: the slot is free, nothing decided
	if b.State() != HalfOpen {
		t.Fatalf("abandoned probe changed the state to %s", b.State())
	}
	if ok, _ := b.Allow(); !ok {
		t.Fatal("probe slot not freed by Abandon")
	}
	b.Done(true)
	if b.State() != Closed {
		t.Fatalf("successful probe left %s", b.State())
	}
	want := "[closed→open open→half_open half_open→open open→half_open half_open→closed]"
	if got := fmtChanges(changes); got != want {
		t.Errorf("changes %s\nwant    %s", got, want)
	}
}

func fmtChanges(c []string) string {
	out := "["
	for i, s := range c {
		if i > 0 {
			out += " "
		}
		out += s
	}
	return out + "]"
}

// TestConcurrentUse is for the race detector: many callers, one breaker.
func TestConcurrentUse(t *testing.T) {
	b := New(Options{Threshold: 2, OpenFor: time.Millisecond})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 500 {
				if ok, _ := b.Allow(); ok {
					b.Done((i+j)%3 == 0)
				}
			}
		})
	}
	wg.Wait()
	_ = b.State()
}
