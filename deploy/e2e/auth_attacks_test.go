package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
)

func (e *env) authURL(t testing.TB, verifier, state, redirect string, extra url.Values) string {
	t.Helper()
	sum := oauth2.S256ChallengeFromVerifier(verifier)
	q := url.Values{
		"response_type": {"code"}, "client_id": {"rampart-demo"}, "redirect_uri": {redirect},
		"scope": {"openid offline_access orders:read"}, "state": {state},
		"code_challenge": {sum}, "code_challenge_method": {"S256"},
	}
	for k, v := range extra {
		q[k] = v
	}
	return e.Endpoints.Gateway + "/oauth2/authorize?" + q.Encode()
}

// newCode signs in as the account in a fresh browser and returns a fresh
// code and its verifier.
func (e *env) newCode(t testing.TB, _ *http.Client, email, password string) (code, verifier string) {
	t.Helper()
	b := e.browser(t)
	verifier, state := oauth2.GenerateVerifier(), randomString(t)
	resp := e.login(t, b, e.authURL(t, verifier, state, callback, nil), email, password)
	return e.codeFrom(t, resp, state), verifier
}

func (e *env) redeem(t testing.TB, code, verifier string) (int, string, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {callback}, "client_id": {"rampart-demo"}}
	return e.postToken(t, e.public, form, [2]string{})
}

func (e *env) postToken(t testing.TB, c *http.Client, form url.Values, basic [2]string) (int, string, map[string]any) {
	t.Helper()
	return e.postTokenAt(t, c, e.Endpoints.Gateway, form, basic)
}

