package tokens

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// JWKSOptions configure NewJWKS.
type JWKSOptions struct {
	// URL is the auth service's JWKS endpoint (required). Redirects are not
	// followed: keys come from this URL or not at all.
	URL string
	// Client fetches it (required); services pass an mTLS client, so only
	// the real auth service can serve them keys.
	Client *http.Client
	// RefreshInterval is the background refresh period of Run (default 5m).
	RefreshInterval time.Duration
	// MinRefreshInterval bounds refreshes triggered by unknown key ids
	// (default 10s), so a flood of forged kids costs one fetch, not many.
	MinRefreshInterval time.Duration
	// Algorithms a key may be for (default ES256 and RS256: the set also
	// carries the ID-token keys; the verifier's own allowlist decides what
	// a token may use). A key without alg is taken as ES256 (EC) or RS256
	// (RSA).
	Algorithms []string
	// Logger receives refresh failures (default: discarded).
	Logger *slog.Logger
	// Now is the clock for the refresh rate limit (default time.Now).
	Now func() time.Time
}

// MaxJWKSBytes bounds what a broken or compromised JWKS endpoint can make
// us read.
const MaxJWKSBytes = 1 << 20

// refreshTimeout bounds one miss-triggered fetch. It is detached from the
// request that noticed the unknown kid, so it needs its own limit.
const refreshTimeout = 10 * time.Second

// JWKS is a KeySet fetched from the auth service and cached. When a fetch
// fails the last good set stays in use: auth-service downtime must not break
// verification of tokens it already issued. It is safe for concurrent use.
type JWKS struct {
	o      JWKSOptions
	client *http.Client
	log    *slog.Logger
	// keys is swapped whole on every good fetch, so lookups take no lock.
	keys atomic.Pointer[map[string]crypto.PublicKey]
	// fetchMu serialises fetches so a slow old fetch cannot overwrite the
	// result of a newer one.
	fetchMu sync.Mutex
	// mu guards lastMiss, the start of the last refresh an unknown kid
	// triggered.
	mu       sync.Mutex
	lastMiss time.Time
	group    singleflight.Group
}

// NewJWKS returns an empty cache; call Refresh or Run to fill it. It returns
// an error when URL or Client is missing or Algorithms names an alg we do
// not support.
func NewJWKS(o JWKSOptions) (*JWKS, error) {
	if o.URL == "" || o.Client == nil {
		return nil, errors.New("tokens: JWKS URL and client are required")
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 5 * time.Minute
	}
	if o.MinRefreshInterval <= 0 {
		o.MinRefreshInterval = 10 * time.Second
	}
	if len(o.Algorithms) == 0 {
		o.Algorithms = []string{"ES256", "RS256"}
	}
	for _, a := range o.Algorithms {
		if _, ok := supported(a); !ok {
			return nil, fmt.Errorf("tokens: JWKS algorithm %q is not allowed", a)
		}
	}
	o.Algorithms = slices.Clone(o.Algorithms)
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A shallow copy shares the caller's transport (and its mTLS config)
	// but lets us refuse redirects without touching the caller's client.
	client := *o.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &JWKS{o: o, client: &client, log: log}, nil
}

// Key returns the key with kid, or an error wrapping ErrUnknownKey. An
// unknown kid triggers a refresh — at most one per MinRefreshInterval,
// shared by every concurrent caller — so a newly rotated key is picked up
// on first sight, while a flood of made-up kids costs one fetch.
func (j *JWKS) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok := j.lookup(kid); ok {
		return k, nil
	}
	j.refreshOnMiss(ctx)
	if k, ok := j.lookup(kid); ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
}

