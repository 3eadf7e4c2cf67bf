package userclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-go/rampart/shared/breaker"
)

// The real exchange and the real internal route are exercised end to end
// in deploy/e2e (orders_test.go). Here TLS stand-ins for the two services
// let each failure mode be produced on demand: the cache, the retry after
// a 401, the mapping of answers to errors, the deadline and the breaker.

type fakes struct {
	exchanges atomic.Int32
	lookups   atomic.Int32
	// userStatus, when non-zero, is what the user service answers (with
	// Retry-After: 7).
	userStatus atomic.Int32
	// exchangeErr, when set, is the OAuth error the token endpoint returns.
	exchangeErr atomic.Value
	// exchangeStatus, when non-zero, is what the token endpoint answers
	// (with Retry-After: 7).
	exchangeStatus atomic.Int32
	delay          atomic.Int64
	// answerID, when set, is the id the user service puts in its answer.
	answerID atomic.Value

	mu       sync.Mutex
	lastForm url.Values
	lastAuth string
}

func start(t *testing.T, f *fakes, o Options) (*Client, *prometheus.Registry) {
	t.Helper()
	auth := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		f.mu.Lock()
		f.lastForm = r.PostForm
		f.mu.Unlock()
		n := f.exchanges.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if s := f.exchangeStatus.Load(); s != 0 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(int(s))
			return
		}
		if e, _ := f.exchangeErr.Load().(string); e != "" {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": e})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": "exchanged-" + strconv.Itoa(int(n)), "token_type": "Bearer", "expires_in": 300,
			"issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
		})
	}))
	t.Cleanup(auth.Close)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /internal/v1/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.lookups.Add(1)
		f.mu.Lock()
		f.lastAuth = r.Header.Get("Authorization")
		f.mu.Unlock()
		if d := f.delay.Load(); d > 0 {
			select {
			case <-time.After(time.Duration(d)):
			case <-r.Context().Done():
				return
			}
		}
		if s := f.userStatus.Load(); s != 0 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(int(s))
			return
		}
		id := r.PathValue("id")
		if a, _ := f.answerID.Load().(string); a != "" {
			id = a
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "address": "1 Main St", "email": "a@example.com"})
	})
	users := httptest.NewTLSServer(mux)
	t.Cleanup(users.Close)

	reg := prometheus.NewRegistry()
	o.Users, o.Auth = users.Client(), auth.Client()
	o.UserURL, _ = url.Parse(users.URL)
	o.TokenURL, _ = url.Parse(auth.URL + "/oauth2/token")
	o.ClientID, o.Registerer = "order-service", reg
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, reg
}

const alice = "0196f0a8-1c3e-7d2a-9b4f-2f1e3d4c5b6a"

