package oauth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Throttle is the auth service's own per-address limit on the login and
// token endpoints: the gateway limits too, but the service that checks
// passwords must not depend on its caller for that. Memory is bounded: at
// most MaxKeys addresses are tracked, idle ones are dropped first, and
// when every slot is busy new addresses share one overflow bucket.
type Throttle struct {
	mu       sync.Mutex
	limiters map[string]*entry
	overflow *rate.Limiter
	o        ThrottleOptions
}

type entry struct {
	lim  *rate.Limiter
	seen time.Time
}

// ThrottleOptions configure NewThrottle.
type ThrottleOptions struct {
	// PerMinute and Burst per address and endpoint (default 60, 20).
	PerMinute, Burst int
	// MaxKeys bounds memory (default 100 000).
	MaxKeys int
}

// NewThrottle returns a Throttle.
func NewThrottle(o ThrottleOptions) *Throttle {
	if o.PerMinute <= 0 {
		o.PerMinute = 60
	}
	if o.Burst <= 0 {
		o.Burst = 20
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 100_000
	}
	return &Throttle{
		limiters: map[string]*entry{}, o: o,
		overflow: rate.NewLimiter(rate.Limit(float64(o.PerMinute)/60), o.Burst*10),
	}
}

// Allow takes one request from name's bucket for ip.
func (t *Throttle) Allow(name, ip string) bool {
	key := name + "|" + ip
	now := time.Now()
	t.mu.Lock()
	e, ok := t.limiters[key]
	if !ok {
		if len(t.limiters) >= t.o.MaxKeys {
			t.evict(now)
		}
		if len(t.limiters) >= t.o.MaxKeys {
			t.mu.Unlock()
			return t.overflow.Allow()
		}
		e = &entry{lim: rate.NewLimiter(rate.Limit(float64(t.o.PerMinute)/60), t.o.Burst)}
		t.limiters[key] = e
	}
	e.seen = now
	t.mu.Unlock()
	return e.lim.AllowN(now, 1)
}

// evict drops buckets idle long enough to have refilled completely.
func (t *Throttle) evict(now time.Time) {
	full := time.Duration(float64(t.o.Burst) / (float64(t.o.PerMinute) / 60) * float64(time.Second))
	for k, e := range t.limiters {
		if now.Sub(e.seen) > full {
			delete(t.limiters, k)
		}
	}
}
