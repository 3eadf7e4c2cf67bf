package tokens_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/rampart-go/rampart/shared/tokens"
	"github.com/rampart-go/rampart/shared/tokens/tokenstest"
)

// jwksServer serves an issuer's JWKS over TLS, counts fetches, and can be
// switched into a failure mode mid-test.
type jwksServer struct {
	*httptest.Server
	iss     *tokenstest.Issuer
	fetches atomic.Int64
	mu      sync.Mutex
	fail    http.HandlerFunc // nil: serve the JWKS
}

func newJWKSServer(t testing.TB, iss *tokenstest.Issuer) *jwksServer {
	t.Helper()
	s := &jwksServer{iss: iss}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		fail := s.fail
		s.mu.Unlock()
		if fail != nil {
			fail(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(iss.JWKSJSON())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) failWith(h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = h
}

// clock is a settable clock for the refresh rate limit.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(fixedNow().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newJWKS(t testing.TB, srv *jwksServer, c *clock) *tokens.JWKS {
	t.Helper()
	j, err := tokens.NewJWKS(tokens.JWKSOptions{URL: srv.URL + "/.well-known/jwks.json", Client: srv.Client(), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJWKSFetchesOverTLSAndVerifies(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	srv := newJWKSServer(t, iss)
	j := newJWKS(t, srv, newClock())
	if j.Ready() {
		t.Fatal("ready before any fetch")
	}
	if err := j.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !j.Ready() {
		t.Fatal("not ready after a good fetch")
	}
	v := newVerifier(t, j, nil, nil)
	if _, err := v.Verify(context.Background(), iss.Sign(t, nil)); err != nil {
		t.Fatalf("token refused with the fetched keys: %v", err)
	}
}

func TestJWKSRefusesAnUntrustedServer(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, newIssuer(t))
	// A client that does not trust the test CA: the fetch must fail the
	// TLS handshake, proving keys are never taken from an unverified peer.
	j, err := tokens.NewJWKS(tokens.JWKSOptions{URL: srv.URL, Client: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Refresh(context.Background()); err == nil {
		t.Fatal("fetched keys from a server with an untrusted certificate")
	}
	if j.Ready() {
		t.Fatal("ready without keys")
	}
}

func TestJWKSUnknownKidBurstTriggersOneRefresh(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	srv := newJWKSServer(t, iss)
	clk := newClock()
	j := newJWKS(t, srv, clk)
	if err := j.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	burst := func() {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 100 {
			wg.Go(func() {
				<-start
				// Half the burst uses one made-up kid, half a different
				// one each: neither kind may cause more than one fetch.
				kid := "forged"
				if i%2 == 1 {
					kid = "forged-" + strings.Repeat("x", i)
				}
				if _, err := j.Key(context.Background(), kid); !errors.Is(err, tokens.ErrUnknownKey) {
					t.Errorf("Key(%q) error = %v, want ErrUnknownKey", kid, err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	burst()
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches after the first burst = %d, want 2 (initial + one refresh)", n)
	}
	clk.Advance(9 * time.Second)
	burst()
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches within MinRefreshInterval = %d, want still 2", n)
	}
	clk.Advance(time.Second)
	burst()
	if n := srv.fetches.Load(); n != 3 {
		t.Fatalf("fetches after MinRefreshInterval = %d, want 3", n)
	}
	// Known kids never fetch.
	if _, err := j.Key(context.Background(), iss.KID); err != nil {
		t.Fatal(err)
	}
	if n := srv.fetches.Load(); n != 3 {
		t.Fatalf("a known kid caused a fetch (%d)", n)
	}
}

func TestJWKSPicksUpARotatedKeyOnFirstSight(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	srv := newJWKSServer(t, iss)
	j := newJWKS(t, srv, newClock())
	if err := j.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, j, nil, nil)
	old := iss.Sign(t, nil)
	iss.Rotate(t)
	fresh := iss.Sign(t, nil)
	if _, err := v.Verify(context.Background(), fresh); err != nil {
		t.Fatalf("token with the rotated kid refused: %v", err)
	}
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatalf("token with the previous kid refused after rotation: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestJWKSKeepsTheLastGoodKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fail http.HandlerFunc
	}{
		{name: "server error", fail: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "down", http.StatusInternalServerError)
		}},
		{name: "oversized body", fail: func(w http.ResponseWriter, _ *http.Request) {
			// A valid JWKS followed by padding, so only the size check can
			// refuse it.
			_, _ = w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("A", tokens.MaxJWKSBytes) + `"}`))
		}},
		{name: "malformed JSON", fail: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[{"kty":"EC",`))
		}},
		{name: "not a JWKS", fail: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`["keys"]`))
		}},
		{name: "empty key set", fail: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[]}`))
		}},
		{name: "only unusable keys", fail: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0","alg":"HS256"}]}`))
		}},
		{name: "redirect elsewhere", fail: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://evil.example/jwks.json", http.StatusFound)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			iss := newIssuer(t)
			srv := newJWKSServer(t, iss)
			clk := newClock()
			j := newJWKS(t, srv, clk)
			if err := j.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			srv.failWith(tt.fail)
			if err := j.Refresh(context.Background()); err == nil {
				t.Fatal("Refresh reported success")
			}
			// A miss-triggered refresh fails the same way.
			clk.Advance(time.Minute)
			if _, err := j.Key(context.Background(), "other"); !errors.Is(err, tokens.ErrUnknownKey) {
				t.Fatalf("Key(other) = %v", err)
			}
			if n := srv.fetches.Load(); n != 3 {
				t.Fatalf("fetches = %d, want 3", n)
			}
			if !j.Ready() {
				t.Fatal("no longer ready")
			}
			v := newVerifier(t, j, nil, nil)
			if _, err := v.Verify(context.Background(), iss.Sign(t, nil)); err != nil {
				t.Fatalf("cached key lost: %v", err)
			}
		})
	}
}

func TestJWKSRunRefreshesUntilCancelled(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	srv := newJWKSServer(t, iss)
	j, err := tokens.NewJWKS(tokens.JWKSOptions{URL: srv.URL, Client: srv.Client(), RefreshInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); j.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for srv.fetches.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d background fetches", srv.fetches.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !j.Ready() {
		t.Fatal("not ready after background fetches")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestNewJWKSRefusesBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    tokens.JWKSOptions
	}{
		{name: "no URL", o: tokens.JWKSOptions{Client: http.DefaultClient}},
		{name: "no client", o: tokens.JWKSOptions{URL: "https://auth.test/jwks"}},
		{name: "HMAC algorithm", o: tokens.JWKSOptions{URL: "https://auth.test/jwks", Client: http.DefaultClient, Algorithms: []string{"HS256"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tokens.NewJWKS(tt.o); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// jwkJSON is one key as JWKS JSON, with edit applied to its members.
func jwkJSON(t testing.TB, key any, kid, alg string, edit func(map[string]any)) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	if edit == nil {
		return b
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseJWKSKeepsOnlyUsableSigningKeys(t *testing.T) {
	t.Parallel()
	ec := func(c elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rsaKey := func(bits int) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	good, p384, rsa2048, rsa1024 := ec(elliptic.P256()), ec(elliptic.P384()), rsaKey(2048), rsaKey(1024)
	goodKey := jwkJSON(t, &good.PublicKey, "good", "ES256", nil)

	tests := []struct {
		name string
		key  json.RawMessage // the key under test, kid "k" (unless the row is about kid)
		keep bool
		// ambiguous: the key repeats the good key's kid, so the set has no
		// usable key left.
		ambiguous bool
	}{
		{name: "EC P-256 ES256 signing key is kept", key: jwkJSON(t, &p256(t).PublicKey, "k", "ES256", nil), keep: true},
		{name: "EC P-256 key without alg or use is kept", key: jwkJSON(t, &p256(t).PublicKey, "k", "", func(m map[string]any) { delete(m, "use") }), keep: true},
		{name: "RSA 2048 RS256 key is kept", key: jwkJSON(t, &rsa2048.PublicKey, "k", "RS256", nil), keep: true},
		{name: "RSA 1024 key is dropped", key: jwkJSON(t, &rsa1024.PublicKey, "k", "RS256", nil)},
		{name: "EC P-384 key is dropped", key: jwkJSON(t, &p384.PublicKey, "k", "ES384", nil)},
		{name: "encryption key is dropped", key: jwkJSON(t, &p256(t).PublicKey, "k", "ES256", func(m map[string]any) { m["use"] = "enc" })},
		{name: "key for an alg outside the allowlist is dropped", key: jwkJSON(t, &rsa2048.PublicKey, "k", "PS256", nil)},
		{name: "EC key labelled RS256 is dropped", key: jwkJSON(t, &p256(t).PublicKey, "k", "RS256", nil)},
		{name: "symmetric key is dropped", key: json.RawMessage(`{"kty":"oct","kid":"k","k":"c2VjcmV0","alg":"HS256"}`)},
		{name: "private key is dropped", key: jwkJSON(t, p256(t), "k", "ES256", nil)},
		{name: "key without kid is dropped", key: jwkJSON(t, &p256(t).PublicKey, "", "ES256", nil)},
		{name: "EC point off the curve is dropped", key: jwkJSON(t, &p256(t).PublicKey, "k", "ES256", func(m map[string]any) {
			m["x"] = m["y"]
		})},
		{name: "unknown key type is dropped", key: json.RawMessage(`{"kty":"PQC","kid":"k","alg":"ML-DSA-44"}`)},
		{name: "kid shared with the good key drops both", key: jwkJSON(t, &p256(t).PublicKey, "good", "ES256", nil), ambiguous: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc, err := json.Marshal(map[string]any{"keys": []json.RawMessage{goodKey, tt.key}})
			if err != nil {
				t.Fatal(err)
			}
			keys, err := tokens.ParseJWKS(doc, []string{"ES256", "RS256"})
			if tt.ambiguous {
				if err == nil {
					t.Fatalf("ambiguous kid kept: %v", keys)
				}
				return
			}
			if err != nil {
				t.Fatalf("one odd key hid the good one: %v", err)
			}
			if _, ok := keys["good"]; !ok {
				t.Fatal("good key dropped")
			}
			if _, ok := keys["k"]; ok != tt.keep {
				t.Fatalf("kept = %v, want %v", ok, tt.keep)
			}
		})
	}
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
