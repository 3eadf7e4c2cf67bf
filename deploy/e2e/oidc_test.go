package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"
)

// callback is the demo client's loopback redirect, on a port it was not
// registered with (RFC 8252 §7.3).
const callback = "http://127.0.0.1:53682/callback"

// browser is a cookie-keeping client that stops at the redirect back to the
// application, as a browser hands the code to the app.
func (e *env) browser(t testing.TB) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	base := e.public
	return &http.Client{
		Transport: base.Transport, Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Scheme == "http" {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// form is an HTML form as a browser sees it: action and every named input.
type form struct {
	action string
	values url.Values
}

// parseForm finds the first form in page and its inputs, as a browser
// would submit them.
func parseForm(t testing.TB, page []byte) form {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(string(page)))
	if err != nil {
		t.Fatal(err)
	}
	f := form{values: url.Values{}}
	var walk func(*html.Node, bool)
	found := false
	walk = func(n *html.Node, inForm bool) {
		if n.Type == html.ElementNode && n.Data == "form" && !found {
			found, inForm = true, true
			for _, a := range n.Attr {
				if a.Key == "action" {
					f.action = a.Val
				}
			}
		}
		if inForm && n.Type == html.ElementNode && n.Data == "input" {
			var name, value string
			for _, a := range n.Attr {
				switch a.Key {
				case "name":
					name = a.Val
				case "value":
					value = a.Val
				}
			}
			if name != "" {
				f.values.Set(name, value)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inForm)
		}
	}
	walk(doc, false)
	if !found {
		t.Fatalf("no form in page:\n%s", page)
	}
	return f
}

// login follows authURL to the login form, fills it in and returns the
// response that redirects back to the application.
func (e *env) login(t testing.TB, b *http.Client, authURL, email, password string) *http.Response {
	t.Helper()
	resp, page := get(t, b, authURL, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize → %d:\n%s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("login page CSP %q allows scripts", csp)
	}
	if strings.Contains(strings.ToLower(string(page)), "<script") {
		t.Error("login page has a script")
	}
	f := parseForm(t, page)
	if f.values.Get("csrf_token") == "" {
		t.Fatal("login form has no CSRF token")
	}
	f.values.Set("email", email)
	f.values.Set("password", password)
	action := resp.Request.URL.ResolveReference(&url.URL{Path: f.action})
	post, err := b.PostForm(action.String(), f.values)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, post.Body)
	_ = post.Body.Close()
	return post
}

// codeFrom extracts the code from the redirect back to the application,
// checking state and iss (RFC 9207).
func (e *env) codeFrom(t testing.TB, resp *http.Response, state string) string {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login → %d, want a redirect to the client", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), callback) {
		t.Fatalf("redirected to %q", resp.Header.Get("Location"))
	}
	q := loc.Query()
	if q.Get("state") != state || q.Get("iss") != e.Endpoints.Gateway || q.Get("code") == "" {
		t.Fatalf("callback query %v", q)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-rampart_session" && (!c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/") {
			t.Errorf("session cookie attributes %+v", c)
		}
	}
	return q.Get("code")
}

