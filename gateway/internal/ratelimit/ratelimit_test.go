package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

func mustLimit(t testing.TB, name, s string) *Limit {
	t.Helper()
	l, err := ParseLimit(name, s)
	if err != nil {
		t.Fatal(err)
	}
	return &l
}

// TestParseLimit: the configuration form.
func TestParseLimit(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]Limit{
		"20/s:40": {Interval: 50 * time.Millisecond, Burst: 40},
		"10/m":    {Interval: 6 * time.Second, Burst: 10},
		"1/h:1":   {Interval: time.Hour, Burst: 1},
	} {
		got, err := ParseLimit("x", s)
		if err != nil || got.Interval != want.Interval || got.Burst != want.Burst {
			t.Errorf("%s: %+v %v", s, got, err)
		}
	}
	for _, s := range []string{"", "10", "10/d", "0/s", "-1/s", "10/s:0", "10/s:x", "x/s", "2000000/s"} {
		if _, err := ParseLimit("x", s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestGCRABurstThenRefill: burst requests pass at once, the next is
// refused with the wait until one interval frees up, and after that wait
// exactly one more passes.
func TestGCRABurstThenRefill(t *testing.T) {
	t.Parallel()
	s := NewLocal(0)
	l := mustLimit(t, "x", "10/s:3") // one per 100ms
	now := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		d := s.Allow(l, "k", now)
		if !d.Allowed || d.Remaining != 2-i || d.Limit != 3 {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	d := s.Allow(l, "k", now)
	if d.Allowed || d.RetryAfter != 100*time.Millisecond || d.Remaining != 0 {
		t.Fatalf("4th: %+v", d)
	}
	if d := s.Allow(l, "other", now); !d.Allowed {
		t.Fatal("another key shares the budget")
	}
	now = now.Add(100 * time.Millisecond)
	if d := s.Allow(l, "k", now); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after the wait: %+v", d)
	}
	if d := s.Allow(l, "k", now); d.Allowed {
		t.Fatal("two passed after one interval")
	}
	// The budget is whole again after burst intervals.
	now = now.Add(300 * time.Millisecond)
	if d := s.Allow(l, "k", now); !d.Allowed || d.Remaining != 2 || d.Reset != 100*time.Millisecond {
		t.Fatalf("after refill: %+v", d)
	}
}

// TestLocalMemoryIsBounded: a million distinct keys (a spoofing flood)
// never hold more than the bound.
func TestLocalMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a million keys")
	}
	s := NewLocal(1 << 14)
	l := mustLimit(t, "x", "1/h:5")
	now := time.Unix(1_800_000_000, 0)
	for i := range 1_000_000 {
		s.Allow(l, strconv.Itoa(i), now)
	}
	if n := s.Len(); n > 1<<14 {
		t.Fatalf("%d keys held, bound %d", n, 1<<14)
	}
}

// TestLocalAllowDoesNotAllocate: the hot path is free.
func TestLocalAllowDoesNotAllocate(t *testing.T) {
	s := NewLocal(0)
	l := mustLimit(t, "x", "1000000/s:1000000")
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() { s.Allow(l, "192.0.2.1", now) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func BenchmarkLocalAllow(b *testing.B) {
	s := NewLocal(0)
	l := mustLimit(b, "x", "1000000/s:1000000")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s.Allow(l, "192.0.2.1", now)
	}
}

func BenchmarkLimiterAllowParallel(b *testing.B) {
	l := mustLimit(b, "x", "1000000/s:1000000")
	lim, err := New(Options{Limits: []*Limit{l}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			lim.Allow(ctx, l, keys[i&1023])
			i++
		}
	})
}

func redisAddr(t testing.TB) string {
	addr := os.Getenv("RAMPART_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("RAMPART_TEST_REDIS_ADDR not set")
	}
	return addr
}

func randomPrefix(t testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "rampart:test:" + hex.EncodeToString(b) + ":"
}