func TestExchangeOnceThenCache(t *testing.T) {
	f := &fakes{}
	now := time.Unix(1_800_000_000, 0)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	c, reg := start(t, f, Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	ctx := context.Background()
	for range 3 {
		cust, err := c.Customer(ctx, "user-token", alice)
		if err != nil || cust.ID != alice || cust.Address != "1 Main St" {
			t.Fatalf("%+v %v", cust, err)
		}
	}
	if f.exchanges.Load() != 1 || f.lookups.Load() != 3 {
		t.Fatalf("%d exchanges, %d lookups", f.exchanges.Load(), f.lookups.Load())
	}
	f.mu.Lock()
	form, auth := f.lastForm, f.lastAuth
	f.mu.Unlock()
	want := map[string]string{
		"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": "user-token",
		"subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"audience":           "user-service", "scope": "users:read", "client_id": "order-service",
	}
	for k, v := range want {
		if form.Get(k) != v {
			t.Errorf("exchange %s = %q, want %q", k, form.Get(k), v)
		}
	}
	if auth != "Bearer exchanged-1" {
		t.Errorf("lookup sent %q", auth)
	}
	// Another user token is another cache entry.
	if _, err := c.Customer(ctx, "other-token", alice); err != nil || f.exchanges.Load() != 2 {
		t.Fatalf("second token: %v, %d exchanges", err, f.exchanges.Load())
	}
	// Shortly before expiry (300 s, margin 30 s) the token is replaced.
	clock.Add(int64(271 * time.Second))
	if _, err := c.Customer(ctx, "user-token", alice); err != nil || f.exchanges.Load() != 3 {
		t.Fatalf("near expiry: %v, %d exchanges", err, f.exchanges.Load())
	}
	if hits := testutil.ToFloat64(c.metrics.cache.WithLabelValues("hit")); hits != 2 {
		t.Errorf("%v cache hits", hits)
	}
	if ok := testutil.ToFloat64(c.metrics.calls.WithLabelValues("ok")); ok != 5 {
		t.Errorf("%v ok lookups", ok)
	}
	if n, err := testutil.GatherAndCount(reg, "rampart_order_user_lookups_total", "rampart_order_circuit_state"); err != nil || n != 6 {
		t.Errorf("registered series %d: %v", n, err)
	}
}

// TestExpiredTokensAreSwept: users' tokens rotate, so the cache would fill
// with dead entries up to maxCached; every sweepEvery inserts the expired
// ones go, and the cache holds only what is still usable.
func TestExpiredTokensAreSwept(t *testing.T) {
	f := &fakes{}
	var clock atomic.Int64
	clock.Store(time.Unix(1_800_000_000, 0).UnixNano())
	c, _ := start(t, f, Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	ctx := context.Background()
	// A first generation of tokens, all expired (300 s) before the second.
	for i := range sweepEvery / 2 {
		if _, err := c.token(ctx, [32]byte{0, byte(i), byte(i >> 8)}, "gen1"); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(int64(301 * time.Second))
	for i := range sweepEvery {
		if _, err := c.token(ctx, [32]byte{1, byte(i), byte(i >> 8)}, "gen2"); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	n := len(c.cache)
	var dead int
	for _, e := range c.cache {
		if !time.Unix(0, clock.Load()).Before(e.until) {
			dead++
		}
	}
	c.mu.Unlock()
	if dead != 0 || n > sweepEvery {
		t.Fatalf("after a sweep: %d entries, %d expired; want at most %d, none expired", n, dead, sweepEvery)
	}
}

// TestRevokedCachedTokenIsExchangedAgain: user-service answers 401 (the
// exchanged token was revoked with its family); the client exchanges once
// more and tries again, once.
func TestRevokedCachedTokenIsExchangedAgain(t *testing.T) {
	f := &fakes{}
	c, _ := start(t, f, Options{})
	ctx := context.Background()
	if _, err := c.Customer(ctx, "t", alice); err != nil {
		t.Fatal(err)
	}
	f.userStatus.Store(http.StatusUnauthorized)
	_, err := c.Customer(ctx, "t", alice)
	if !errors.Is(err, ErrUnavailable) || f.exchanges.Load() != 2 || f.lookups.Load() != 3 {
		t.Fatalf("persistent 401: %v, %d exchanges, %d lookups", err, f.exchanges.Load(), f.lookups.Load())
	}
}

func TestAnswersMapToErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("no profile", func(t *testing.T) {
		f := &fakes{}
		c, _ := start(t, f, Options{Breaker: breaker.Options{Threshold: 1}})
		f.userStatus.Store(http.StatusNotFound)
		for range 3 {
			if _, err := c.Customer(ctx, "t", alice); !errors.Is(err, ErrNoCustomer) {
				t.Fatal(err)
			}
		}
		if c.breaker.State() != breaker.Closed {
			t.Error("a 404 is an answer, not a failure: the breaker opened")
		}
	})
	t.Run("revoked user token", func(t *testing.T) {
		f := &fakes{}
		c, _ := start(t, f, Options{})
		f.exchangeErr.Store("invalid_grant")
		if _, err := c.Customer(ctx, "t", alice); !errors.Is(err, ErrRefused) || f.lookups.Load() != 0 {
			t.Fatalf("%v, %d lookups", err, f.lookups.Load())
		}
	})
	t.Run("exchange misconfigured", func(t *testing.T) {
		f := &fakes{}
		c, _ := start(t, f, Options{})
		f.exchangeErr.Store("unauthorized_client")
		if _, err := c.Customer(ctx, "t", alice); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
	})
	// A 429 from either service is a service pacing us, not a failing
	// one: many of them (one user spending auth-service's exchange budget
	// with distinct tokens) must not open the circuit for every customer.
	for _, who := range []string{"auth-service", "user-service"} {
		t.Run(who+" throttling", func(t *testing.T) {
			f := &fakes{}
			c, _ := start(t, f, Options{Breaker: breaker.Options{Threshold: 1}})
			if who == "auth-service" {
				f.exchangeStatus.Store(http.StatusTooManyRequests)
			} else {
				f.userStatus.Store(http.StatusTooManyRequests)
			}
			for i := range 3 {
				_, err := c.Customer(ctx, "t"+strconv.Itoa(i), alice)
				if !errors.Is(err, ErrUnavailable) || RetryAfter(err) != 7*time.Second {
					t.Fatalf("call %d: %v (retry after %s), want ErrUnavailable after 7s", i, err, RetryAfter(err))
				}
			}
			if c.breaker.State() != breaker.Closed || f.exchanges.Load() != 3 {
				t.Fatalf("breaker %s after three 429s, %d exchanges: a 429 opened the circuit", c.breaker.State(), f.exchanges.Load())
			}
			if n := testutil.ToFloat64(c.metrics.calls.WithLabelValues("throttled")); n != 3 {
				t.Errorf("calls{outcome=throttled} = %v, want 3", n)
			}
		})
	}
	t.Run("user-service failing", func(t *testing.T) {
		f := &fakes{}
		c, _ := start(t, f, Options{})
		f.userStatus.Store(http.StatusInternalServerError)
		if _, err := c.Customer(ctx, "t", alice); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
	})
}

// TestDeadlineAndBreaker: a hanging user-service costs each caller at most
// the timeout; after Threshold failures the breaker answers at once with a
// retry hint, and a probe after OpenFor closes it again.
func TestDeadlineAndBreaker(t *testing.T) {
	f := &fakes{}
	c, _ := start(t, f, Options{Timeout: 100 * time.Millisecond, Breaker: breaker.Options{Threshold: 2, OpenFor: 300 * time.Millisecond}})
	ctx := context.Background()
	f.delay.Store(int64(5 * time.Second))
	for range 2 {
		t0 := time.Now()
		_, err := c.Customer(ctx, "t", alice)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > 3*time.Second {
			t.Fatalf("a hanging call took %v with a 100ms timeout", d)
		}
	}
	lookups := f.lookups.Load()
	_, err := c.Customer(ctx, "t", alice)
	if !errors.Is(err, ErrUnavailable) || f.lookups.Load() != lookups {
		t.Fatalf("open breaker still called user-service: %v", err)
	}
	if ra := RetryAfter(err); ra <= 0 || ra > 300*time.Millisecond {
		t.Errorf("retry after %v", ra)
	}
	if v := testutil.ToFloat64(c.metrics.state); v != float64(breaker.Open) {
		t.Errorf("state gauge %v", v)
	}
	if v := testutil.ToFloat64(c.metrics.calls.WithLabelValues("circuit_open")); v != 1 {
		t.Errorf("circuit_open %v", v)
	}
	f.delay.Store(0)
	time.Sleep(350 * time.Millisecond)
	if _, err := c.Customer(ctx, "t", alice); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if c.breaker.State() != breaker.Closed || testutil.ToFloat64(c.metrics.state) != 0 {
		t.Errorf("after a good probe: %s", c.breaker.State())
	}
}

// TestMismatchedProfileIsNotTrusted: an answer about another user (a
// confused or compromised upstream) is not used.
func TestMismatchedProfileIsNotTrusted(t *testing.T) {
	f := &fakes{}
	c, _ := start(t, f, Options{})
	f.answerID.Store("0196f0a8-0000-7000-8000-000000000000")
	if _, err := c.Customer(context.Background(), "t", alice); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("profile of someone else accepted: %v", err)
	}
}
