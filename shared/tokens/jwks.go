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
	// URL is the auth service's JWKS endpoint.
	URL string
	// Client fetches it; services pass an mTLS client, so only the real
	// auth service can serve them keys.
	Client *http.Client
	// RefreshInterval is the background refresh period (default 5m).
	RefreshInterval time.Duration
	// MinRefreshInterval bounds refreshes triggered by unknown key ids
	// (default 10s), so a flood of forged kids costs one fetch, not many.
	MinRefreshInterval time.Duration
	// Algorithms accepted for keys (default ES256 and RS256: the set also
	// carries ID-token keys; the verifier's own allowlist decides what a
	// token may use).
	Algorithms []string
	Logger     *slog.Logger
	Now        func() time.Time
}

// maxJWKSBytes bounds what a (compromised or broken) JWKS endpoint can make
// us read.
const maxJWKSBytes = 1 << 20

// JWKS is a KeySet fetched from the auth service and cached. When a fetch
// fails the last good set stays in use: auth-service downtime must not
// break verification of tokens it already issued.
type JWKS struct {
	o       JWKSOptions
	log     *slog.Logger
	keys    atomic.Pointer[map[string]crypto.PublicKey]
	mu      sync.Mutex
	lastTry time.Time
	group   singleflight.Group
}

// NewJWKS returns an empty cache; call Refresh or Run to fill it.
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
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &JWKS{o: o, log: log}, nil
}

// Key returns the key with kid. An unknown kid triggers one refresh — at
// most once per MinRefreshInterval, shared by concurrent callers — so a
// newly rotated key is picked up on first sight.
func (j *JWKS) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok := j.lookup(kid); ok {
		return k, nil
	}
	j.mu.Lock()
	due := j.o.Now().Sub(j.lastTry) >= j.o.MinRefreshInterval
	j.mu.Unlock()
	if due {
		_, _, _ = j.group.Do("refresh", func() (any, error) {
			// Detach from the caller: one request's cancellation must not
			// fail the refresh every waiter shares.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return nil, j.Refresh(rctx)
		})
		if k, ok := j.lookup(kid); ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
}

func (j *JWKS) lookup(kid string) (crypto.PublicKey, bool) {
	m := j.keys.Load()
	if m == nil {
		return nil, false
	}
	k, ok := (*m)[kid]
	return k, ok
}

// Ready reports whether at least one fetch succeeded.
func (j *JWKS) Ready() bool { return j.keys.Load() != nil }

// Refresh fetches the set now. On error the cached set is kept.
func (j *JWKS) Refresh(ctx context.Context) error {
	j.mu.Lock()
	j.lastTry = j.o.Now()
	j.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.o.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := j.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxJWKSBytes))
		return fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("read JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return errors.New("JWKS larger than 1 MiB")
	}
	keys, err := ParseJWKS(body, j.o.Algorithms)
	if err != nil {
		return err
	}
	j.keys.Store(&keys)
	return nil
}

// ParseJWKS returns the usable signing keys of a JWKS document: use "sig"
// or unset, an allowed algorithm (inferred from the key type when absent),
// EC P-256 or RSA of at least 2048 bits, and a kid. Anything else is
// skipped; a set with no usable key is an error.
func ParseJWKS(body []byte, algs []string) (map[string]crypto.PublicKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	keys := make(map[string]crypto.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		if k.KeyID == "" || (k.Use != "" && k.Use != "sig") || !k.IsPublic() {
			continue
		}
		alg := k.Algorithm
		switch pub := k.Key.(type) {
		case *ecdsa.PublicKey:
			if pub.Curve != elliptic.P256() {
				continue
			}
			if alg == "" {
				alg = "ES256"
			}
		case *rsa.PublicKey:
			if pub.N.BitLen() < 2048 {
				continue
			}
			if alg == "" {
				alg = "RS256"
			}
		default:
			continue
		}
		if !slices.Contains(algs, alg) {
			continue
		}
		keys[k.KeyID] = k.Key
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no usable signing key")
	}
	return keys, nil
}

// Run keeps the cache fresh until ctx ends: it retries quickly (with
// back-off to 5s) until the first fetch succeeds, then refreshes every
// RefreshInterval.
func (j *JWKS) Run(ctx context.Context) {
	wait := 100 * time.Millisecond
	for {
		err := j.Refresh(ctx)
		next := j.o.RefreshInterval
		if err != nil {
			j.log.Warn("JWKS refresh failed; keeping the cached keys", slog.Any("error", err))
			if !j.Ready() {
				next = wait
				wait = min(wait*2, 5*time.Second)
			} else {
				next = min(next, 30*time.Second)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}