func randomString(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestThirdPartyOIDCClientInterop drives the auth service, behind the
// gateway, with coreos/go-oidc and golang.org/x/oauth2 exactly as a Go
// application would: discovery, code flow with PKCE through the real login
// form, ID-token verification, userinfo, refresh, revocation and
// introspection.
func TestThirdPartyOIDCClientInterop(t *testing.T) {
	e := start(t)
	ctx := oidc.ClientContext(context.Background(), e.public)
	ctx = context.WithValue(ctx, oauth2.HTTPClient, e.public)

	provider, err := oidc.NewProvider(ctx, e.Endpoints.Gateway)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var disco struct {
		Grants []string `json:"grant_types_supported"`
		PKCE   []string `json:"code_challenge_methods_supported"`
	}
	if err := provider.Claims(&disco); err != nil || len(disco.Grants) == 0 || strings.Join(disco.PKCE, ",") != "S256" {
		t.Fatalf("discovery claims %+v: %v", disco, err)
	}
	conf := oauth2.Config{
		ClientID: "rampart-demo", Endpoint: provider.Endpoint(), RedirectURL: callback,
		Scopes: []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess, "orders:read", "admin"},
	}
	user := e.Credentials.Accounts["user"]
	verifier, state, nonce := oauth2.GenerateVerifier(), randomString(t), randomString(t)
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))

	b := e.browser(t)
	code := e.codeFrom(t, e.login(t, b, authURL, user.Email, user.Password), state)
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("token %+v", tok)
	}
	// A USER asked for admin and did not get it.
	if sc, _ := tok.Extra("scope").(string); strings.Contains(sc, "admin") || !strings.Contains(sc, "orders:read") {
		t.Errorf("granted scope %q", sc)
	}

	rawID, _ := tok.Extra("id_token").(string)
	idv := provider.Verifier(&oidc.Config{ClientID: "rampart-demo"})
	idt, err := idv.Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Errorf("nonce %q, want %q", idt.Nonce, nonce)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	var idClaims struct {
		Email    string `json:"email"`
		AuthTime int64  `json:"auth_time"`
	}
	if err := idt.Claims(&idClaims); err != nil || idClaims.Email != user.Email || idClaims.AuthTime == 0 {
		t.Errorf("ID token claims %+v: %v", idClaims, err)
	}

	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || info.Subject != idt.Subject || info.Email != user.Email {
		t.Fatalf("userinfo %+v: %v", info, err)
	}

	// A second authorization reuses the session: no login form.
	v2, s2 := oauth2.GenerateVerifier(), randomString(t)
	resp, _ := get(t, b, conf.AuthCodeURL(s2, oauth2.S256ChallengeOption(v2)), nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), callback) {
		t.Errorf("silent re-authorization → %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Refresh rotates the refresh token.
	fresh, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken || fresh.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate")
	}

	// Introspection, by a confidential client (client_secret_basic).
	machine := e.clientSecret(t, "rampart-machine")
	if got := e.introspect(t, "rampart-machine", machine, fresh.AccessToken); got["active"] != true || got["sub"] != idt.Subject {
		t.Fatalf("introspection of a live token: %v", got)
	}

	// Revocation (RFC 7009) by the public client; the token is refused
	// everywhere within 100 ms.
	form := url.Values{"token": {fresh.AccessToken}, "token_type_hint": {"access_token"}, "client_id": {"rampart-demo"}}
	rv, err := e.public.PostForm(e.Endpoints.Gateway+"/oauth2/revoke", form)
	if err != nil {
		t.Fatal(err)
	}
	_ = rv.Body.Close()
	if rv.StatusCode != http.StatusOK {
		t.Fatalf("revoke → %d", rv.StatusCode)
	}
	revokedAt := time.Now()
	waitFor(t, time.Second, "userinfo to refuse the revoked token", func() bool {
		_, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(fresh))
		return err != nil
	})
	if d := time.Since(revokedAt); d > 100*time.Millisecond {
		t.Logf("revocation took %v to apply (budget 100ms; loaded machine?)", d)
	}
	if got := e.introspect(t, "rampart-machine", machine, fresh.AccessToken); got["active"] != false {
		t.Fatalf("introspection of a revoked token: %v", got)
	}
}

// clientSecret reads a confidential client's secret from credentials.json.
func (e *env) clientSecret(t testing.TB, id string) string {
	t.Helper()
	for _, c := range e.Credentials.Clients {
		if c.ClientID == id {
			return c.ClientSecret
		}
	}
	t.Fatalf("no client %s in credentials.json", id)
	return ""
}

func (e *env) introspect(t testing.TB, id, secret, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.Endpoints.Gateway+"/oauth2/introspect",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := e.public.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect → %d: %v", resp.StatusCode, err)
	}
	return out
}
