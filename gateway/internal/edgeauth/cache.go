// Package edgeauth is the gateway's token check: the shared verifier behind
// a bounded cache of verified tokens, so that a client repeating its token
// costs a hash and a map lookup instead of an ES256 verification.
package edgeauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
	"unsafe"

	"github.com/rampart-go/rampart/shared/tokens"
)

// Verifier is the shared token verifier's method set.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*tokens.Claims, error)
}

// Checker verifies access tokens through a cache.
//
// Safety of the cache: an entry is keyed by SHA-256 of the whole token, so
// only the very same bytes that were verified can hit it; it expires at the
// token's exp (without the verifier's leeway), so it never outlives the
// token; and every hit asks the revocation deny-list again (two map reads),
// so a revocation takes effect on the next request, not when the entry
// ages out. Only successfully verified tokens are cached: a forged token
// always goes to the verifier and is refused (and counted) every time.
// An entry also lives at most maxEntryLife, so that a key taken out of the
// JWKS (a compromise) stops a far-future token it signed within that time,
// not at that token's exp.
type Checker struct {
	v      Verifier
	rev    tokens.Revocations
	ready  func() bool
	now    func() time.Time
	shards [cacheShards]shard
	perCap int
}

const cacheShards = 64

// maxEntryLife is the longest access-token lifetime auth-service issues
// (CONTRACT: 10 minutes, at most 15), so the tokens it mints are cached
// until their exp as before; only a token claiming a longer life is
// verified again after this long.
const maxEntryLife = 15 * time.Minute

type shard struct {
	mu sync.RWMutex
	m  map[Key]entry
}

type entry struct {
	claims *tokens.Claims
	exp    int64 // unix nanoseconds
}

// Options configure NewChecker.
type Options struct {
	Verifier Verifier
	// Revocations is consulted on every cache hit; it should be the same
	// deny-list the verifier uses. Nil means the cache trusts the verifier
	// alone (tests only). If it has a Ready method (revocation.List does),
	// no token passes until Ready reports the list loaded.
	Revocations tokens.Revocations
	// MaxEntries bounds the cache (default 100 000, about 30 MB of claims
	// at most). 0 keeps the default; a negative value disables caching.
	MaxEntries int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// NewChecker returns a Checker.
func NewChecker(o Options) *Checker {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = 100_000
	}
	c := &Checker{v: o.Verifier, rev: o.Revocations, now: o.Now}
	if r, ok := o.Revocations.(interface{ Ready() bool }); ok {
		c.ready = r.Ready
	}
	if o.MaxEntries > 0 {
		c.perCap = max(1, o.MaxEntries/cacheShards)
	}
	for i := range c.shards {
		c.shards[i].m = make(map[Key]entry)
	}
	return c
}

// Result says whether a check was answered from the cache.
type Result uint8

// Check results.
const (
	Miss Result = iota
	Hit
)

// Key identifies a token in the cache: SHA-256 of its bytes.
type Key [32]byte

// Check returns the verified claims of raw, or the verifier's error (use
// tokens.ReasonOf for its reason): Cached, then VerifyAndStore on a miss.
func (c *Checker) Check(ctx context.Context, raw string) (*tokens.Claims, Result, error) {
	k, claims, hit, err := c.Cached(ctx, raw)
	if hit {
		return claims, Hit, err
	}
	claims, err = c.VerifyAndStore(ctx, k, raw)
	return claims, Miss, err
}

// Cached looks raw up. On a hit it returns the claims, or — when the token
// has been revoked since it was cached — a revoked error (and evicts it).
// On a miss the caller decides whether to spend a verification on it
// (VerifyAndStore with the returned key). It does not allocate.
func (c *Checker) Cached(ctx context.Context, raw string) (k Key, claims *tokens.Claims, hit bool, err error) {
	if c.perCap == 0 {
		return k, nil, false, nil
	}
	k = sha256.Sum256(bytesOf(raw))
	s := &c.shards[k[0]%cacheShards]
	now := c.now().UnixNano()
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || now >= e.exp {
		return k, nil, false, nil
	}
	cl := e.claims
	if c.rev == nil || !c.rev.Revoked(ctx, cl.ID, cl.Subject, cl.IssuedAt) {
		return k, cl, true, nil
	}
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
	return k, nil, true, errRevoked
}

// VerifyAndStore verifies raw and caches it under k (from Cached) until
// its exp.
func (c *Checker) VerifyAndStore(ctx context.Context, k Key, raw string) (*tokens.Claims, error) {
	// The listener serves before the deny-list's first load from its KV
	// bucket has finished (readiness only keeps a load balancer away); a
	// list not loaded yet denies nothing, so a revoked token would pass
	// and be cached. Fail closed instead. Only this path needs the check:
	// nothing is cached before the list is loaded, and it never unloads.
	if c.ready != nil && !c.ready() {
		return nil, ErrNotReady
	}
	claims, err := c.v.Verify(ctx, raw)
	if err != nil || c.perCap == 0 {
		return claims, err
	}
	s := &c.shards[k[0]%cacheShards]
	now := c.now().UnixNano()
	exp := min(claims.ExpiresAt.UnixNano(), now+int64(maxEntryLife))
	if exp <= now {
		return claims, nil // within the verifier's leeway: valid, not worth caching
	}
	s.mu.Lock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.perCap {
		s.evict(now)
	}
	s.m[k] = entry{claims: claims, exp: exp}
	s.mu.Unlock()
	return claims, nil
}

// evict makes room in a full shard: first every expired entry goes; if
// none had expired, an arbitrary one (Go's map iteration order is
// randomised). Losing a live entry only costs one more verification.
func (s *shard) evict(now int64) {
	removed := false
	for k, e := range s.m {
		if e.exp <= now {
			delete(s.m, k)
			removed = true
		}
	}
	if removed {
		return
	}
	for k := range s.m {
		delete(s.m, k)
		return
	}
}

// Len returns the number of cached tokens (metrics, tests).
func (c *Checker) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// ErrNotReady is returned while the deny-list has not been loaded yet:
// the gateway cannot tell a revoked token from a valid one, so the
// request is answered 503 (retry shortly), not 401 (the token is fine).
var ErrNotReady = errors.New("edgeauth: revocation list not loaded yet")

// errRevoked is what the verifier returns for a revoked token; the cache
// answers the same so callers see one vocabulary.
var errRevoked = &tokens.Error{Reason: tokens.ReasonRevoked}

// bytesOf views s as bytes without copying it. Converting a whole token
// ([]byte(raw)) would allocate on every request; Sum256 only reads its
// input and does not keep it, so sharing the string's memory is safe.
func bytesOf(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s)) //nolint:gosec // G103: read-only view, see above
}
