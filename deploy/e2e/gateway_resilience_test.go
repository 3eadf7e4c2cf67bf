package e2e

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/rampart-go/rampart/deploy/stack"
)

// userToken signs the demo USER in through the gateway and returns an
// access token carrying users:read, so user-service answers its own
// profile (200, or 404 before one exists) rather than 403.
func (e *env) userToken(t testing.TB) string {
	t.Helper()
	user := e.Credentials.Accounts["user"]
	b := e.browser(t)
	verifier, state := oauth2.GenerateVerifier(), randomString(t)
	u := e.authURL(t, verifier, state, callback, url.Values{"scope": {"openid users:read"}})
	code := e.codeFrom(t, e.login(t, b, u, user.Email, user.Password), state)
	st, errc, body := e.redeem(t, code, verifier)
	if st != http.StatusOK {
		t.Fatalf("redeem → %d %s", st, errc)
	}
	return body["access_token"].(string)
}

// profileStatus is GET /api/v1/users/me through the gateway.
func (e *env) profileStatus(t testing.TB, token string) int {
	t.Helper()
	return e.gatewayStatus(t, token).StatusCode
}

// TestGatewayResilienceAuthServiceDown: with the auth service stopped,
// tokens it issued before still verify — at the gateway and again at
// user-service — because both hold the JWKS they fetched. One token was
// seen by the gateway before (its verified-token cache), the other is
// verified for the first time while the auth service is down (a full
// signature check against the cached JWKS). The auth service's own routes
// fail fast with a 5xx, and work again once it is back.
func TestGatewayResilienceAuthServiceDown(t *testing.T) {
	e := start(t)
	seen, unseen := e.userToken(t), e.userToken(t)
	okStatus := func(st int) bool { return st == http.StatusOK || st == http.StatusNotFound }
	if st := e.profileStatus(t, seen); !okStatus(st) {
		t.Fatalf("profile with a fresh token → %d", st)
	}

	if err := e.StopService(stack.Auth); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"cached at the gateway": seen, "first seen with auth down": unseen} {
		if st := e.profileStatus(t, tok); !okStatus(st) {
			t.Errorf("token %s, auth-service stopped → %d, want 200/404 (verified by gateway and user-service)", name, st)
		}
	}
	// The auth service's own routes fail, quickly, with a server error.
	began := time.Now()
	resp, _ := get(t, e.public, e.Endpoints.Gateway+"/.well-known/openid-configuration", nil)
	if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("discovery with auth-service stopped → %d, want 502/503", resp.StatusCode)
	}
	t.Logf("discovery with auth-service stopped → %d in %v", resp.StatusCode, time.Since(began))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.StartService(ctx, stack.Auth); err != nil {
		t.Fatalf("restart auth-service: %v", err)
	}
	waitFor(t, 20*time.Second, "discovery through the gateway to work again", func() bool {
		resp, _ := get(t, e.public, e.Endpoints.Gateway+"/.well-known/openid-configuration", nil)
		return resp.StatusCode == http.StatusOK
	})
	if st := e.profileStatus(t, e.userToken(t)); !okStatus(st) {
		t.Errorf("a token issued after the restart → %d", st)
	}
}

// TestGatewayResilienceUpstreamKilled: order-service stops. The first
// requests to its route fail with 502 (connection refused, one retry);
// after RAMPART_BREAKER_THRESHOLD of them the circuit opens and the gateway
// answers 503 with Retry-After at once, without trying the upstream (the
// latency is logged and only loosely bounded). The circuit-state gauge
// reads open. When order-service is back, the next probe closes the
// circuit and the route answers 200 again.
func TestGatewayResilienceUpstreamKilled(t *testing.T) {
	e := start(t)
	catalog := e.Endpoints.Gateway + "/api/v1/catalog"
	if resp, _ := get(t, e.public, catalog, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("catalog → %d", resp.StatusCode)
	}
	circuit := func() float64 {
		return e.metric(t, stack.Gateway, "rampart_gateway_circuit_state", `upstream="order-service"`)
	}
	if c := circuit(); c != 0 {
		t.Fatalf("circuit state %v before the failure, want 0 (closed)", c)
	}

	if err := e.StopService(stack.Order); err != nil {
		t.Fatal(err)
	}
	var failed []int
	var fast []time.Duration
	for i := 0; i < 40; i++ {
		began := time.Now()
		resp, _ := get(t, e.public, catalog, nil)
		d := time.Since(began)
		switch resp.StatusCode {
		case http.StatusBadGateway:
			failed = append(failed, resp.StatusCode)
		case http.StatusServiceUnavailable:
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || ra < 1 {
				t.Errorf("503 with Retry-After %q", resp.Header.Get("Retry-After"))
			}
			fast = append(fast, d)
		default:
			t.Fatalf("catalog with order-service stopped → %d", resp.StatusCode)
		}
	}
	if len(failed) == 0 || len(failed) > 5 {
		t.Errorf("%d upstream failures before the circuit opened, want 1..5 (the threshold)", len(failed))
	}
	if len(fast) == 0 {
		t.Fatal("the circuit never opened")
	}
	slices.Sort(fast)
	t.Logf("circuit open after %d failures; %d answers 503: p50 %v, max %v", len(failed), len(fast), percentile(fast, 0.5), fast[len(fast)-1])
	if p50 := percentile(fast, 0.5); p50 > 250*time.Millisecond {
		t.Errorf("503 with the circuit open took %v (p50), want fast", p50)
	}
	if c := circuit(); c != 2 {
		t.Errorf("circuit state %v with order-service stopped, want 2 (open)", c)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.StartService(ctx, stack.Order); err != nil {
		t.Fatalf("restart order-service: %v", err)
	}
	// The circuit lets a probe through after RAMPART_BREAKER_OPEN_FOR (5s).
	waitFor(t, 20*time.Second, "the catalog to answer 200 again", func() bool {
		resp, _ := get(t, e.public, catalog, nil)
		return resp.StatusCode == http.StatusOK
	})
	if c := circuit(); c != 0 {
		t.Errorf("circuit state %v after recovery, want 0 (closed)", c)
	}
}