// refreshOnMiss runs (or joins) the miss-triggered refresh. The rate limit
// is checked inside the singleflight call, so a caller that arrives just
// after a refresh finished finds it "not due" instead of starting another.
func (j *JWKS) refreshOnMiss(ctx context.Context) {
	ch := j.group.DoChan("refresh", func() (any, error) {
		now := j.o.Now()
		j.mu.Lock()
		due := j.lastMiss.IsZero() || now.Sub(j.lastMiss) >= j.o.MinRefreshInterval
		if due {
			j.lastMiss = now
		}
		j.mu.Unlock()
		if !due {
			return nil, nil
		}
		// Detach from the caller: one request's cancellation must not fail
		// the refresh every waiter shares.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
		defer cancel()
		if err := j.Refresh(rctx); err != nil {
			j.log.WarnContext(ctx, "JWKS refresh for an unknown kid failed; keeping the cached keys", slog.Any("error", err))
		}
		return nil, nil
	})
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func (j *JWKS) lookup(kid string) (crypto.PublicKey, bool) {
	m := j.keys.Load()
	if m == nil {
		return nil, false
	}
	k, ok := (*m)[kid]
	return k, ok
}

// Ready reports whether at least one fetch succeeded (for /readyz: without
// keys every request would be refused).
func (j *JWKS) Ready() bool { return j.keys.Load() != nil }

// Refresh fetches the set now, whatever the rate limit. On any error —
// transport, a status other than 200, a body over MaxJWKSBytes, a document
// that does not parse or holds no usable key — the cached set is kept and
// the error returned.
func (j *JWKS) Refresh(ctx context.Context) error {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	keys, err := j.fetch(ctx)
	if err != nil {
		return err
	}
	j.keys.Store(&keys)
	j.log.DebugContext(ctx, "JWKS refreshed", slog.Int("keys", len(keys)))
	return nil
}

func (j *JWKS) fetch(ctx context.Context) (map[string]crypto.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.o.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	if len(body) > MaxJWKSBytes {
		return nil, fmt.Errorf("read JWKS: larger than %d bytes", MaxJWKSBytes)
	}
	return ParseJWKS(body, j.o.Algorithms)
}

// ParseJWKS returns the usable signing keys of a JWKS document, by kid:
// use "sig" or unset, an allowed alg (ES256 for EC and RS256 for RSA when
// unset), EC P-256 or RSA of at least 2048 bits, public only, and a kid
// that no other key in the set shares (an ambiguous kid is dropped). Other
// keys, including ones go-jose cannot parse, are skipped so one odd key
// cannot hide the rest. It returns an error when the document is not a
// JWKS or has no usable key.
func ParseJWKS(body []byte, algs []string) (map[string]crypto.PublicKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	keys := make(map[string]crypto.PublicKey, len(doc.Keys))
	seen := make(map[string]int, len(doc.Keys))
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || k.KeyID == "" {
			continue
		}
		if seen[k.KeyID]++; seen[k.KeyID] > 1 {
			delete(keys, k.KeyID)
			continue
		}
		if pub, ok := usableKey(k, algs); ok {
			keys[k.KeyID] = pub
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("parse JWKS: no usable signing key")
	}
	return keys, nil
}

func usableKey(k jose.JSONWebKey, algs []string) (crypto.PublicKey, bool) {
	if (k.Use != "" && k.Use != "sig") || !k.IsPublic() {
		return nil, false
	}
	alg := k.Algorithm
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, false
		}
		if alg == "" {
			alg = "ES256"
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return nil, false
		}
		if alg == "" {
			alg = "RS256"
		}
	default:
		return nil, false
	}
	if !slices.Contains(algs, alg) {
		return nil, false
	}
	// The key must also suit its declared alg (an EC key labelled RS256 is
	// a broken set, not a key to use).
	if a, ok := supported(alg); !ok || !a.fits(k.Key) {
		return nil, false
	}
	return k.Key, true
}

// Run keeps the cache fresh until ctx ends: it retries quickly (backing off
// to 5s) until the first fetch succeeds, then refreshes every
// RefreshInterval, retrying after at most 30s when a refresh fails.
func (j *JWKS) Run(ctx context.Context) {
	wait := 100 * time.Millisecond
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := j.o.RefreshInterval
		if err := j.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			j.log.WarnContext(ctx, "JWKS refresh failed; keeping the cached keys", slog.Any("error", err))
			if !j.Ready() {
				next = wait
				wait = min(wait*2, 5*time.Second)
			} else {
				next = min(next, 30*time.Second)
			}
		}
		t.Reset(next)
	}
}
