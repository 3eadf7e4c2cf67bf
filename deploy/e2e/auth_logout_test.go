package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	authapp "github.com/rampart-go/rampart/auth-service/app"
	"github.com/rampart-go/rampart/deploy/stack"
)

// browserTokens runs the code flow in browser b (signing in with the form
// unless b's session signs it in silently) and redeems the code.
func (e *env) browserTokens(t testing.TB, b *http.Client, acct authapp.CredentialAccount, scope string) map[string]any {
	t.Helper()
	verifier, state := oauth2.GenerateVerifier(), randomString(t)
	u := e.authURL(t, verifier, state, callback, url.Values{"scope": {scope}})
	resp, _ := get(t, b, u, nil)
	if resp.StatusCode == http.StatusOK { // the login form: no session yet
		resp = e.login(t, b, u, acct.Email, acct.Password)
	}
	st, errc, tok := e.redeem(t, e.codeFrom(t, resp, state), verifier)
	if st != http.StatusOK {
		t.Fatalf("redeem: %d %s %v", st, errc, tok)
	}
	return tok
}

// logoutURL builds an RP-initiated logout request.
func (e *env) logoutURL(params url.Values) string {
	return e.Endpoints.Gateway + "/oauth2/logout?" + params.Encode()
}

// sessionCookieCleared reports whether resp deletes the session cookie.
func sessionCookieCleared(resp *http.Response) bool {
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-rampart_session" {
			return c.Value == "" && c.MaxAge < 0 && c.Secure && c.HttpOnly && c.Path == "/"
		}
	}
	return false
}

