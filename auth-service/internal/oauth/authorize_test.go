package oauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestMalformedQueryIsRefused: a query string that does not parse — a
// semicolon separator, a bad escape — is refused, not parsed with the bad
// pairs silently dropped (url.URL.Query's behaviour). Dropping them let
// "state=a;b" arrive as no state at all, and hid a repeated parameter
// behind a malformed pair from the repeated-parameter rule.
func TestMalformedQueryIsRefused(t *testing.T) {
	f := newExchangeFixture(t)
	good := url.Values{
		"response_type": {"code"}, "client_id": {DemoClientID}, "redirect_uri": {"http://127.0.0.1:5000/callback"},
		"scope": {"openid"}, "state": {"s"}, "code_challenge_method": {"S256"}, "code_challenge": {strings.Repeat("a", 43)},
	}.Encode()
	get := func(target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		f.engine.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		return rec
	}
	if rec := get("/oauth2/authorize?" + good); rec.Code != http.StatusSeeOther {
		t.Fatalf("well-formed request: %d", rec.Code)
	}
	for name, target := range map[string]string{
		"authorize, semicolon in state":       "/oauth2/authorize?" + good + "&x=1;state=evil",
		"authorize, bad escape":               "/oauth2/authorize?" + good + "&nonce=%zz",
		"authorize, repeat behind a bad pair": "/oauth2/authorize?" + good + "&code_challenge=%zz;code_challenge=x",
		"login page, semicolon":               "/login?request=abc;x=y",
		"logout, bad escape":                  "/oauth2/logout?post_logout_redirect_uri=%zz",
	} {
		t.Run(name, func(t *testing.T) {
			if rec := get(target); rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" {
				t.Fatalf("%d Location=%q, want 400 and no redirect", rec.Code, rec.Header().Get("Location"))
			}
		})
	}
}
