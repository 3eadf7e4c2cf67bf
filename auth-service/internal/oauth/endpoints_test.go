package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
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
			f.events.Take()
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
	onlyEvent(t, f.events.Take(), secevent.GrantInvalid, secevent.ReasonCodeInvalid)
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
	session := &http.Cookie{Name: sessionCookie, Value: f.sessionID}
	form := parseConfirmation(t, f.logoutCall(t, http.MethodGet, url.Values{}, session))
	if rec := f.logoutCall(t, http.MethodPost, form.fields, session, form.binding); rec.Code != http.StatusOK {
		t.Fatalf("logout: %d", rec.Code)
	}
	f.events.Take()
	st, out := f.token(t, url.Values{
		"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
	}, false)
	if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("code of a signed-out session: %d %v, want 400 invalid_grant", st, out)
	}
	onlyEvent(t, f.events.Take(), secevent.GrantInvalid, secevent.ReasonCodeInvalid)
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
			onlyEvent(t, f.events.Take(), secevent.TokenRevoked, secevent.ReasonUser)
		})
	}
}

// logoutCall sends a logout request — a GET with params in the query, or a
// POST of params as a form — with the given cookies.
func (f *exchangeFixture) logoutCall(t *testing.T, method string, params url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	var req *http.Request
	if method == http.MethodPost {
		req = httptest.NewRequest(method, "/oauth2/logout", strings.NewReader(params.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, "/oauth2/logout?"+params.Encode(), nil)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	return rec
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// confirmation is a logout confirmation page: its form's fields and the
// browser binding cookie it set.
type confirmation struct {
	fields  url.Values
	binding *http.Cookie
}

// parseConfirmation reads the confirmation form out of rec.
func parseConfirmation(t *testing.T, rec *httptest.ResponseRecorder) confirmation {
	t.Helper()
	body := rec.Body.String()
	if !strings.Contains(body, `<form method="post" action="/oauth2/logout">`) {
		t.Fatalf("no confirmation form: %d %s", rec.Code, body)
	}
	out := confirmation{fields: url.Values{}}
	for _, m := range hiddenInput.FindAllStringSubmatch(body, -1) {
		out.fields.Set(m[1], html.UnescapeString(m[2]))
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == logoutCookie {
			out.binding = c
		}
	}
	if out.fields.Get("csrf_token") == "" || out.fields.Get("request") == "" || out.binding == nil || out.binding.Value == "" {
		t.Fatalf("confirmation without its CSRF token or binding: %v %v", out.fields, rec.Header().Values("Set-Cookie"))
	}
	if !out.binding.Secure || !out.binding.HttpOnly || out.binding.Path != "/" || out.binding.SameSite != http.SameSiteLaxMode {
		t.Fatalf("binding cookie %+v, want Secure, HttpOnly, Path=/, SameSite=Lax", out.binding)
	}
	return out
}

// sessionAlive reports whether the session with cookie value sid exists.
func (f *exchangeFixture) sessionAlive(t *testing.T, sid string) bool {
	t.Helper()
	var n int64
	if err := f.srv.db.Model(&store.Session{}).Where("id_hash = ?", hash(sid)).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// tokensAlive reports whether the access token verifies and the refresh
// token refreshes (the refresh rotates it: the new one is returned).
func (f *exchangeFixture) tokensAlive(t *testing.T, tok map[string]any) (bool, map[string]any) {
	t.Helper()
	if _, err := f.srv.access.Verify(context.Background(), tok["access_token"].(string)); err != nil {
		return false, tok
	}
	st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {tok["refresh_token"].(string)}}, false)
	if st != http.StatusOK {
		return false, tok
	}
	return true, out
}

// TestLogoutWithoutHintAsksFirst: OIDC RP-Initiated Logout §2 — without a
// valid id_token_hint the OP asks the user. A hint-less GET used to end the
// session at once, so any page could sign a user out with a top-level
// navigation (logout CSRF). Now it changes nothing and answers a
// confirmation form, CSRF protected as the login form is; only the form's
// POST ends the session.
func TestLogoutWithoutHintAsksFirst(t *testing.T) {
	f := newRevocationFixture(t)
	const back = "http://127.0.0.1:53682/"

	t.Run("a GET without a hint changes nothing and asks", func(t *testing.T) {
		tok := f.redeem(t, "openid offline_access")
		sid := f.sessionID
		f.events.Take()
		rec := f.logoutCall(t, http.MethodGet, url.Values{"client_id": {DemoClientID}, "post_logout_redirect_uri": {back}, "state": {"s&x=1"}},
			&http.Cookie{Name: sessionCookie, Value: sid})
		if rec.Code != http.StatusOK || rec.Header().Get("Location") != "" {
			t.Fatalf("%d Location=%q, want 200 and no redirect", rec.Code, rec.Header().Get("Location"))
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "form-action 'self'") ||
			rec.Header().Get("X-Frame-Options") != "DENY" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("headers %v, want the login page's", rec.Header())
		}
		if strings.Contains(strings.ToLower(rec.Body.String()), "signed out") {
			t.Error("the confirmation says the user is signed out")
		}
		for _, c := range rec.Result().Cookies() {
			if c.Name == sessionCookie {
				t.Errorf("the GET touched the session cookie: %+v", c)
			}
		}
		form := parseConfirmation(t, rec)
		for k, want := range map[string]string{"client_id": DemoClientID, "post_logout_redirect_uri": back, "state": "s&x=1"} {
			if got := form.fields.Get(k); got != want {
				t.Errorf("form %s = %q, want %q", k, got, want)
			}
		}
		if evs := f.events.Take(); len(evs) != 0 {
			t.Errorf("events %+v, want none", evs)
		}
		if !f.sessionAlive(t, sid) {
			t.Fatal("the session ended on a GET")
		}
		alive, tok := f.tokensAlive(t, tok)
		if !alive {
			t.Fatal("the session's tokens died on a GET")
		}

		// The user confirms: the form's POST signs out as a hinted GET does.
		rec = f.logoutCall(t, http.MethodPost, form.fields, &http.Cookie{Name: sessionCookie, Value: sid}, form.binding)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != back+"?state=s%26x%3D1" {
			t.Fatalf("confirmed logout: %d Location=%q", rec.Code, rec.Header().Get("Location"))
		}
		onlyEvent(t, f.events.Take(), secevent.TokenRevoked, secevent.ReasonLogout)
		if f.sessionAlive(t, sid) {
			t.Error("the session outlived the confirmed logout")
		}
		if _, err := f.srv.access.Verify(context.Background(), tok["access_token"].(string)); tokens.ReasonOf(err) != tokens.ReasonRevoked {
			t.Errorf("access token after logout: %v, want revoked", err)
		}
		st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {tok["refresh_token"].(string)}}, false)
		if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("refresh after logout: %d %v, want 400 invalid_grant", st, out)
		}
		f.events.Take()

		// The form is used up.
		rec = f.logoutCall(t, http.MethodPost, form.fields, form.binding)
		if rec.Code != http.StatusForbidden {
			t.Errorf("the same form posted again: %d, want 403", rec.Code)
		}
		onlyEvent(t, f.events.Take(), secevent.LoginFailed, secevent.ReasonCSRF)
	})

	t.Run("a POST without the page's token is refused as the login form refuses one", func(t *testing.T) {
		tok := f.redeem(t, "openid offline_access")
		sid := f.sessionID
		session := &http.Cookie{Name: sessionCookie, Value: sid}
		form := parseConfirmation(t, f.logoutCall(t, http.MethodGet, url.Values{}, session))
		f.events.Take()
		without := func(name string) url.Values {
			v := url.Values{}
			for k := range form.fields {
				if k != name {
					v.Set(k, form.fields.Get(k))
				}
			}
			return v
		}
		with := func(name, value string) url.Values {
			v := without(name)
			v.Set(name, value)
			return v
		}
		otherForm := parseConfirmation(t, f.logoutCall(t, http.MethodGet, url.Values{}, session))
		f.events.Take()
		for name, c := range map[string]struct {
			params  url.Values
			cookies []*http.Cookie
		}{
			"no token, no binding (a cross-site form)": {url.Values{}, []*http.Cookie{session}},
			"no CSRF token":                  {without("csrf_token"), []*http.Cookie{session, form.binding}},
			"forged CSRF token":              {with("csrf_token", randomToken()), []*http.Cookie{session, form.binding}},
			"another form's CSRF token":      {with("csrf_token", otherForm.fields.Get("csrf_token")), []*http.Cookie{session, form.binding}},
			"the token without the binding":  {form.fields, []*http.Cookie{session}},
			"the token with another binding": {form.fields, []*http.Cookie{session, {Name: logoutCookie, Value: randomToken()}}},
			"no request id":                  {without("request"), []*http.Cookie{session, form.binding}},
			"a login request id and binding": {form.fields, []*http.Cookie{session, {Name: loginCookie, Value: form.binding.Value}}},
		} {
			t.Run(name, func(t *testing.T) {
				rec := f.logoutCall(t, http.MethodPost, c.params, c.cookies...)
				if rec.Code != http.StatusForbidden || rec.Header().Get("Location") != "" {
					t.Fatalf("%d Location=%q, want 403 and no redirect", rec.Code, rec.Header().Get("Location"))
				}
				onlyEvent(t, f.events.Take(), secevent.LoginFailed, secevent.ReasonCSRF)
				if !f.sessionAlive(t, sid) {
					t.Fatal("a refused POST ended the session")
				}
			})
		}
		if alive, _ := f.tokensAlive(t, tok); !alive {
			t.Error("a refused POST revoked the session's tokens")
		}
		f.events.Take()
	})

	t.Run("a logout form's id and token do not pass the login form", func(t *testing.T) {
		f.redeem(t, "openid")
		form := parseConfirmation(t, f.logoutCall(t, http.MethodGet, url.Values{}, &http.Cookie{Name: sessionCookie, Value: f.sessionID}))
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(url.Values{
			"request": {form.fields.Get("request")}, "csrf_token": {form.fields.Get("csrf_token")}, "email": {"a@example.com"}, "password": {"x"},
		}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: loginCookie, Value: form.binding.Value})
		rec := httptest.NewRecorder()
		f.engine.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Fatalf("login with a logout form's fields: %d, want 403", rec.Code)
		}
		onlyEvent(t, f.events.Take(), secevent.LoginFailed, secevent.ReasonCSRF)
	})

	t.Run("a GET with a verified hint of the session's user signs out at once", func(t *testing.T) {
		tok := f.redeem(t, "openid offline_access")
		sid := f.sessionID
		f.events.Take()
		rec := f.logoutCall(t, http.MethodGet, url.Values{"id_token_hint": {tok["id_token"].(string)}, "post_logout_redirect_uri": {back}, "state": {"s"}},
			&http.Cookie{Name: sessionCookie, Value: sid})
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != back+"?state=s" {
			t.Fatalf("%d Location=%q", rec.Code, rec.Header().Get("Location"))
		}
		onlyEvent(t, f.events.Take(), secevent.TokenRevoked, secevent.ReasonLogout)
		if f.sessionAlive(t, sid) {
			t.Error("the session outlived the logout")
		}
		if alive, _ := f.tokensAlive(t, tok); alive {
			t.Error("the session's tokens outlived the logout")
		}
		f.events.Take()
	})

	t.Run("a GET that changes nothing without asking", func(t *testing.T) {
		mine := f.redeem(t, "openid offline_access")
		sid := f.sessionID
		theirs := f.redeem(t, "openid") // another user, another session
		f.events.Take()
		for name, c := range map[string]struct {
			params url.Values
			status int
			event  *secevent.Event
		}{
			"another user's valid hint": {url.Values{"id_token_hint": {theirs["id_token"].(string)}}, http.StatusOK, nil},
			"a hint we cannot verify": {url.Values{"id_token_hint": {"garbage"}, "post_logout_redirect_uri": {back}},
				http.StatusBadRequest, &secevent.Event{Type: secevent.TokenRejected, Reason: secevent.ReasonMalformed}},
			// Another user's hint: this session's own hint ends the
			// session even when the request is refused, as before.
			"a hint for another client than client_id": {url.Values{"id_token_hint": {theirs["id_token"].(string)}, "client_id": {"rampart-machine"}, "post_logout_redirect_uri": {back}},
				http.StatusBadRequest, &secevent.Event{Type: secevent.GrantInvalid, Reason: secevent.ReasonClientMismatch}},
			"an unregistered address without a hint": {url.Values{"client_id": {DemoClientID}, "post_logout_redirect_uri": {"https://evil.example/"}},
				http.StatusBadRequest, &secevent.Event{Type: secevent.GrantInvalid, Reason: secevent.ReasonRedirectMismatch}},
			"an address without a client": {url.Values{"post_logout_redirect_uri": {back}},
				http.StatusBadRequest, &secevent.Event{Type: secevent.GrantInvalid, Reason: secevent.ReasonRedirectMismatch}},
		} {
			t.Run(name, func(t *testing.T) {
				rec := f.logoutCall(t, http.MethodGet, c.params, &http.Cookie{Name: sessionCookie, Value: sid})
				if rec.Code != c.status || rec.Header().Get("Location") != "" {
					t.Fatalf("%d Location=%q, want %d and no redirect", rec.Code, rec.Header().Get("Location"), c.status)
				}
				form := parseConfirmation(t, rec)
				if c.event != nil {
					onlyEvent(t, f.events.Take(), c.event.Type, c.event.Reason)
					if form.fields.Get("post_logout_redirect_uri") != "" || strings.Contains(rec.Body.String(), "evil.example") {
						t.Errorf("a refused request's address is in the form: %v", form.fields)
					}
				} else if evs := f.events.Take(); len(evs) != 0 {
					t.Errorf("events %+v, want none", evs)
				}
				if !f.sessionAlive(t, sid) {
					t.Fatal("the session ended on a GET")
				}
			})
		}
		if alive, _ := f.tokensAlive(t, mine); !alive {
			t.Error("the session's tokens died on a GET")
		}
	})
}
