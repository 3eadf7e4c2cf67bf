package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/rampart-go/rampart/auth-service/internal/account"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/secevent"
)

// TestRefusalsEmitOneEvent: each security refusal of the token,
// introspection and authorization endpoints — asking for more than was
// granted or registered, using what a client may not, presenting a
// refresh token of a disabled account — is refused with its OAuth error
// and recorded as exactly one security event (CONTRACT §4), as the token
// exchange's scope escalation already was.
func TestRefusalsEmitOneEvent(t *testing.T) {
	f := newRevocationFixture(t)
	ctx := context.Background()
	if err := RegisterClients(ctx, f.srv.db, []ClientSpec{{
		ID: "narrow", Name: "narrow", Type: store.ClientPublic, RedirectURIs: []string{"http://127.0.0.1/callback"},
		GrantTypes: []string{GrantCode}, Scopes: "openid",
	}}); err != nil {
		t.Fatal(err)
	}
	refreshOf := func(t *testing.T) (rt, accountID string) {
		t.Helper()
		rt = f.redeem(t, "openid offline_access")["refresh_token"].(string)
		var fam store.TokenFamily
		if err := f.srv.db.Joins("JOIN refresh_tokens ON refresh_tokens.family_id = token_families.id").
			Where("refresh_tokens.token_hash = ?", hash(rt)).Take(&fam).Error; err != nil {
			t.Fatal(err)
		}
		return rt, fam.AccountID
	}
	for _, c := range []struct {
		name       string
		do         func(t *testing.T) (int, string)
		wantStatus int
		wantError  string
		reason     secevent.Reason
	}{
		{"refresh widening the scope", func(t *testing.T) (int, string) {
			rt, _ := refreshOf(t)
			st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID},
				"refresh_token": {rt}, "scope": {"openid offline_access orders:write"}}, false)
			return st, str(out["error"])
		}, 400, "invalid_scope", secevent.ReasonScope},
		{"refresh of a disabled account", func(t *testing.T) (int, string) {
			rt, id := refreshOf(t)
			off := true
			if _, _, err := f.srv.accounts.Update(ctx, id, account.Change{Disabled: &off}); err != nil {
				t.Fatal(err)
			}
			st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {rt}}, false)
			return st, str(out["error"])
		}, 400, "invalid_grant", secevent.ReasonCodeInvalid},
		{"client_credentials beyond the registration", func(t *testing.T) (int, string) {
			st, out := f.token(t, url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"order-service"}, "scope": {"users:read admin"}}, true)
			return st, str(out["error"])
		}, 400, "invalid_scope", secevent.ReasonScope},
		{"introspection by a public client", func(t *testing.T) (int, string) {
			st, out := f.post(t, "/oauth2/introspect", url.Values{"client_id": {DemoClientID}, "token": {"x"}}, false)
			return st, str(out["error"])
		}, 401, "invalid_client", secevent.ReasonClientMismatch},
		{"authorization beyond the registered scopes", func(t *testing.T) (int, string) {
			q := url.Values{
				"response_type": {"code"}, "client_id": {"narrow"}, "redirect_uri": {"http://127.0.0.1:5000/callback"},
				"scope": {"openid admin"}, "state": {"s"}, "code_challenge_method": {"S256"},
				"code_challenge": {strings.Repeat("a", 43)},
			}
			rec := httptest.NewRecorder()
			f.engine.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth2/authorize?"+q.Encode(), nil))
			loc, err := url.Parse(rec.Header().Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			return rec.Code, loc.Query().Get("error")
		}, 303, "invalid_scope", secevent.ReasonScope},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, errc := c.do(t)
			if st != c.wantStatus || errc != c.wantError {
				t.Fatalf("%d %q, want %d %q", st, errc, c.wantStatus, c.wantError)
			}
			onlyEvent(t, f.events.Take(), secevent.GrantInvalid, c.reason)
		})
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// TestRefusedRefreshScopeKeepsTheToken: a refresh refused for asking a
// scope that was never granted is a client error decided before the
// token is spent. Spending it left the client without a refresh token,
// and its retry with the same token counted as reuse and revoked the
// family.
func TestRefusedRefreshScopeKeepsTheToken(t *testing.T) {
	f := newRevocationFixture(t)
	rt := f.redeem(t, "openid offline_access")["refresh_token"].(string)
	st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID},
		"refresh_token": {rt}, "scope": {"openid offline_access admin"}}, false)
	if st != http.StatusBadRequest || out["error"] != "invalid_scope" {
		t.Fatalf("widening: %d %v, want 400 invalid_scope", st, out)
	}
	f.events.Take()
	st, out = f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {rt}}, false)
	if st != http.StatusOK {
		t.Fatalf("retry without the bad scope: %d %v, want 200", st, out)
	}
	if evs := f.events.Take(); len(evs) != 0 {
		t.Fatalf("retry emitted %+v", evs)
	}
}

// TestRotatedRefreshWithABadScopeIsStillReuse: presenting a token that was
// already rotated is reuse whatever else the request gets wrong; a bad
// scope does not let it past reuse detection.
func TestRotatedRefreshWithABadScopeIsStillReuse(t *testing.T) {
	f := newRevocationFixture(t)
	rt := f.redeem(t, "openid offline_access")["refresh_token"].(string)
	if st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {rt}}, false); st != http.StatusOK {
		t.Fatalf("rotation: %d %v", st, out)
	}
	st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID},
		"refresh_token": {rt}, "scope": {"admin"}}, false)
	if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("reuse with a bad scope: %d %v, want 400 invalid_grant", st, out)
	}
	onlyEvent(t, f.events.Take(), secevent.RefreshReused, secevent.ReasonNone)
}
