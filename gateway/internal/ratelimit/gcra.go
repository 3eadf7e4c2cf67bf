// Package ratelimit is the gateway's rate limiter: GCRA (the generic cell
// rate algorithm, a token bucket kept as one timestamp per key) in memory,
// or in Redis through one atomic Lua script so that every gateway replica
// draws on the same budget. When Redis cannot be reached the limiter falls
// back to its local state and says so in a metric: it never stops limiting
// and never stops serving.
package ratelimit

import (
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limit is one named budget: Burst requests at once, refilled at one per
// Interval.
type Limit struct {
	// Name is the metric label and the reason of ratelimit.exceeded
	// ([a-z][a-z0-9_]*).
	Name     string
	Interval time.Duration
	Burst    int
}

// ParseLimit reads "<n>/<unit>[:<burst>]": n requests per second, minute
// or hour ("s", "m", "h"), with a burst (default n, at least 1). "20/s:40"
// is 20 per second sustained, 40 at once.
func ParseLimit(name, s string) (Limit, error) {
	rate, burst, hasBurst := strings.Cut(strings.TrimSpace(s), ":")
	nStr, unit, ok := strings.Cut(rate, "/")
	if !ok {
		return Limit{}, fmt.Errorf("want <n>/<s|m|h>[:<burst>], got %q", s)
	}
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 1 || n > 1_000_000 {
		return Limit{}, fmt.Errorf("rate %q: want an integer from 1 to 1000000", nStr)
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return Limit{}, fmt.Errorf("unit %q: want s, m or h", unit)
	}
	b := n
	if hasBurst {
		if b, err = strconv.Atoi(burst); err != nil || b < 1 || b > 1_000_000 {
			return Limit{}, fmt.Errorf("burst %q: want an integer from 1 to 1000000", burst)
		}
	}
	return Limit{Name: name, Interval: per / time.Duration(n), Burst: b}, nil
}

// String is the ParseLimit form, for logs.
func (l Limit) String() string {
	return fmt.Sprintf("%s=%s/%d", l.Name, l.Interval, l.Burst)
}

// Decision is the outcome of one request against one limit, with what the
// RateLimit-* headers need.
type Decision struct {
	Allowed bool
	// Limit is the burst, Remaining what is left of it after this request.
	Limit, Remaining int
	// Reset is how long until the budget is whole again.
	Reset time.Duration
	// RetryAfter is how long a refused client must wait (0 when allowed).
	RetryAfter time.Duration
}

// gcra is the algorithm on a theoretical arrival time (TAT): the budget is
// whole when TAT <= now; a request moves TAT one interval on; it is refused
// when that would put TAT more than burst intervals ahead of now.
func gcra(l *Limit, tat, now int64) (d Decision, newTAT int64) {
	interval, burst := int64(l.Interval), int64(l.Burst)
	if tat < now {
		tat = now
	}
	newTAT = tat + interval
	allowAt := newTAT - burst*interval
	d.Limit = l.Burst
	if now < allowAt {
		d.RetryAfter = time.Duration(allowAt - now)
		d.Reset = time.Duration(tat - now)
		return d, tat
	}
	d.Allowed = true
	d.Remaining = int((now - allowAt) / interval)
	d.Reset = time.Duration(newTAT - now)
	return d, newTAT
}

// Local is the in-memory store: one TAT per (limit, key), in shards, with a
// bound on the number of keys. Keys are stored as 64-bit hashes (maphash,
// randomly seeded per process so they cannot be aimed at one shard), so an
// entry costs the same whatever the key's length.
//
// Memory stays bounded under a flood of distinct keys: a full shard first
// drops every entry whose budget is whole again (TAT <= now — exactly as
// good as no entry), and if none is, an eighth of the shard at random. The
// latter forgives some live debts; the alternative, refusing new keys,
// would let a flood of spoofed-looking clients lock out real ones.
type Local struct {
	seed   maphash.Seed
	shards []localShard
	perCap int
}

type localShard struct {
	mu sync.Mutex
	m  map[uint64]int64
	_  [40]byte // keep shards on separate cache lines
}

const localShards = 256

// NewLocal returns a store holding at most maxKeys keys (default 1<<18).
func NewLocal(maxKeys int) *Local {
	if maxKeys <= 0 {
		maxKeys = 1 << 18
	}
	l := &Local{seed: maphash.MakeSeed(), shards: make([]localShard, localShards), perCap: max(8, maxKeys/localShards)}
	for i := range l.shards {
		l.shards[i].m = make(map[uint64]int64)
	}
	return l
}

// Allow takes one request of key against l at now. It does not allocate.
func (s *Local) Allow(l *Limit, key string, now time.Time) Decision {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(l.Name)
	h.WriteByte(0)
	h.WriteString(key)
	k := h.Sum64()
	sh := &s.shards[k%localShards]
	n := now.UnixNano()
	sh.mu.Lock()
	tat, ok := sh.m[k]
	d, newTAT := gcra(l, tat, n)
	if d.Allowed {
		if !ok && len(sh.m) >= s.perCap {
			sh.evict(n)
		}
		sh.m[k] = newTAT
	}
	sh.mu.Unlock()
	return d
}

func (sh *localShard) evict(now int64) {
	removed := 0
	for k, tat := range sh.m {
		if tat <= now {
			delete(sh.m, k)
			removed++
		}
	}
	if removed > 0 {
		return
	}
	drop := max(1, len(sh.m)/8)
	for k := range sh.m {
		delete(sh.m, k)
		if drop--; drop == 0 {
			return
		}
	}
}

// Len returns the number of keys held (tests, metrics).
func (s *Local) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
