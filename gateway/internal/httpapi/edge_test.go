package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/gateway/internal/ratelimit"
	"github.com/rampart-go/rampart/shared/secevent"
)

// TestEdgeTokenCheck: protected routes need a valid token at the edge,
// with the shared middleware's answers: no token → bare Bearer challenge;
// any rejected token → invalid_token; one token.rejected event each with
// the verifier's reason.
func TestEdgeTokenCheck(t *testing.T) {
	g := newGateway(t)
	rejected := func(reason secevent.Reason) refusal { return refusal{401, secevent.TokenRejected, reason} }
	tests := []struct {
		name, auth string
		want       refusal
		challenge  string
	}{
		{"no token", "", rejected("missing"), `Bearer realm="rampart"`},
		{"not a Bearer credential", "Basic dXNlcjpwYXNz", rejected("malformed"), `Bearer realm="rampart", error="invalid_token"`},
		{"garbage", "Bearer not-a-jwt", rejected("malformed"), `Bearer realm="rampart", error="invalid_token"`},
		{"expired", "Bearer " + g.token(t, func(_, c map[string]any) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
			c["nbf"] = c["iat"]
		}), rejected("expired"), `Bearer realm="rampart", error="invalid_token"`},
		{"wrong audience", "Bearer " + g.token(t, func(_, c map[string]any) { c["aud"] = "another-api" }), rejected("audience"), ""},
		{"wrong issuer", "Bearer " + g.token(t, func(_, c map[string]any) { c["iss"] = "https://evil.example" }), rejected("issuer"), ""},
		{"an ID token replayed as an access token", "Bearer " + g.token(t, func(h, _ map[string]any) { h["typ"] = "JWT" }), rejected("type"), ""},
		{"unknown key", "Bearer " + g.token(t, func(h, _ map[string]any) { h["kid"] = "nope" }), rejected("unknown_key"), ""},
		{"bad signature", "Bearer " + tamper(g.token(t, nil)), rejected("signature"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.auth != "" {
				hdr["Authorization"] = tc.auth
			}
			resp := g.expectRefusal(t, tc.want, func() *http.Response { return g.get(t, "/api/v1/orders", hdr) })
			if tc.challenge != "" && resp.Header.Get("WWW-Authenticate") != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", resp.Header.Get("WWW-Authenticate"), tc.challenge)
			}
			select {
			case <-g.seen:
				t.Error("a request with a rejected token reached the service")
			default:
			}
		})
	}
}

// tamper flips one signature byte.
func tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 5
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// TestVerifiedTokenCacheHonoursRevocation: the second use of a token is a
// cache hit, the token is forwarded unchanged, and a revocation applies
// on the very next request even though the token is cached.
func TestVerifiedTokenCacheHonoursRevocation(t *testing.T) {
	g := newGateway(t)
	var jti string
	tok := g.token(t, func(_, c map[string]any) { jti = c["jti"].(string) })
	auth := map[string]string{"Authorization": "Bearer " + tok}
	for i := range 2 {
		if resp := g.get(t, "/api/v1/orders", auth); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		if got := (<-g.seen).Header.Get("Authorization"); got != "Bearer "+tok {
			t.Fatalf("the service got Authorization %q, want the original token", got)
		}
	}
	if n := g.handler.Auth.Len(); n != 1 {
		t.Fatalf("cache holds %d tokens, want 1", n)
	}
	g.revoked.revoke(jti)
	g.expectRefusal(t, refusal{401, secevent.TokenRejected, "revoked"}, func() *http.Response { return g.get(t, "/api/v1/orders", auth) })
}