// TestRPInitiatedLogoutEndsTheSessionAndItsTokens: a logout with a valid
// id_token_hint and a registered post_logout_redirect_uri redirects there
// with state, clears the session cookie, and revokes every token family of
// the session (refresh fails; the gateway refuses the access tokens with
// token.rejected/revoked), with one auth.token.revoked/logout. The same
// user's other session is untouched.
func TestRPInitiatedLogoutEndsTheSessionAndItsTokens(t *testing.T) {
	e := start(t)
	user := e.Credentials.Accounts["user"]
	b := e.browser(t)
	first := e.browserTokens(t, b, user, "openid offline_access users:read")
	// A second authorization in the same session signs in silently: a
	// second token family of the same session.
	second := e.browserTokens(t, b, user, "openid offline_access")
	other := e.browserTokens(t, e.browser(t), user, "openid offline_access")

	revoked0, total0 := e.secEvents(t, stack.Auth, "auth.token.revoked", "logout"), e.allSecEvents(t, stack.Auth)
	const back = "http://127.0.0.1:53682/"
	resp, body := get(t, b, e.logoutURL(url.Values{
		"id_token_hint": {first["id_token"].(string)}, "post_logout_redirect_uri": {back}, "state": {"opaque-state&x=1"},
	}), nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", resp.StatusCode, body)
	}
	if loc := resp.Header.Get("Location"); loc != back+"?state=opaque-state%26x%3D1" {
		t.Errorf("redirected to %q", loc)
	}
	if !sessionCookieCleared(resp) {
		t.Errorf("session cookie not cleared: %v", resp.Header.Values("Set-Cookie"))
	}
	if d := e.secEvents(t, stack.Auth, "auth.token.revoked", "logout") - revoked0; d != 1 {
		t.Errorf("auth.token.revoked/logout events: %v", d)
	}
	if d := e.allSecEvents(t, stack.Auth) - total0; d != 1 {
		t.Errorf("logout emitted %v security events, want 1", d)
	}

	e.assertRevokedAtTheEdge(t, first)
	e.assertRevokedAtTheEdge(t, second)

	if st := e.userinfoStatus(t, other["access_token"].(string)); st != http.StatusOK {
		t.Errorf("the other session's token: userinfo %d", st)
	}
	st, errc, _ := e.postToken(t, e.public, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {other["refresh_token"].(string)}, "client_id": {"rampart-demo"}}, [2]string{})
	if st != http.StatusOK {
		t.Errorf("the other session's refresh: %d %s", st, errc)
	}

	// The browser has no session: authorizing again shows the login form.
	resp, _ = get(t, b, e.authURL(t, oauth2.GenerateVerifier(), "s", callback, nil), nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("authorize after logout → %d %s, want the login form", resp.StatusCode, resp.Header.Get("Location"))
	}

	t.Run("a second logout without a session just says so", func(t *testing.T) {
		total := e.allSecEvents(t, stack.Auth)
		resp, body := get(t, b, e.logoutURL(url.Values{}), nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" || !strings.Contains(string(body), "signed out") {
			t.Errorf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if d := e.allSecEvents(t, stack.Auth) - total; d != 0 {
			t.Errorf("%v security events", d)
		}
	})
	t.Run("client_id identifies the client without a hint", func(t *testing.T) {
		resp, _ := get(t, e.browser(t), e.logoutURL(url.Values{"client_id": {"rampart-demo"}, "post_logout_redirect_uri": {"http://[::1]:4000/"}}), nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "http://[::1]:4000/" {
			t.Errorf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

// TestRPInitiatedLogoutRefusals: a hint we cannot verify, a hint for
// another client, or an address the client has not registered is a 400
// page with no redirect and exactly one security event. A session ends
// only on a verified hint of its user; otherwise the page is the logout
// confirmation (TestRPInitiatedLogoutWithoutHintAsksFirst).
func TestRPInitiatedLogoutRefusals(t *testing.T) {
	e := start(t)
	user := e.Credentials.Accounts["user"]
	tok := e.browserTokens(t, e.browser(t), user, "openid")
	idt := tok["id_token"].(string)
	const back = "http://127.0.0.1:53682/"

	rows := []struct {
		name   string
		params url.Values
		event  string
	}{
		{"forged hint (attacker's key, our kid)", url.Values{"id_token_hint": {forge(t, idt, func(map[string]any) {})}, "post_logout_redirect_uri": {back}}, "token.rejected/signature"},
		{"hint with an unknown kid", url.Values{"id_token_hint": {forge(t, idt, func(h map[string]any) { h["kid"] = "attacker" })}, "post_logout_redirect_uri": {back}}, "token.rejected/unknown_key"},
		{"hint that is not a JWT", url.Values{"id_token_hint": {"garbage"}, "post_logout_redirect_uri": {back}}, "token.rejected/malformed"},
		{"hint with alg none", url.Values{"id_token_hint": {b64(map[string]any{"alg": "none", "typ": "JWT"}) + "." + strings.Split(idt, ".")[1] + "."}, "post_logout_redirect_uri": {back}}, "token.rejected/algorithm"},
		{"an access token as the hint", url.Values{"id_token_hint": {tok["access_token"].(string)}, "post_logout_redirect_uri": {back}}, "token.rejected/type"},
		{"hint for another client than client_id", url.Values{"id_token_hint": {idt}, "client_id": {"rampart-machine"}, "post_logout_redirect_uri": {back}}, "auth.grant.invalid/client_mismatch"},
		{"unregistered address: other host", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://evil.example/"}}, "auth.grant.invalid/redirect_mismatch"},
		{"unregistered address: sub-path", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {back + "evil"}}, "auth.grant.invalid/redirect_mismatch"},
		{"unregistered address: userinfo trick", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"http://127.0.0.1:53682@evil.example/"}}, "auth.grant.invalid/redirect_mismatch"},
		{"unregistered address: localhost", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"http://localhost:53682/"}}, "auth.grant.invalid/redirect_mismatch"},
		{"unregistered address: fragment", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {back + "#x"}}, "auth.grant.invalid/redirect_mismatch"},
		{"unregistered address: the login callback", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {callback}}, "auth.grant.invalid/redirect_mismatch"},
		{"address without any client", url.Values{"post_logout_redirect_uri": {back}}, "auth.grant.invalid/redirect_mismatch"},
		{"address for an unknown client", url.Values{"client_id": {"nobody"}, "post_logout_redirect_uri": {back}}, "auth.grant.invalid/redirect_mismatch"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			typ, reason, _ := strings.Cut(r.event, "/")
			before, total := e.secEvents(t, stack.Auth, typ, reason), e.allSecEvents(t, stack.Auth)
			r.params.Set("state", "s")
			resp, body := get(t, e.browser(t), e.logoutURL(r.params), nil)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("%d, Location %q: %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			if strings.Contains(string(body), "evil.example") {
				t.Error("the page links to the attacker's address")
			}
			if d := e.secEvents(t, stack.Auth, typ, reason) - before; d != 1 {
				t.Errorf("%s events: %v, want exactly one", r.event, d)
			}
			if d := e.allSecEvents(t, stack.Auth) - total; d != 1 {
				t.Errorf("%v security events, want exactly one", d)
			}
		})
	}

	t.Run("a refused redirect still ends the session", func(t *testing.T) {
		b := e.browser(t)
		tok := e.browserTokens(t, b, user, "openid offline_access")
		resp, _ := get(t, b, e.logoutURL(url.Values{"id_token_hint": {tok["id_token"].(string)}, "post_logout_redirect_uri": {"https://evil.example/"}}), nil)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !sessionCookieCleared(resp) {
			t.Errorf("%d %q, cookie cleared %v", resp.StatusCode, resp.Header.Get("Location"), sessionCookieCleared(resp))
		}
		e.assertRevokedAtTheEdge(t, tok)
	})
}

