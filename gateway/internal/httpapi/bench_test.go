package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rampart-go/rampart/gateway/internal/accesslog"
	"github.com/rampart-go/rampart/gateway/internal/ratelimit"
)

// BenchmarkHandlerWithToken is the whole front handler on a protected
// route with a valid (cached) token — request id, hygiene, routing, token
// cache, per-subject rate limit, header stripping, metrics, access log to a
// discarding handler — in front of an in-process upstream, so the figure is
// the gateway's own cost per request.
func BenchmarkHandlerWithToken(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	g := newGateway(b, func(d *Deps) {
		d.Upstreams = map[string]http.Handler{"auth-service": ok, "user-service": ok, "order-service": ok}
		d.AccessLog = accesslog.New(accesslog.Options{Out: io.Discard, Service: "gateway"})
		// A budget the benchmark cannot exhaust: every request is allowed
		// and takes the full path.
		lim, _ := ratelimit.ParseLimit("authenticated", "1000000/s:1000000")
		d.RateLimits.Authenticated = &lim
	})
	tok := "Bearer " + g.token(b, nil)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/orders", nil)
	req.RemoteAddr = "192.0.2.1:40000"
	req.Header.Set("Authorization", tok)
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "application/json")
	w := httptest.NewRecorder()
	g.handler.ServeHTTP(w, req)
	if w.Code != 200 {
		b.Fatalf("status %d: %s", w.Code, w.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := req.Clone(req.Context())
		w := httptest.NewRecorder()
		g.handler.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}