// TestRateLimitBurstThen429: a burst within the budget passes with
// RateLimit headers; the next request is 429 with Retry-After, a problem
// body, one ratelimit.exceeded event naming the limit and its metric.
func TestRateLimitBurstThen429(t *testing.T) {
	g := newGateway(t) // login: 10/m, burst 3
	for i := range 3 {
		resp := g.get(t, "/login", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		if resp.Header.Get("RateLimit-Limit") != "3" || resp.Header.Get("RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Fatalf("request %d: RateLimit-Limit %q Remaining %q", i, resp.Header.Get("RateLimit-Limit"), resp.Header.Get("RateLimit-Remaining"))
		}
	}
	resp := g.expectRefusal(t, refusal{429, secevent.RateLimitExceeded, "login"}, func() *http.Response { return g.get(t, "/login", nil) })
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 6 {
		t.Errorf("Retry-After %q, want 1..6 seconds (one request per 6s)", resp.Header.Get("Retry-After"))
	}
	if resp.Header.Get("RateLimit-Remaining") != "0" || resp.Header.Get("RateLimit-Reset") == "" {
		t.Errorf("RateLimit-Remaining %q Reset %q", resp.Header.Get("RateLimit-Remaining"), resp.Header.Get("RateLimit-Reset"))
	}
	if v := metricValue(t, g.reg, "rampart_gateway_ratelimit_decisions_total", map[string]string{"limit": "login", "decision": "limited"}); v != 1 {
		t.Errorf("limited decisions %v, want 1", v)
	}
}

// TestForwardedForSpoofingDoesNotResetTheBudget: with no trusted proxies,
// X-Forwarded-For (and its kin) cannot move a client to a fresh bucket;
// from a trusted proxy, the right-most untrusted address is the client.
func TestForwardedForSpoofingDoesNotResetTheBudget(t *testing.T) {
	spoofs := []map[string]string{
		{"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2, 198.51.100.7"},
		{"X-Real-Ip": "203.0.113.3"}, {"Forwarded": "for=203.0.113.4"}, {"True-Client-Ip": "203.0.113.5"},
	}
	t.Run("untrusted peer", func(t *testing.T) {
		g := newGateway(t)
		for i := range 3 {
			if resp := g.get(t, "/login", spoofs[i]); resp.StatusCode != 200 {
				t.Fatalf("request %d: %d", i, resp.StatusCode)
			}
		}
		for _, s := range spoofs {
			g.expectRefusal(t, refusal{429, secevent.RateLimitExceeded, "login"}, func() *http.Response { return g.get(t, "/login", s) })
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		g := newGateway(t, withTrustedProxies("127.0.0.0/8"))
		// Two different clients behind the proxy: separate budgets.
		for i := range 3 {
			if resp := g.get(t, "/login", map[string]string{"X-Forwarded-For": "203.0.113.9"}); resp.StatusCode != 200 {
				t.Fatalf("client A request %d: %d", i, resp.StatusCode)
			}
		}
		if resp := g.get(t, "/login", map[string]string{"X-Forwarded-For": "203.0.113.10"}); resp.StatusCode != 200 {
			t.Fatalf("client B: %d", resp.StatusCode)
		}
		// A client prepending a fake hop is still itself (right-most rule).
		g.expectRefusal(t, refusal{429, secevent.RateLimitExceeded, "login"}, func() *http.Response {
			return g.get(t, "/login", map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
		})
		if got := (<-g.seen).Header.Get("X-Forwarded-For"); got != "203.0.113.9" {
			t.Errorf("upstream X-Forwarded-For %q, want the resolved client", got)
		}
	})
}

// TestAuthenticatedRequestsAreLimitedPerSubject: two tokens of one subject
// share a budget; another subject has its own.
func TestAuthenticatedRequestsAreLimitedPerSubject(t *testing.T) {
	lim, _ := ratelimit.ParseLimit("authenticated", "1/m:2")
	g := newGateway(t, func(d *Deps) { d.RateLimits.Authenticated = &lim })
	sub := func(s string) func(_, c map[string]any) { return func(_, c map[string]any) { c["sub"] = s } }
	a1, a2, b := g.token(t, sub("alice")), g.token(t, sub("alice")), g.token(t, sub("bob"))
	for _, tok := range []string{a1, a2} {
		if resp := g.get(t, "/api/v1/orders", map[string]string{"Authorization": "Bearer " + tok}); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	g.expectRefusal(t, refusal{429, secevent.RateLimitExceeded, "authenticated"}, func() *http.Response {
		return g.get(t, "/api/v1/orders", map[string]string{"Authorization": "Bearer " + a1})
	})
	if resp := g.get(t, "/api/v1/orders", map[string]string{"Authorization": "Bearer " + b}); resp.StatusCode != 200 {
		t.Fatalf("another subject: status %d", resp.StatusCode)
	}
}

// TestForgedTokensSpendTheAddressBudget: tokens the cache has not seen are
// paid for from the sender's anonymous budget before they are verified.
func TestForgedTokensSpendTheAddressBudget(t *testing.T) {
	lim, _ := ratelimit.ParseLimit("anonymous", "1/m:2")
	g := newGateway(t, func(d *Deps) { d.RateLimits.Anonymous = &lim })
	for range 2 {
		g.expectRefusal(t, refusal{401, secevent.TokenRejected, "signature"}, func() *http.Response {
			return g.get(t, "/api/v1/orders", map[string]string{"Authorization": "Bearer " + tamper(g.token(t, nil))})
		})
	}
	g.expectRefusal(t, refusal{429, secevent.RateLimitExceeded, "anonymous"}, func() *http.Response {
		return g.get(t, "/api/v1/orders", map[string]string{"Authorization": "Bearer " + tamper(g.token(t, nil))})
	})
}

// TestSecurityHeaders: every answer, proxied or refused, carries the
// security headers once; API responses get the API CSP; the token
// endpoint's responses are never stored.
func TestSecurityHeaders(t *testing.T) {
	g := newGateway(t)
	check := func(t *testing.T, resp *http.Response) {
		t.Helper()
		for k, v := range map[string]string{
			"Strict-Transport-Security": "max-age=63072000; includeSubDomains", "X-Content-Type-Options": "nosniff",
			"Referrer-Policy": "no-referrer", "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
		} {
			if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%s = %q, want exactly %q", k, got, v)
			}
		}
		if resp.Header.Get("X-Request-Id") == "" {
			t.Error("no X-Request-Id")
		}
	}
	t.Run("proxied", func(t *testing.T) { check(t, g.get(t, "/api/v1/catalog", nil)); g.drainSeen() })
	t.Run("refused", func(t *testing.T) { check(t, g.get(t, "/api/v1/orders", nil)) })
	t.Run("token endpoint", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, g.url+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp := g.do(t, req)
		check(t, resp)
		if got := resp.Header.Values("Cache-Control"); len(got) != 1 || got[0] != "no-store" {
			t.Errorf("Cache-Control %q on a token response, want no-store (the upstream said max-age)", got)
		}
		g.drainSeen()
	})
}

// TestCORS: only configured origins get CORS headers; a preflight from
// another origin, or for a method or header the route does not take, is
// refused with one event.
func TestCORS(t *testing.T) {
	g := newGateway(t, func(d *Deps) { d.CORSOrigins = []string{"https://app.example"} })
	preflight := func(origin, method, headers string) func() *http.Response {
		return func() *http.Response {
			req, _ := http.NewRequest(http.MethodOptions, g.url+"/api/v1/orders", nil)
			req.Header.Set("Origin", origin)
			req.Header.Set("Access-Control-Request-Method", method)
			if headers != "" {
				req.Header.Set("Access-Control-Request-Headers", headers)
			}
			return g.do(t, req)
		}
	}
	t.Run("allowed preflight", func(t *testing.T) {
		resp := g.expectRefusal(t, refusal{status: 204}, preflight("https://app.example", "POST", "authorization, content-type"))
		if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
			t.Errorf("preflight headers %v", resp.Header)
		}
	})
	for _, tc := range []struct{ name, origin, method, headers string }{
		{"another origin", "https://evil.example", "POST", ""},
		{"the null origin", "null", "POST", ""},
		{"a method the route does not take", "https://app.example", "DELETE", ""},
		{"a header outside the allowlist", "https://app.example", "POST", "x-user-id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := g.expectRefusal(t, refusal{403, secevent.RequestRejected, "bad_header"}, preflight(tc.origin, tc.method, tc.headers))
			if resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Error("a refused preflight carried Access-Control-Allow-Origin")
			}
		})
	}
	t.Run("simple request from an allowed origin", func(t *testing.T) {
		resp := g.get(t, "/api/v1/catalog", map[string]string{"Origin": "https://app.example"})
		if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || resp.Header.Get("Vary") != "Origin" {
			t.Errorf("headers %v", resp.Header)
		}
		g.drainSeen()
	})
	t.Run("simple request from another origin", func(t *testing.T) {
		resp := g.get(t, "/api/v1/catalog", map[string]string{"Origin": "https://evil.example"})
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("ACAO %q for a foreign origin", resp.Header.Get("Access-Control-Allow-Origin"))
		}
		g.drainSeen()
	})
}

