package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/html"
)

// DemoClient is the public PKCE client every simulated user signs in with.
const DemoClient = "rampart-demo"

// callback is a loopback redirect URI on an arbitrary port (RFC 8252
// §7.3): nothing listens there, the flow reads the code from the Location.
const callback = "http://127.0.0.1:53682/callback"

// UserScopes are what a simulated user asks for; a token carries only
// those its roles allow.
const UserScopes = "openid profile email offline_access users:read users:write orders:read orders:write"

// refreshMargin is how long before expiry a session refreshes its token.
const refreshMargin = 60 * time.Second

// Session is one signed-in user: an access token refreshed before it
// expires. Refresh tokens rotate on every use and reusing one revokes the
// whole family, so a session refreshes under its lock, once.
type Session struct {
	c     *Client
	Email string
	// password is kept to sign the user in again (the mix's login step).
	password string
	// Subject is the token's sub: the account and profile id.
	Subject string
	mu      sync.Mutex
	access  string
	refresh string
	expiry  time.Time
	idToken string
	// browser holds the authorization server's session cookie, for
	// RP-initiated logout.
	browser cookies
}

// Client returns the session's HTTP client.
func (s *Session) Client() *Client { return s.c }

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	ExpiresIn    int    `json:"expires_in"`
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope"`
}