// TestTwoLimitersShareOneRedisBudget: two gateway replicas on one Redis
// enforce a single budget between them.
func TestTwoLimitersShareOneRedisBudget(t *testing.T) {
	addr := redisAddr(t)
	prefix := randomPrefix(t)
	l := mustLimit(t, "login", "1/h:4")
	newLimiter := func() *Limiter {
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = c.Close() })
		lim, err := New(Options{Limits: []*Limit{l}, Redis: NewRedis(c, prefix), Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		return lim
	}
	a, b := newLimiter(), newLimiter()
	ctx := context.Background()
	allowed := 0
	for i := range 8 {
		lim := a
		if i%2 == 1 {
			lim = b
		}
		d := lim.Allow(ctx, l, "203.0.113.1")
		if d.Allowed {
			allowed++
		} else if d.RetryAfter <= 0 || d.RetryAfter > time.Hour {
			t.Fatalf("refusal with RetryAfter %v", d.RetryAfter)
		}
	}
	if allowed != 4 {
		t.Fatalf("%d of 8 allowed across two replicas, want 4 (one shared budget)", allowed)
	}
	if v := testutil.ToFloat64(a.decisions.WithLabelValues("login", "redis", "limited")) + testutil.ToFloat64(b.decisions.WithLabelValues("login", "redis", "limited")); v != 4 {
		t.Fatalf("redis-limited decisions %v, want 4", v)
	}
	if d := a.Allow(ctx, l, "203.0.113.2"); !d.Allowed || d.Remaining != 3 {
		t.Fatalf("another key: %+v", d)
	}
}

// TestRedisDownFallsBackToLocalLimits: with Redis unreachable the limiter
// still limits, on local state, and says so in its metrics.
func TestRedisDownFallsBackToLocalLimits(t *testing.T) {
	// A closed port: listen, note the address, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	reg := prometheus.NewRegistry()
	l := mustLimit(t, "login", "1/h:2")
	lim, err := New(Options{Limits: []*Limit{l}, Redis: NewRedis(c, "rampart:test:"), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got := []bool{}
	for range 3 {
		got = append(got, lim.Allow(ctx, l, "k").Allowed)
	}
	if got[0] != true || got[1] != true || got[2] != false {
		t.Fatalf("decisions %v, want the local budget of 2 enforced", got)
	}
	if v := testutil.ToFloat64(lim.redisUp); v != 0 {
		t.Errorf("rampart_gateway_ratelimit_redis_up %v, want 0", v)
	}
	if v := testutil.ToFloat64(lim.fallback); v != 3 {
		t.Errorf("rampart_gateway_ratelimit_fallback_total %v, want 3", v)
	}
	if v := testutil.ToFloat64(lim.decisions.WithLabelValues("login", "local", "limited")); v != 1 {
		t.Errorf("local limited decisions %v", v)
	}
}

// TestRedisRecoveryIsNoticed: after the retry pause the limiter goes back
// to Redis and the gauge returns to 1.
func TestRedisRecoveryIsNoticed(t *testing.T) {
	addr := redisAddr(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	l := mustLimit(t, "login", "1/h:2")
	now := time.Now()
	clock := func() time.Time { return now }
	lim, err := New(Options{Limits: []*Limit{l}, Redis: NewRedis(c, randomPrefix(t)), Registerer: prometheus.NewRegistry(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	// Pretend an outage just happened.
	lim.downTo.Store(now.Add(time.Second).UnixNano())
	lim.redisUp.Set(0)
	lim.Allow(context.Background(), l, "k")
	if testutil.ToFloat64(lim.redisUp) != 0 {
		t.Fatal("Redis retried before the pause")
	}
	now = now.Add(2 * time.Second)
	lim.Allow(context.Background(), l, "k")
	if testutil.ToFloat64(lim.redisUp) != 1 {
		t.Fatal("Redis not back in use after the pause")
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	addr := redisAddr(b)
	c := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { _ = c.Close() })
	l := mustLimit(b, "x", "1000000/s:1000000")
	r := NewRedis(c, randomPrefix(b))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Allow(ctx, l, "k"); err != nil {
			b.Fatal(err)
		}
	}
}