// TestREDMetricsPerRoute: each request is observed under its route name.
func TestREDMetricsPerRoute(t *testing.T) {
	g := newGateway(t)
	g.get(t, "/api/v1/catalog", nil)
	g.drainSeen()
	g.get(t, "/api/v1/orders", nil)
	if v := metricValue(t, g.reg, "http_server_request_duration_seconds", map[string]string{"http_route": "catalog", "http_response_status_code": "200"}); v != 1 {
		t.Errorf("catalog 200 observations %v", v)
	}
	if v := metricValue(t, g.reg, "http_server_request_duration_seconds", map[string]string{"http_route": "orders", "http_response_status_code": "401"}); v != 1 {
		t.Errorf("orders 401 observations %v", v)
	}
}

// TestTokensWaitForTheDenyList: while the deny-list has not been loaded
// (the first moments after start-up, before /readyz turns 200), a valid
// token cannot be told from a revoked one: protected routes answer 503
// with Retry-After, without a token event and without reaching the
// service; public routes work. Once the list is loaded, the token passes.
func TestTokensWaitForTheDenyList(t *testing.T) {
	g := newGateway(t)
	g.revoked.loading.Store(true)
	auth := map[string]string{"Authorization": "Bearer " + g.token(t, nil)}
	resp := g.get(t, "/api/v1/orders", auth)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("before the deny-list is loaded: status %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if evs := g.events.all(); len(evs) != 0 {
		t.Fatalf("events %v, want none (the token was not refused)", evs)
	}
	select {
	case r := <-g.seen:
		t.Fatalf("request reached the service: %s %s", r.Method, r.URL)
	default:
	}
	if resp := g.get(t, "/api/v1/catalog", nil); resp.StatusCode != 200 {
		t.Fatalf("public route: status %d", resp.StatusCode)
	}
	g.drainSeen()
	g.revoked.loading.Store(false)
	if resp := g.get(t, "/api/v1/orders", auth); resp.StatusCode != 200 {
		t.Fatalf("after the deny-list is loaded: status %d", resp.StatusCode)
	}
}
