package loadtest

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Stage ramps the arrival rate linearly to Target iterations per second
// over Duration (k6's ramping-arrival-rate stages).
type Stage struct {
	Duration time.Duration
	Target   float64
}

// Arrival is an open-model executor: iterations start at the scheduled
// rate whether or not earlier ones have finished, so a slow system shows
// up as latency and dropped iterations, not as a politely lower rate
// (coordinated omission). At most MaxInFlight iterations run at once;
// an arrival that finds them all busy is dropped and counted.
type Arrival struct {
	StartRate   float64
	Stages      []Stage
	MaxInFlight int
}

// Duration is the sum of the stages.
func (a Arrival) Duration() time.Duration {
	var d time.Duration
	for _, s := range a.Stages {
		d += s.Duration
	}
	return d
}

// RateAt is the scheduled arrival rate at offset t.
func (a Arrival) RateAt(t time.Duration) float64 {
	from := a.StartRate
	for _, s := range a.Stages {
		if t < s.Duration {
			return from + (s.Target-from)*float64(t)/float64(s.Duration)
		}
		t -= s.Duration
		from = s.Target
	}
	return from
}

// Expected is the number of iterations the schedule starts (the integral
// of the rate), for checks and reports.
func (a Arrival) Expected() float64 {
	var n float64
	from := a.StartRate
	for _, s := range a.Stages {
		n += (from + s.Target) / 2 * s.Duration.Seconds()
		from = s.Target
	}
	return n
}

// Validate reports a schedule that cannot run.
func (a Arrival) Validate() error {
	if len(a.Stages) == 0 {
		return fmt.Errorf("no stages")
	}
	if a.MaxInFlight <= 0 {
		return fmt.Errorf("MaxInFlight must be positive")
	}
	for i, s := range a.Stages {
		if s.Duration <= 0 || s.Target < 0 {
			return fmt.Errorf("stage %d: duration must be positive and target not negative", i)
		}
	}
	return nil
}

// Run starts iterations on schedule until the stages end or ctx is done,
// waits for those in flight, and returns how many started and how many
// were dropped.
func (a Arrival) Run(ctx context.Context, iterate func(ctx context.Context)) (started, dropped int64) {
	total := a.Duration()
	ctx, cancel := context.WithTimeout(ctx, total+30*time.Second) // in-flight grace
	defer cancel()
	sem := make(chan struct{}, a.MaxInFlight)
	var wg sync.WaitGroup
	begin := time.Now()
	// due accumulates the integral of the rate; each whole unit is one
	// arrival. A 1 ms tick keeps 2,000/s smooth without a timer per
	// arrival.
	var due float64
	last := time.Duration(0)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		now := time.Since(begin)
		if now >= total {
			break
		}
		due += (a.RateAt(last) + a.RateAt(now)) / 2 * (now - last).Seconds()
		last = now
		for ; due >= 1; due-- {
			select {
			case sem <- struct{}{}:
				started++
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					iterate(ctx)
				}()
			default:
				dropped++
			}
		}
	}
	wg.Wait()
	return started, dropped
}
