package oauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rampart-go/rampart/shared/secevent"
)

// TestServicesHaveTheirOwnTokenBudget: order-service exchanges a token for
// every customer who orders, all from one address. Its requests, proven by
// its certificate, draw on a per-service budget, not the per-address one
// meant for a browser; past that budget it is refused like anyone else,
// with one rate_limit.exceeded naming it. An anonymous caller at the same
// address still has only the small per-address budget.
func TestServicesHaveTheirOwnTokenBudget(t *testing.T) {
	f := newExchangeFixtureWith(t, "sqlite://"+t.TempDir()+"/auth.db", Config{
		Throttle:        ThrottleOptions{PerMinute: 1, Burst: 2},
		ServiceThrottle: ThrottleOptions{PerMinute: 1, Burst: 5},
	})
	subject, _ := f.userToken(t, "")
	for i := range 5 {
		if st, out := f.exchange(t, subject, "user-service", "users:read"); st != http.StatusOK {
			t.Fatalf("exchange %d within the service budget: %d %v", i+1, st, out)
		}
	}
	f.events.Take()
	st, out := f.exchange(t, subject, "user-service", "users:read")
	if st != http.StatusTooManyRequests || out["error"] != "slow_down" {
		t.Fatalf("past the service budget: %d %v", st, out)
	}
	evs := f.events.Take()
	onlyEvent(t, evs, secevent.RateLimitExceeded, "token")
	if evs[0].ClientID != "order-service" {
		t.Errorf("event names %q, not the service", evs[0].ClientID)
	}

	// The same address without a certificate: the per-address budget (2),
	// untouched by the service's requests.
	for i := range 3 {
		req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		f.engine.ServeHTTP(rec, req)
		limited := rec.Code == http.StatusTooManyRequests
		if limited != (i == 2) {
			t.Fatalf("anonymous request %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
}
