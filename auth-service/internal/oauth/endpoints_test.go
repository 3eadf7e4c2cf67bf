package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/tokens"
)

// post sends form to path, over mTLS as order-service when mtls is set.
func (f *exchangeFixture) post(t *testing.T, path string, form url.Values, mtls bool) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mtls {
		req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{f.cert}}
	}
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

// redeem redeems a fresh code for scope as the demo client and returns
// the token response.
func (f *exchangeFixture) redeem(t *testing.T, scope string) map[string]any {
	t.Helper()
	code, verifier := f.authCode(t, scope)
	st, out := f.token(t, url.Values{
		"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
	}, false)
	if st != http.StatusOK {
		t.Fatalf("code redemption: %d %v", st, out)
	}
	return out
}

// TestRevocationHintIsOnlyAHint: RFC 7009 §2.1 — when the token is not
// found under token_type_hint the server MUST search its other token
// types. A refresh token sent with hint access_token is revoked (its
// family with it), not answered 200 and left alive.
func TestRevocationHintIsOnlyAHint(t *testing.T) {
	f := newRevocationFixture(t)
	for _, hint := range []string{"access_token", "refresh_token", "", "something_else"} {
		t.Run("refresh token, hint "+hint, func(t *testing.T) {
			rt := f.redeem(t, "openid offline_access")["refresh_token"].(string)
			form := url.Values{"client_id": {DemoClientID}, "token": {rt}}
			if hint != "" {
				form.Set("token_type_hint", hint)
			}
			if st, out := f.post(t, "/oauth2/revoke", form, false); st != http.StatusOK {
				t.Fatalf("revoke: %d %v", st, out)
			}
			st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {rt}}, false)
			if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
				t.Fatalf("refresh after revocation: %d %v, want 400 invalid_grant", st, out)
			}
			f.events.take()
		})
	}
}

// TestIntrospectionHintIsOnlyAHint: RFC 7662 §2.1 has the same rule as RFC
// 7009: a live access token sent with hint refresh_token is active.
func TestIntrospectionHintIsOnlyAHint(t *testing.T) {
	f := newExchangeFixture(t)
	tokens := f.redeem(t, "openid offline_access")
	for name, c := range map[string]struct{ token, hint string }{
		"access token, hint refresh_token": {tokens["access_token"].(string), "refresh_token"},
		"access token, hint access_token":  {tokens["access_token"].(string), "access_token"},
		"access token, no hint":            {tokens["access_token"].(string), ""},
	} {
		t.Run(name, func(t *testing.T) {
			form := url.Values{"client_id": {"order-service"}, "token": {c.token}}
			if c.hint != "" {
				form.Set("token_type_hint", c.hint)
			}
			st, out := f.post(t, "/oauth2/introspect", form, true)
			if st != http.StatusOK || out["active"] != true {
				t.Fatalf("introspect: %d %v, want active", st, out)
			}
		})
	}
}

// TestRevokeSubjectBurnsOutstandingCodes: revoking every token of a
// subject (admin revoke, role change, disable, erasure) also ends the
// authorization codes not yet redeemed. A code issued a moment before
// the revocation and redeemed after it would otherwise mint fresh tokens,
// issued after the not-before time and so honoured everywhere.
func TestRevokeSubjectBurnsOutstandingCodes(t *testing.T) {
	f := newRevocationFixture(t)
	code, verifier := f.authCode(t, "openid offline_access")
	var row store.AuthCode
	if err := f.srv.db.Where("code_hash = ?", hash(code)).Take(&row).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.srv.RevokeSubject(context.Background(), row.AccountID, "admin"); err != nil {
		t.Fatal(err)
	}
	st, out := f.token(t, url.Values{
		"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
	}, false)
	if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("code issued before the revocation: %d %v, want 400 invalid_grant", st, out)
	}
	onlyEvent(t, f.events.take(), secevent.GrantInvalid, secevent.ReasonCodeInvalid)
}

// TestCodeScopeFollowsTheCurrentRoles: the scope of a code redemption is
// narrowed to what the user's roles allow at redemption, as a refresh's
// is: an ADMIN demoted between the code and its redemption gets no admin
// scope.
func TestCodeScopeFollowsTheCurrentRoles(t *testing.T) {
	f := newExchangeFixture(t)
	code, verifier := f.authCode(t, "openid admin")
	var row store.AuthCode
	if err := f.srv.db.Where("code_hash = ?", hash(code)).Take(&row).Error; err != nil {
		t.Fatal(err)
	}
	// The code says admin, as it would have for an ADMIN; the account is
	// a USER now.
	st, out := f.token(t, url.Values{
		"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
	}, false)
	if st != http.StatusOK {
		t.Fatalf("redemption: %d %v", st, out)
	}
	if out["scope"] != "openid" {
		t.Fatalf("scope %q, want openid (admin is not the USER's to hold)", out["scope"])
	}
}

// TestLogoutEndsTheSessionsCodes: a code issued in a browser session and
// redeemed after the user signed out of it mints nothing. Logout revokes
// the families of the session; a family created after it from one of the
// session's codes escaped that, and its tokens lived on.
func TestLogoutEndsTheSessionsCodes(t *testing.T) {
	f := newRevocationFixture(t)
	code, verifier := f.authCode(t, "openid offline_access")
	req := httptest.NewRequest(http.MethodGet, "/oauth2/logout", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: f.sessionID})
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("logout: %d", rec.Code)
	}
	f.events.take()
	st, out := f.token(t, url.Values{
		"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
	}, false)
	if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("code of a signed-out session: %d %v, want 400 invalid_grant", st, out)
	}
	onlyEvent(t, f.events.take(), secevent.GrantInvalid, secevent.ReasonCodeInvalid)
}

// TestRevocationReachesTokensForOtherAudiences: a client may revoke its
// own access tokens whatever their audience — an exchanged token for
// user-service, a client_credentials token for a service — not only
// those for the public API, which were the only ones the endpoint
// recognised (the rest were answered 200 and left alive).
func TestRevocationReachesTokensForOtherAudiences(t *testing.T) {
	f := newRevocationFixture(t)
	subject, _ := f.userToken(t, "")
	st, out := f.exchange(t, subject, "user-service", "users:read")
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %v", st, out)
	}
	exchanged := out["access_token"].(string)
	st, out = f.token(t, url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"order-service"},
		"scope": {"users:read"}, "audience": {"user-service"}}, true)
	if st != http.StatusOK {
		t.Fatalf("client_credentials: %d %v", st, out)
	}
	machine := out["access_token"].(string)
	userService, err := tokens.NewVerifier(tokens.Options{Issuer: f.srv.cfg.Issuer, Audience: "user-service",
		Keys: ownKeys{f.keys}, Revocations: f.srv.revs, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"exchanged token": exchanged, "client_credentials token": machine} {
		t.Run(name, func(t *testing.T) {
			if _, err := userService.Verify(context.Background(), tok); err != nil {
				t.Fatalf("before revocation: %v", err)
			}
			if st, out := f.post(t, "/oauth2/revoke", url.Values{"client_id": {"order-service"}, "token": {tok}}, true); st != http.StatusOK {
				t.Fatalf("revoke: %d %v", st, out)
			}
			if _, err := userService.Verify(context.Background(), tok); tokens.ReasonOf(err) != tokens.ReasonRevoked {
				t.Fatalf("after revocation: %v, want revoked", err)
			}
			onlyEvent(t, f.events.take(), secevent.TokenRevoked, secevent.ReasonUser)
		})
	}
}