func (e *env) postTokenAt(t testing.TB, c *http.Client, base string, form url.Values, basic [2]string) (int, string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic[0] != "" {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	code, _ := body["error"].(string)
	return resp.StatusCode, code, body
}

func (e *env) userinfoStatus(t testing.TB, token string) int {
	t.Helper()
	resp, _ := get(t, e.public, e.Endpoints.Gateway+"/oauth2/userinfo", http.Header{"Authorization": {"Bearer " + token}})
	return resp.StatusCode
}

// forge re-signs a real token's claims with an attacker's key and header.
func forge(t testing.TB, real string, mutate func(h map[string]any)) string {
	t.Helper()
	parts := strings.Split(real, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims jwt.MapClaims
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h map[string]any
	_ = json.Unmarshal(hdr, &h)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header = h
	mutate(tok.Header)
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestAuthAttackTable: one row per attack on the authorization server, each
// asserting the status, the error code and exactly one security event of
// the expected type and reason in rampart_security_events_total.
func TestAuthAttackTable(t *testing.T) {
	e := start(t)
	user := e.Credentials.Accounts["user"]
	b := e.browser(t)

	// A real access token to forge from.
	code, verifier := e.newCode(t, b, user.Email, user.Password)
	st, _, good := e.redeem(t, code, verifier)
	if st != http.StatusOK {
		t.Fatalf("redeem: %d %v", st, good)
	}
	realAT := good["access_token"].(string)
	parts := strings.Split(realAT, ".")

	type row struct {
		name       string
		attack     func(t *testing.T) (int, string)
		wantStatus int
		wantError  string // RFC 6749 error, "" when the answer is a page or none
		svc        string
		event      string // type/reason
	}
	rows := []row{
		{name: "alg none", wantStatus: 401, wantError: "invalid_token", svc: "auth-service", event: "token.rejected/algorithm",
			attack: func(t *testing.T) (int, string) {
				h := map[string]any{"alg": "none", "typ": "at+jwt"}
				return e.userinfoStatus(t, b64(h)+"."+parts[1]+"."), "invalid_token"
			}},
		{name: "HS256 signed with the public key", wantStatus: 401, wantError: "invalid_token", svc: "auth-service", event: "token.rejected/algorithm",
			attack: func(t *testing.T) (int, string) {
				jwks, _ := get(t, e.public, e.Endpoints.Gateway+"/.well-known/jwks.json", nil)
				_ = jwks
				tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x"})
				var h map[string]any
				raw, _ := base64.RawURLEncoding.DecodeString(parts[0])
				_ = json.Unmarshal(raw, &h)
				h["alg"] = "HS256"
				tok.Header = h
				pub, _ := base64.RawURLEncoding.DecodeString(parts[0]) // any bytes the attacker knows
				s, _ := tok.SignedString(pub)
				return e.userinfoStatus(t, s), "invalid_token"
			}},
		{name: "unknown kid", wantStatus: 401, wantError: "invalid_token", svc: "auth-service", event: "token.rejected/unknown_key",
			attack: func(t *testing.T) (int, string) {
				return e.userinfoStatus(t, forge(t, realAT, func(h map[string]any) { h["kid"] = "attacker" })), "invalid_token"
			}},
		{name: "jku and jwk header injection", wantStatus: 401, wantError: "invalid_token", svc: "auth-service", event: "token.rejected/signature",
			attack: func(t *testing.T) (int, string) {
				return e.userinfoStatus(t, forge(t, realAT, func(h map[string]any) {
					h["jku"] = "https://evil.example/jwks.json"
					h["jwk"] = map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}
				})), "invalid_token"
			}},
		{name: "tampered payload", wantStatus: 401, wantError: "invalid_token", svc: "auth-service", event: "token.rejected/signature",
			attack: func(t *testing.T) (int, string) {
				raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
				raw = bytes.Replace(raw, []byte(`"roles":["USER"]`), []byte(`"roles":["ADMIN"]`), 1)
				return e.userinfoStatus(t, parts[0]+"."+base64.RawURLEncoding.EncodeToString(raw)+"."+parts[2]), "invalid_token"
			}},
		{name: "ECDSA r=s=0", wantStatus: 401, wantError: "invalid_token", svc: "auth-service", event: "token.rejected/signature",
			attack: func(t *testing.T) (int, string) {
				return e.userinfoStatus(t, parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(make([]byte, 64))), "invalid_token"
			}},
		{name: "oversized token", wantStatus: 401, wantError: "invalid_token", svc: "auth-service", event: "token.rejected/too_large",
			attack: func(t *testing.T) (int, string) {
				return e.userinfoStatus(t, parts[0]+"."+strings.Repeat("A", 9000)+"."+parts[2]), "invalid_token"
			}},
		{name: "code reuse revokes the first redemption's tokens", wantStatus: 400, wantError: "invalid_grant", svc: "auth-service", event: "auth.grant.invalid/code_reused",
			attack: func(t *testing.T) (int, string) {
				code, verifier := e.newCode(t, b, user.Email, user.Password)
				st, _, first := e.redeem(t, code, verifier)
				if st != http.StatusOK {
					t.Fatalf("first redemption %d", st)
				}
				st, errc, _ := e.redeem(t, code, verifier)
				waitFor(t, 2*time.Second, "the first access token to be revoked", func() bool {
					return e.userinfoStatus(t, first["access_token"].(string)) == 401
				})
				return st, errc
			}},
		{name: "PKCE verifier mismatch", wantStatus: 400, wantError: "invalid_grant", svc: "auth-service", event: "auth.grant.invalid/pkce_mismatch",
			attack: func(t *testing.T) (int, string) {
				code, _ := e.newCode(t, b, user.Email, user.Password)
				st, errc, _ := e.redeem(t, code, oauth2.GenerateVerifier())
				return st, errc
			}},
		{name: "refresh reuse revokes the family", wantStatus: 400, wantError: "invalid_grant", svc: "auth-service", event: "auth.refresh.reused/",
			attack: func(t *testing.T) (int, string) {
				code, verifier := e.newCode(t, b, user.Email, user.Password)
				_, _, tok := e.redeem(t, code, verifier)
				old := tok["refresh_token"].(string)
				refresh := func(rt string) (int, string, map[string]any) {
					return e.postToken(t, e.public, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"rampart-demo"}}, [2]string{})
				}
				st, _, next := refresh(old)
				if st != http.StatusOK {
					t.Fatalf("first refresh %d", st)
				}
				st, errc, _ := refresh(old)
				if s2, _, _ := refresh(next["refresh_token"].(string)); s2 != http.StatusBadRequest {
					t.Errorf("the rotated token still works after reuse: %d", s2)
				}
				waitFor(t, 2*time.Second, "the family's access token to be revoked", func() bool {
					return e.userinfoStatus(t, next["access_token"].(string)) == 401
				})
				return st, errc
			}},
		{name: "wrong client secret", wantStatus: 401, wantError: "invalid_client", svc: "auth-service", event: "auth.client.failed/bad_secret",
			attack: func(t *testing.T) (int, string) {
				st, errc, _ := e.postToken(t, e.public, url.Values{"grant_type": {"client_credentials"}}, [2]string{"rampart-machine", "wrong"})
				return st, errc
			}},
		{name: "unknown client", wantStatus: 401, wantError: "invalid_client", svc: "auth-service", event: "auth.client.failed/unknown_client",
			attack: func(t *testing.T) (int, string) {
				st, errc, _ := e.postToken(t, e.public, url.Values{"grant_type": {"client_credentials"}}, [2]string{"nobody", "x"})
				return st, errc
			}},
		{name: "tls_client_auth through the gateway (no certificate of its own)", wantStatus: 401, wantError: "invalid_client", svc: "auth-service", event: "auth.client.failed/bad_certificate",
			attack: func(t *testing.T) (int, string) {
				st, errc, _ := e.postToken(t, e.public, url.Values{"grant_type": {"client_credentials"}, "client_id": {"order-service"}}, [2]string{})
				return st, errc
			}},
		{name: "tls_client_auth with another service's certificate", wantStatus: 401, wantError: "invalid_client", svc: "auth-service", event: "auth.client.failed/bad_certificate",
			attack: func(t *testing.T) (int, string) {
				c := e.clientWithCert(t, e.CA, "user-service")
				st, errc, _ := e.postTokenAt(t, c, e.Endpoints.Services["auth-service"].API,
					url.Values{"grant_type": {"client_credentials"}, "client_id": {"order-service"}}, [2]string{})
				return st, errc
			}},
	}
	for _, bad := range []struct{ name, uri string }{
		{"suffix", "http://127.0.0.1:53682/callbackx"},
		{"sub-path", "http://127.0.0.1:53682/callback/evil"},
		{"localhost is not loopback", "http://localhost:53682/callback"},
		{"https on loopback", "https://127.0.0.1:53682/callback"},
		{"fragment", "http://127.0.0.1:53682/callback#x"},
		{"userinfo trick", "http://127.0.0.1:53682@evil.example/callback"},
		{"other host", "https://evil.example/callback"},
	} {
		rows = append(rows, row{name: "redirect URI " + bad.name, wantStatus: 400, svc: "auth-service", event: "auth.grant.invalid/redirect_mismatch",
			attack: func(t *testing.T) (int, string) {
				resp, _ := get(t, e.browser(t), e.authURL(t, oauth2.GenerateVerifier(), "s", bad.uri, nil), nil)
				if loc := resp.Header.Get("Location"); loc != "" {
					t.Errorf("redirected to %q", loc)
				}
				return resp.StatusCode, ""
			}})
	}
	// Login CSRF: a pending request's form posted without its token, with
	// a forged one, and from another browser (no binding cookie).
	csrfRow := func(name string, mutate func(f url.Values) *http.Client) row {
		return row{name: "login CSRF " + name, wantStatus: 403, svc: "auth-service", event: "auth.login.failed/csrf",
			attack: func(t *testing.T) (int, string) {
				br := e.browser(t)
				resp, page := get(t, br, e.authURL(t, oauth2.GenerateVerifier(), "s", callback, nil), nil)
				f := parseForm(t, page)
				f.values.Set("email", user.Email)
				f.values.Set("password", user.Password)
				c := mutate(f.values)
				if c == nil {
					c = br
				}
				post, err := c.PostForm(resp.Request.URL.ResolveReference(&url.URL{Path: f.action}).String(), f.values)
				if err != nil {
					t.Fatal(err)
				}
				_ = post.Body.Close()
				return post.StatusCode, ""
			}}
	}
	rows = append(rows,
		csrfRow("token missing", func(f url.Values) *http.Client { f.Del("csrf_token"); return nil }),
		csrfRow("token forged", func(f url.Values) *http.Client { f.Set("csrf_token", "forged"); return nil }),
		csrfRow("other browser", func(url.Values) *http.Client { return e.browser(t) }),
	)
	// PKCE plain and a missing challenge are refused at the authorization
	// endpoint, back to the (valid) redirect URI.
	rows = append(rows, row{name: "PKCE plain refused", wantStatus: 303, wantError: "invalid_request", svc: "",
		attack: func(t *testing.T) (int, string) {
			u := e.authURL(t, oauth2.GenerateVerifier(), "s", callback, url.Values{"code_challenge_method": {"plain"}})
			resp, _ := get(t, e.browser(t), u, nil)
			loc, _ := url.Parse(resp.Header.Get("Location"))
			return resp.StatusCode, loc.Query().Get("error")
		}})

	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			var typ, reason string
			var before float64
			if r.svc != "" {
				typ, reason, _ = strings.Cut(r.event, "/")
				before = e.metric(t, r.svc, "rampart_security_events_total", secEventLabels(reason, r.svc, typ))
			}
			status, errc := r.attack(t)
			if status != r.wantStatus || errc != r.wantError {
				t.Errorf("got %d %q, want %d %q", status, errc, r.wantStatus, r.wantError)
			}
			if r.svc != "" {
				after := e.metric(t, r.svc, "rampart_security_events_total", secEventLabels(reason, r.svc, typ))
				if after-before != 1 {
					t.Errorf("%s events: %v → %v, want exactly one more", r.event, before, after)
				}
			}
		})
	}
}