// TestRPInitiatedLogoutWithoutHintAsksFirst: without a valid id_token_hint
// a logout GET changes nothing (RP-Initiated Logout §2: the OP asks the
// user): any page could otherwise sign the user out with a top-level
// navigation. It answers a confirmation form, CSRF protected as the login
// form is; a post without the form's token is refused with one
// auth.login.failed/csrf, the form's own post signs out as a hinted GET does.
func TestRPInitiatedLogoutWithoutHintAsksFirst(t *testing.T) {
	e := start(t)
	user := e.Credentials.Accounts["user"]
	b := e.browser(t)
	tok := e.browserTokens(t, b, user, "openid offline_access")
	const back = "http://127.0.0.1:53682/"

	total0 := e.allSecEvents(t, stack.Auth)
	resp, page := get(t, b, e.logoutURL(url.Values{"client_id": {"rampart-demo"}, "post_logout_redirect_uri": {back}, "state": {"s&x=1"}}), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
		t.Fatalf("hint-less logout GET: %d %q, want 200 and the confirmation", resp.StatusCode, resp.Header.Get("Location"))
	}
	if sessionCookieCleared(resp) {
		t.Error("the GET cleared the session cookie")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(strings.ToLower(string(page)), "<script") {
		t.Errorf("confirmation page CSP %q, or it has a script", csp)
	}
	f := parseForm(t, page)
	if f.action != "/oauth2/logout" || f.values.Get("csrf_token") == "" || f.values.Get("post_logout_redirect_uri") != back || f.values.Get("state") != "s&x=1" {
		t.Fatalf("confirmation form %+v", f)
	}
	if d := e.allSecEvents(t, stack.Auth) - total0; d != 0 {
		t.Errorf("the GET emitted %v security events", d)
	}
	if st := e.userinfoStatus(t, tok["access_token"].(string)); st != http.StatusOK {
		t.Errorf("the session's token after the GET: userinfo %d", st)
	}
	action := resp.Request.URL.ResolveReference(&url.URL{Path: f.action}).String()

	// A forged post: this browser's cookies, but not the form's token.
	for name, v := range map[string]url.Values{
		"no token":     {"client_id": {"rampart-demo"}},
		"forged token": {"request": {f.values.Get("request")}, "csrf_token": {"forged"}},
	} {
		t.Run(name, func(t *testing.T) {
			before, total := e.secEvents(t, stack.Auth, "auth.login.failed", "csrf"), e.allSecEvents(t, stack.Auth)
			post, err := b.PostForm(action, v)
			if err != nil {
				t.Fatal(err)
			}
			_ = post.Body.Close()
			if post.StatusCode != http.StatusForbidden || sessionCookieCleared(post) {
				t.Errorf("%d, cookie cleared %v, want 403 and the session kept", post.StatusCode, sessionCookieCleared(post))
			}
			if d := e.secEvents(t, stack.Auth, "auth.login.failed", "csrf") - before; d != 1 {
				t.Errorf("auth.login.failed/csrf events: %v, want exactly one", d)
			}
			if d := e.allSecEvents(t, stack.Auth) - total; d != 1 {
				t.Errorf("%v security events, want exactly one", d)
			}
		})
	}
	// The session is alive: authorizing signs in silently.
	resp, _ = get(t, b, e.authURL(t, oauth2.GenerateVerifier(), "s", callback, nil), nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), callback) {
		t.Fatalf("authorize after refused logouts → %d %q, want a silent sign-in", resp.StatusCode, resp.Header.Get("Location"))
	}
	if st := e.userinfoStatus(t, tok["access_token"].(string)); st != http.StatusOK {
		t.Errorf("the session's token after refused logouts: userinfo %d", st)
	}

	// The user confirms.
	revoked0, total0 := e.secEvents(t, stack.Auth, "auth.token.revoked", "logout"), e.allSecEvents(t, stack.Auth)
	post, err := b.PostForm(action, f.values)
	if err != nil {
		t.Fatal(err)
	}
	_ = post.Body.Close()
	if post.StatusCode != http.StatusSeeOther || post.Header.Get("Location") != back+"?state=s%26x%3D1" {
		t.Fatalf("confirmed logout: %d %q", post.StatusCode, post.Header.Get("Location"))
	}
	if !sessionCookieCleared(post) {
		t.Errorf("session cookie not cleared: %v", post.Header.Values("Set-Cookie"))
	}
	if d := e.secEvents(t, stack.Auth, "auth.token.revoked", "logout") - revoked0; d != 1 {
		t.Errorf("auth.token.revoked/logout events: %v", d)
	}
	if d := e.allSecEvents(t, stack.Auth) - total0; d != 1 {
		t.Errorf("logout emitted %v security events, want 1", d)
	}
	e.assertRevokedAtTheEdge(t, tok)
}