// Login signs email in through the real browser flow: GET
// /oauth2/authorize with PKCE S256 → 303 to the login form → GET /login
// (form with a CSRF token and hidden fields, bound to a __Host- cookie) →
// POST /login → 303 to the loopback redirect URI with code, state and iss
// (not followed) → POST /oauth2/token with the verifier.
func Login(ctx context.Context, c *Client, email, password, scope string) (*Session, error) {
	verifier := randomB64(32)
	sum := sha256.Sum256([]byte(verifier))
	state, nonce := randomB64(16), randomB64(16)
	q := url.Values{
		"response_type": {"code"}, "client_id": {DemoClient}, "redirect_uri": {callback},
		"scope": {scope}, "state": {state}, "nonce": {nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	jar := cookies{}
	resp, err := c.Do(ctx, Request{Tag: "authorize", Method: http.MethodGet, Path: "/oauth2/authorize?" + q.Encode(), Expect: []int{http.StatusSeeOther, http.StatusFound}})
	if err != nil {
		return nil, err
	}
	if !resp.OK {
		return nil, fmt.Errorf("authorize: status %d", resp.StatusCode)
	}
	jar.keep(resp.Response)
	loginURL := resp.Header.Get("Location")
	resp, err = c.Do(ctx, Request{Tag: "login_form", Method: http.MethodGet, Path: loginURL, Cookies: jar.list()})
	if err != nil {
		return nil, err
	}
	if !resp.OK {
		return nil, fmt.Errorf("login form: status %d", resp.StatusCode)
	}
	jar.keep(resp.Response)
	action, values, err := parseForm(resp.Body)
	if err != nil {
		return nil, err
	}
	if values.Get("csrf_token") == "" {
		return nil, errors.New("login form has no CSRF token")
	}
	values.Set("email", email)
	values.Set("password", password)
	if action == "" {
		action = "/login"
	}
	resp, err = c.Do(ctx, Request{
		Tag: "login_submit", Method: http.MethodPost, Path: action, Body: []byte(values.Encode()),
		Header:  http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		Cookies: jar.list(), Expect: []int{http.StatusSeeOther, http.StatusFound},
	})
	if err != nil {
		return nil, err
	}
	if !resp.OK {
		return nil, fmt.Errorf("login %s: status %d", email, resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), callback) {
		return nil, fmt.Errorf("login redirected to %q", resp.Header.Get("Location"))
	}
	cb := loc.Query()
	if cb.Get("state") != state || cb.Get("code") == "" {
		return nil, fmt.Errorf("callback state or code missing: %v", cb)
	}
	jar.keep(resp.Response)
	s := &Session{c: c, Email: email, browser: jar}
	err = s.token(ctx, "token_code", url.Values{
		"grant_type": {"authorization_code"}, "code": {cb.Get("code")}, "redirect_uri": {callback},
		"client_id": {DemoClient}, "code_verifier": {verifier},
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// token posts form to /oauth2/token and keeps the tokens.
func (s *Session) token(ctx context.Context, tag string, form url.Values) error {
	resp, err := s.c.Do(ctx, Request{
		Tag: tag, Method: http.MethodPost, Path: "/oauth2/token", Body: []byte(form.Encode()),
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
	})
	if err != nil {
		return err
	}
	if !resp.OK {
		return fmt.Errorf("%s: status %d: %s", tag, resp.StatusCode, resp.Body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(resp.Body, &tr); err != nil || tr.AccessToken == "" {
		return fmt.Errorf("%s: bad token response: %w", tag, err)
	}
	s.access, s.expiry = tr.AccessToken, time.Now().Add(time.Duration(tr.ExpiresIn)*time.Second)
	if tr.RefreshToken != "" {
		s.refresh = tr.RefreshToken
	}
	if tr.IDToken != "" {
		s.idToken = tr.IDToken
	}
	if s.Subject == "" {
		s.Subject = subjectOf(tr.AccessToken)
	}
	return nil
}

// Token returns a valid access token, refreshing it first when it
// expires within refreshMargin.
func (s *Session) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Until(s.expiry) > refreshMargin {
		return s.access, nil
	}
	if err := s.refreshLocked(ctx); err != nil {
		return "", err
	}
	return s.access, nil
}

// Refresh redeems the refresh token now (the load mix's "refresh" step).
func (s *Session) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshLocked(ctx)
}

func (s *Session) refreshLocked(ctx context.Context) error {
	if s.refresh == "" {
		return errors.New("session has no refresh token")
	}
	return s.token(ctx, "token_refresh", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {s.refresh}, "client_id": {DemoClient},
	})
}

// Tokens returns the current access, refresh and ID tokens.
func (s *Session) Tokens() (access, refresh, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access, s.refresh, s.idToken
}

// Do performs req with the session's bearer token.
func (s *Session) Do(ctx context.Context, req Request) (*Response, error) {
	tok, err := s.Token(ctx)
	if err != nil {
		return nil, err
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return s.c.Do(ctx, req)
}

// subjectOf reads sub from a JWT's payload without verifying it: the
// client only needs its own id, the servers verify.
func subjectOf(jwt string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(b, &c)
	return c.Sub
}

// cookies is the little cookie jar one login needs.
type cookies map[string]*http.Cookie

func (j cookies) keep(r *http.Response) {
	for _, c := range r.Cookies() {
		// Only name and value travel back in a Cookie request header;
		// the attributes are the server's business, not the client's.
		j[c.Name] = &http.Cookie{Name: c.Name, Value: c.Value} //nolint:gosec // G124: a client-side jar entry, never sent as Set-Cookie
	}
}

func (j cookies) list() []*http.Cookie {
	out := make([]*http.Cookie, 0, len(j))
	for _, c := range j {
		out = append(out, c)
	}
	return out
}

// parseForm returns the first form's action and named inputs, as a
// browser would submit them.
func parseForm(page []byte) (string, url.Values, error) {
	doc, err := html.Parse(strings.NewReader(string(page)))
	if err != nil {
		return "", nil, fmt.Errorf("parse login page: %w", err)
	}
	var action string
	values := url.Values{}
	found := false
	var walk func(*html.Node, bool)
	walk = func(n *html.Node, in bool) {
		if n.Type == html.ElementNode && n.Data == "form" && !found {
			found, in = true, true
			for _, a := range n.Attr {
				if a.Key == "action" {
					action = a.Val
				}
			}
		}
		if in && n.Type == html.ElementNode && n.Data == "input" {
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
				values.Set(name, value)
			}
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch, in)
		}
	}
	walk(doc, false)
	if !found {
		return "", nil, errors.New("no form on the login page")
	}
	return action, values, nil
}

func randomB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