// TestAccountLockout: failures on one account lock it (auth.account.locked
// once), after which even the right password fails with reason locked.
func TestAccountLockout(t *testing.T) {
	e := start(t)
	email := "victim-" + strings.ToLower(randomString(t)[:8]) + "@rampart.test"
	pw := "a perfectly fine passphrase"
	body := `{"email":"` + email + `","password":"` + pw + `","display_name":"Victim"}`
	resp, err := e.public.Post(e.Endpoints.Gateway+"/api/v1/auth/register", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register → %d", resp.StatusCode)
	}
	lbl := func(typ, reason string) string { return secEventLabels(reason, "auth-service", typ) }
	metric := func(typ, reason string) float64 {
		return e.metric(t, "auth-service", "rampart_security_events_total", lbl(typ, reason))
	}
	bad0, locked0 := metric("auth.login.failed", "bad_credentials"), metric("auth.account.locked", "")
	for range 5 {
		b := e.browser(t)
		if st := e.login(t, b, e.authURL(t, oauth2.GenerateVerifier(), "s", callback, nil), email, "wrong password!!").StatusCode; st != http.StatusUnauthorized {
			t.Fatalf("wrong password → %d", st)
		}
	}
	if got := metric("auth.login.failed", "bad_credentials") - bad0; got != 5 {
		t.Errorf("bad_credentials events: %v", got)
	}
	if got := metric("auth.account.locked", "") - locked0; got != 1 {
		t.Errorf("locked events: %v, want 1", got)
	}
	lockedBefore := metric("auth.login.failed", "locked")
	b := e.browser(t)
	if st := e.login(t, b, e.authURL(t, oauth2.GenerateVerifier(), "s", callback, nil), email, pw).StatusCode; st != http.StatusUnauthorized {
		t.Fatalf("right password on a locked account → %d", st)
	}
	if got := metric("auth.login.failed", "locked") - lockedBefore; got != 1 {
		t.Errorf("locked-login events: %v", got)
	}
}
