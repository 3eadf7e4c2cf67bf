package edgeauth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-go/rampart/shared/tokens"
	"github.com/rampart-go/rampart/shared/tokens/tokenstest"
)

type countingVerifier struct {
	v     *tokens.Verifier
	calls atomic.Int64
}

func (c *countingVerifier) Verify(ctx context.Context, raw string) (*tokens.Claims, error) {
	c.calls.Add(1)
	return c.v.Verify(ctx, raw)
}

type denyList struct {
	mu   sync.Mutex
	jtis map[string]bool
}

func (d *denyList) Revoked(_ context.Context, jti, _ string, _ time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.jtis[jti]
}

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time { return time.Unix(0, c.ns.Load()) }

func setup(t testing.TB, max int) (*Checker, *countingVerifier, *tokenstest.Issuer, *denyList, *clock) {
	iss := tokenstest.NewIssuer(t, "https://gw.test", "rampart-api")
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	iss.Now = clk.now
	deny := &denyList{jtis: map[string]bool{}}
	v, err := tokens.NewVerifier(tokens.Options{Issuer: iss.IssuerURL, Audience: iss.Audience, Keys: iss.Keys(), Revocations: deny, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	cv := &countingVerifier{v: v}
	return NewChecker(Options{Verifier: cv, Revocations: deny, MaxEntries: max, Now: clk.now}), cv, iss, deny, clk
}

// TestCacheHitSkipsVerification: the second check of a token is a hit.
func TestCacheHitSkipsVerification(t *testing.T) {
	c, cv, iss, _, _ := setup(t, 0)
	tok := iss.Sign(t, nil)
	for i, want := range []Result{Miss, Hit, Hit} {
		claims, res, err := c.Check(context.Background(), tok)
		if err != nil || res != want || claims == nil {
			t.Fatalf("check %d: %v %v %v", i, claims, res, err)
		}
	}
	if cv.calls.Load() != 1 {
		t.Fatalf("%d verifications, want 1", cv.calls.Load())
	}
}

// TestCacheNeverOutlivesExp: at exp the entry is not used; the verifier
// decides again (and, past its leeway, refuses).
func TestCacheNeverOutlivesExp(t *testing.T) {
	c, cv, iss, _, clk := setup(t, 0)
	tok := iss.Sign(t, nil) // 10 minutes
	if _, _, err := c.Check(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	clk.ns.Add(int64(10*time.Minute + time.Minute))
	_, res, err := c.Check(context.Background(), tok)
	if res != Miss || tokens.ReasonOf(err) != tokens.ReasonExpired || cv.calls.Load() != 2 {
		t.Fatalf("after exp: %v %v (%d verifications)", res, err, cv.calls.Load())
	}
}

// TestFarFutureTokensAreVerifiedAgain: a token claiming a day of life
// (only a signing key can mint one) is cached for at most 15 minutes, so
// removing its key from the JWKS stops it then, not tomorrow.
func TestFarFutureTokensAreVerifiedAgain(t *testing.T) {
	c, cv, iss, _, clk := setup(t, 0)
	tok := iss.Sign(t, func(_, cl map[string]any) { cl["exp"] = clk.now().Add(24 * time.Hour).Unix() })
	if _, res, err := c.Check(context.Background(), tok); err != nil || res != Miss {
		t.Fatal(res, err)
	}
	clk.ns.Add(int64(14 * time.Minute))
	if _, res, err := c.Check(context.Background(), tok); err != nil || res != Hit {
		t.Fatalf("after 14 minutes: %v %v, want a hit", res, err)
	}
	clk.ns.Add(int64(2 * time.Minute))
	if _, res, err := c.Check(context.Background(), tok); err != nil || res != Miss || cv.calls.Load() != 2 {
		t.Fatalf("after 16 minutes: %v %v (%d verifications), want verified again", res, err, cv.calls.Load())
	}
}

// TestCacheNeverOutlivesARevocation: a cached token revoked afterwards is
// refused on the next check and evicted.
func TestCacheNeverOutlivesARevocation(t *testing.T) {
	c, _, iss, deny, _ := setup(t, 0)
	var jti string
	tok := iss.Sign(t, func(_, cl map[string]any) { jti = cl["jti"].(string) })
	if _, _, err := c.Check(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	deny.mu.Lock()
	deny.jtis[jti] = true
	deny.mu.Unlock()
	_, res, err := c.Check(context.Background(), tok)
	if res != Hit || tokens.ReasonOf(err) != tokens.ReasonRevoked || c.Len() != 0 {
		t.Fatalf("revoked: %v %v, %d cached", res, err, c.Len())
	}
}

// TestRejectedTokensAreNotCached: a forged token costs a verification
// every time, and is refused every time.
func TestRejectedTokensAreNotCached(t *testing.T) {
	c, cv, iss, _, _ := setup(t, 0)
	tok := iss.Sign(t, func(_, cl map[string]any) { cl["aud"] = "other" })
	for range 3 {
		if _, _, err := c.Check(context.Background(), tok); tokens.ReasonOf(err) != tokens.ReasonAudience {
			t.Fatalf("err %v", err)
		}
	}
	if cv.calls.Load() != 3 || c.Len() != 0 {
		t.Fatalf("%d verifications, %d cached", cv.calls.Load(), c.Len())
	}
}

// TestCacheIsBounded: many distinct tokens never hold more than the bound.
func TestCacheIsBounded(t *testing.T) {
	c, _, iss, _, _ := setup(t, 128)
	for range 1000 {
		if _, _, err := c.Check(context.Background(), iss.Sign(t, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Len(); n > 128 {
		t.Fatalf("%d entries, bound 128", n)
	}
}

// TestCacheHitDoesNotAllocate: the hit path is a hash and a map read.
func TestCacheHitDoesNotAllocate(t *testing.T) {
	c, _, iss, _, _ := setup(t, 0)
	tok := iss.Sign(t, nil)
	ctx := context.Background()
	if _, _, err := c.Check(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _, _, _ = c.Cached(ctx, tok) }); n != 0 {
		t.Fatalf("%v allocations per hit", n)
	}
}

func BenchmarkCacheHit(b *testing.B) {
	c, _, iss, _, _ := setup(b, 0)
	tok := iss.Sign(b, nil)
	ctx := context.Background()
	if _, _, err := c.Check(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, hit, _ := c.Cached(ctx, tok); !hit {
			b.Fatal("miss")
		}
	}
}

func BenchmarkCacheHitParallel(b *testing.B) {
	c, _, iss, _, _ := setup(b, 0)
	tok := iss.Sign(b, nil)
	ctx := context.Background()
	if _, _, err := c.Check(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _, _, _ = c.Cached(ctx, tok)
		}
	})
}

// BenchmarkVerifyMiss is the cost the cache saves: a full ES256 check.
func BenchmarkVerifyMiss(b *testing.B) {
	c, _, iss, _, _ := setup(b, -1)
	tok := iss.Sign(b, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Check(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// loadingList is a deny-list that has not loaded its records yet, as
// revocation.List is between start-up and the end of its first KV read.
type loadingList struct {
	denyList
	ready atomic.Bool
}

func (l *loadingList) Ready() bool { return l.ready.Load() }

// TestNothingPassesBeforeTheDenyListIsLoaded: until the deny-list has
// been loaded, a revoked token looks like any valid one, so no token is
// accepted (or cached): the check fails with ErrNotReady. Once the list
// is loaded, tokens pass again.
func TestNothingPassesBeforeTheDenyListIsLoaded(t *testing.T) {
	iss := tokenstest.NewIssuer(t, "https://gw.test", "rampart-api")
	list := &loadingList{denyList: denyList{jtis: map[string]bool{}}}
	v, err := tokens.NewVerifier(tokens.Options{Issuer: iss.IssuerURL, Audience: iss.Audience, Keys: iss.Keys(), Revocations: list})
	if err != nil {
		t.Fatal(err)
	}
	c := NewChecker(Options{Verifier: v, Revocations: list})
	tok := iss.Sign(t, nil)
	if _, _, err := c.Check(context.Background(), tok); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before the deny-list is loaded: err %v, want ErrNotReady", err)
	}
	if c.Len() != 0 {
		t.Fatalf("cache holds %d tokens before the deny-list is loaded", c.Len())
	}
	list.ready.Store(true)
	if _, _, err := c.Check(context.Background(), tok); err != nil {
		t.Fatalf("after it is loaded: %v", err)
	}
}
