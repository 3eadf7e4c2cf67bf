package oauth

import (
	"crypto/subtle"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/auth-service/internal/account"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/secevent"
)

// Cookie names. The __Host- prefix makes the browser refuse the cookie
// unless it is Secure, has Path=/ and no Domain: no subdomain and no plain
// HTTP page can set or overwrite it. The logout confirmation binds its
// form to the browser as the login form does, under a cookie of its own so
// that neither form clears or overwrites the other's binding.
const (
	sessionCookie = "__Host-rampart_session"
	loginCookie   = "__Host-rampart_login"
	logoutCookie  = "__Host-rampart_logout"
)

// authzRequest is a validated authorization request.
type authzRequest struct {
	ClientID      string `json:"client_id"`
	RedirectURI   string `json:"redirect_uri"`
	Scope         string `json:"scope"`
	State         string `json:"state,omitempty"`
	Nonce         string `json:"nonce,omitempty"`
	CodeChallenge string `json:"code_challenge"`
	Prompt        string `json:"prompt,omitempty"`
}

var (
	// An S256 challenge is base64url(SHA-256): exactly 43 characters.
	challengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	// RFC 7636 §4.1: 43–128 unreserved characters.
	verifierRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
)

// authorize is GET /oauth2/authorize (RFC 6749 §4.1.1 with RFC 7636 and
// the OAuth 2.1 rules). Until the client and its redirect URI are known
// good, errors are shown to the user and never redirected: redirecting to
// an unvalidated URI would make us an open redirector (RFC 9700 §4.11).
func (s *Server) authorize(c *gin.Context) {
	p, err := ParseQuery(c.Request)
	if err != nil {
		s.errorPage(c, http.StatusBadRequest, "The sign-in request is malformed: "+err.Error()+".")
		return
	}
	cl, err := s.lookupClient(c, p.Get("client_id"))
	if err != nil {
		s.errorPage(c, http.StatusServiceUnavailable, "Sign-in is unavailable right now. Try again shortly.")
		return
	}
	if cl == nil {
		s.errorPage(c, http.StatusBadRequest, "The application that sent you here is not registered.")
		return
	}
	kl := &client{Client: cl}
	if !matchRedirect(kl.redirectURIs(), p.Get("redirect_uri")) {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonRedirectMismatch, "", cl.ID)
		s.errorPage(c, http.StatusBadRequest, "The application asked to return you to an address it has not registered.")
		return
	}
	req := authzRequest{
		ClientID: cl.ID, RedirectURI: p.Get("redirect_uri"), State: p.Get("state"), Nonce: p.Get("nonce"),
		CodeChallenge: p.Get("code_challenge"), Prompt: p.Get("prompt"),
	}
	fail := func(code, desc string) { s.redirectError(c, req, code, desc) }
	switch {
	case p.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case !kl.allowsGrant("authorization_code"):
		fail("unauthorized_client", "this client may not use the authorization code flow")
		return
	case p.Get("request") != "" || p.Get("request_uri") != "":
		fail("request_not_supported", "request objects are not supported")
		return
	case p.Get("response_mode") != "" && p.Get("response_mode") != "query":
		fail("invalid_request", "only response_mode=query is supported")
		return
	case p.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
		return
	case !challengeRE.MatchString(req.CodeChallenge):
		fail("invalid_request", "code_challenge must be a base64url SHA-256 value")
		return
	case len(req.State) > 1024 || len(req.Nonce) > 255:
		fail("invalid_request", "state or nonce is too long")
		return
	}
	for _, pr := range strings.Fields(req.Prompt) {
		if pr != "none" && pr != "login" && pr != "consent" {
			fail("invalid_request", "unsupported prompt value")
			return
		}
	}
	scopes := strings.Fields(p.Get("scope"))
	for _, sc := range scopes {
		if !slices.Contains(kl.scopes(), sc) {
			// A scope beyond the registration is an escalation attempt,
			// recorded as the token endpoint records one.
			s.emit(c, secevent.GrantInvalid, secevent.ReasonScope, "", cl.ID)
			fail("invalid_scope", "the client may not request scope "+sc)
			return
		}
	}
	req.Scope = strings.Join(scopes, " ")

	// An existing session signs the user in silently, unless the client
	// insists on a fresh login.
	prompts := strings.Fields(req.Prompt)
	if !slices.Contains(prompts, "login") {
		if sess, acct := s.currentSession(c); sess != nil {
			s.issueCode(c, req, acct, sess)
			return
		}
	}
	if slices.Contains(prompts, "none") {
		fail("login_required", "the user is not signed in")
		return
	}
	s.startLogin(c, req)
}

// startLogin stores the request server-side, bound to this browser by a
// fresh __Host- cookie, and sends the user to the login form.
func (s *Server) startLogin(c *gin.Context, req authzRequest) {
	id, binding := randomToken(), randomToken()
	params, _ := json.Marshal(req)
	row := store.AuthRequest{
		IDHash: hash(id), LoginHash: hash(binding), CSRFHash: hash(randomToken()),
		Params: string(params), ExpiresAt: s.now().Add(s.cfg.LoginRequestTTL).UTC(),
	}
	if err := s.db.WithContext(c.Request.Context()).Create(&row).Error; err != nil {
		s.errorPage(c, http.StatusServiceUnavailable, "Sign-in is unavailable right now. Try again shortly.")
		return
	}
	setCookie(c, loginCookie, binding, s.cfg.LoginRequestTTL)
	c.Redirect(http.StatusSeeOther, "/login?request="+url.QueryEscape(id))
}

// loginForm is what the login template renders.
type loginForm struct {
	Request, CSRF, Email, Error string
}

// loginPage is GET /login: the form for a pending authorization request.
func (s *Server) loginPage(c *gin.Context) {
	p, err := ParseQuery(c.Request)
	if err != nil || p.Get("request") == "" {
		s.errorPage(c, http.StatusBadRequest, "Start signing in from the application you want to use.")
		return
	}
	row, ok := s.pendingRequest(c, p.Get("request"))
	if !ok {
		s.errorPage(c, http.StatusBadRequest, "This sign-in link has expired. Go back to the application and start again.")
		return
	}
	s.renderLogin(c, http.StatusOK, row, p.Get("request"), "", "")
}

// renderLogin issues a fresh CSRF token for the request and renders the form.
func (s *Server) renderLogin(c *gin.Context, status int, row *store.AuthRequest, id, email, msg string) {
	csrf := randomToken()
	if err := s.db.WithContext(c.Request.Context()).Model(&store.AuthRequest{}).
		Where("id_hash = ?", row.IDHash).Update("csrf_hash", hash(csrf)).Error; err != nil {
		s.errorPage(c, http.StatusServiceUnavailable, "Sign-in is unavailable right now. Try again shortly.")
		return
	}
	s.page(c, status, "login", loginForm{Request: id, CSRF: csrf, Email: email, Error: msg})
}

// pendingRequest loads an unexpired authorization request that belongs to
// this browser (its login cookie matches).
func (s *Server) pendingRequest(c *gin.Context, id string) (*store.AuthRequest, bool) {
	return s.boundRequest(c, hash(id), loginCookie)
}

// boundRequest loads the unexpired form request stored under idHash whose
// browser binding is this browser's cookie: the login form's and the
// logout confirmation's.
func (s *Server) boundRequest(c *gin.Context, idHash, cookie string) (*store.AuthRequest, bool) {
	var row store.AuthRequest
	if err := s.db.WithContext(c.Request.Context()).Where("id_hash = ?", idHash).Take(&row).Error; err != nil {
		return nil, false
	}
	if s.now().After(row.ExpiresAt) {
		return nil, false
	}
	binding, err := c.Cookie(cookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(hash(binding)), []byte(row.LoginHash)) != 1 {
		return nil, false
	}
	return &row, true
}

// csrfValid reports whether token is the CSRF token last rendered into
// row's form.
func csrfValid(row *store.AuthRequest, token string) bool {
	return row != nil && token != "" && subtle.ConstantTimeCompare([]byte(hash(token)), []byte(row.CSRFHash)) == 1
}

// loginSubmit is POST /login.
func (s *Server) loginSubmit(c *gin.Context) {
	ip := s.clientIP(c.Request)
	if !s.throttle.Allow("login", ip) {
		s.events.Emit(c.Request.Context(), secevent.Event{
			Type: secevent.RateLimitExceeded, Reason: "login", ClientIP: ip, Route: c.FullPath(),
		})
		c.Header("Retry-After", "60")
		s.errorPage(c, http.StatusTooManyRequests, "Too many sign-in attempts from your network. Wait a minute and try again.")
		return
	}
	p, err := ParseForm(c.Request)
	if err != nil {
		s.errorPage(c, http.StatusBadRequest, "The sign-in form was malformed: "+err.Error()+".")
		return
	}
	// The browser binding and the CSRF token together stop login CSRF: a
	// forged cross-site post has neither this browser's __Host- cookie
	// value nor the token rendered into its form.
	row, ok := s.pendingRequest(c, p.Get("request"))
	if !ok || !csrfValid(row, p.Get("csrf_token")) {
		s.emit(c, secevent.LoginFailed, secevent.ReasonCSRF, "", "")
		s.errorPage(c, http.StatusForbidden, "This sign-in form has expired or was not sent by this site. Go back to the application and start again.")
		return
	}
	var req authzRequest
	if err := json.Unmarshal([]byte(row.Params), &req); err != nil {
		s.errorPage(c, http.StatusBadRequest, "This sign-in request is damaged. Start again.")
		return
	}
	email := strings.TrimSpace(p.Get("email"))
	res, err := s.accounts.Authenticate(c.Request.Context(), email, p.Get("password"))
	if err != nil {
		s.errorPage(c, http.StatusServiceUnavailable, "Sign-in is unavailable right now. Try again shortly.")
		return
	}
	if res.Reason != "" {
		subject := ""
		if res.Account != nil {
			subject = res.Account.ID
		}
		s.emit(c, secevent.LoginFailed, res.Reason, subject, req.ClientID)
		if res.JustLocked {
			s.emit(c, secevent.AccountLocked, secevent.ReasonNone, subject, req.ClientID)
		}
		// One message for every failure: which check failed is for the
		// security log, not for someone guessing accounts.
		s.renderLogin(c, http.StatusUnauthorized, row, p.Get("request"), email,
			"The email or password is incorrect, or the account cannot sign in right now.")
		return
	}
	s.emit(c, secevent.LoginSucceeded, secevent.ReasonNone, res.Account.ID, req.ClientID)

	// A new session id on every login: a session fixed before login is
	// worth nothing after it.
	sid := randomToken()
	now := s.now().UTC()
	sess := store.Session{IDHash: hash(sid), AccountID: res.Account.ID, AuthTime: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}
	err = s.db.WithContext(c.Request.Context()).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&sess).Error; err != nil {
			return err
		}
		return tx.Where("id_hash = ?", row.IDHash).Delete(&store.AuthRequest{}).Error
	})
	if err != nil {
		s.errorPage(c, http.StatusServiceUnavailable, "Sign-in is unavailable right now. Try again shortly.")
		return
	}
	setCookie(c, sessionCookie, sid, s.cfg.SessionTTL)
	setCookie(c, loginCookie, "", -1)
	s.issueCode(c, req, res.Account, &sess)
}

// currentSession returns the browser's live session and its account.
func (s *Server) currentSession(c *gin.Context) (*store.Session, *store.Account) {
	sid, err := c.Cookie(sessionCookie)
	if err != nil || sid == "" {
		return nil, nil
	}
	var sess store.Session
	if err := s.db.WithContext(c.Request.Context()).Where("id_hash = ?", hash(sid)).Take(&sess).Error; err != nil {
		return nil, nil
	}
	if s.now().After(sess.ExpiresAt) {
		return nil, nil
	}
	acct, err := s.accounts.Get(c.Request.Context(), sess.AccountID)
	if err != nil || acct == nil || acct.Disabled {
		return nil, nil
	}
	return &sess, acct
}

// issueCode mints a code for req and redirects to the client. The scope is
// what was asked, narrowed to what the user's roles allow.
func (s *Server) issueCode(c *gin.Context, req authzRequest, acct *store.Account, sess *store.Session) {
	code := randomToken()
	granted := account.GrantableScopes(acct.RoleList(), strings.Fields(req.Scope))
	row := store.AuthCode{
		CodeHash: hash(code), ClientID: req.ClientID, AccountID: acct.ID, RedirectURI: req.RedirectURI,
		Scope: strings.Join(granted, " "), Nonce: req.Nonce, CodeChallenge: req.CodeChallenge,
		SessionIDHash: sess.IDHash, AuthTime: sess.AuthTime, ExpiresAt: s.now().Add(s.cfg.CodeTTL).UTC(),
	}
	if err := s.db.WithContext(c.Request.Context()).Create(&row).Error; err != nil {
		s.redirectError(c, req, "server_error", "the code could not be issued")
		return
	}
	q := url.Values{"code": {code}, "iss": {s.cfg.Issuer}}
	if req.State != "" {
		q.Set("state", req.State)
	}
	c.Redirect(http.StatusSeeOther, withQuery(req.RedirectURI, q))
}

// redirectError returns an error to the (validated) redirect URI, with
// state and iss (RFC 9207, so a client can tell which server answered).
func (s *Server) redirectError(c *gin.Context, req authzRequest, code, desc string) {
	q := url.Values{"error": {code}, "error_description": {desc}, "iss": {s.cfg.Issuer}}
	if req.State != "" {
		q.Set("state", req.State)
	}
	c.Redirect(http.StatusSeeOther, withQuery(req.RedirectURI, q))
}

// withQuery appends q to u, keeping u's own query (RFC 6749 §3.1.2).
func withQuery(u string, q url.Values) string {
	if strings.Contains(u, "?") {
		return u + "&" + q.Encode()
	}
	return u + "?" + q.Encode()
}

func setCookie(c *gin.Context, name, value string, ttl time.Duration) {
	maxAge := int(ttl / time.Second)
	if ttl < 0 {
		maxAge = -1
	}
	http.SetCookie(c.Writer, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// page renders an HTML page with a policy that allows no script at all.
func (s *Server) page(c *gin.Context, status int, name string, data any) {
	c.Header("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	c.Header("X-Frame-Options", "DENY")
	c.Header("Referrer-Policy", "no-referrer")
	c.Header("Cache-Control", "no-store")
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := s.pages.ExecuteTemplate(c.Writer, name, data); err != nil {
		s.log.Error("render page", "page", name, "error", err)
	}
}

func (s *Server) errorPage(c *gin.Context, status int, msg string) {
	s.page(c, status, "error", struct{ Message string }{msg})
	c.Abort()
}

var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rampart — sign in</title></head><body>{{end}}
{{define "login"}}{{template "head"}}
<main>
<h1>Sign in to Rampart</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="request" value="{{.Request}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<p><label for="email">Email</label><br><input id="email" name="email" type="email" autocomplete="username" required value="{{.Email}}"></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
</main></body></html>{{end}}
{{define "error"}}{{template "head"}}
<main><h1>Sign-in problem</h1><p>{{.Message}}</p></main></body></html>{{end}}
{{define "logout"}}{{template "head"}}
<main>
<h1>Sign out of Rampart?</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/oauth2/logout">
<input type="hidden" name="request" value="{{.Request}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
{{with .ClientID}}<input type="hidden" name="client_id" value="{{.}}">{{end}}
{{with .PostLogoutRedirectURI}}<input type="hidden" name="post_logout_redirect_uri" value="{{.}}">{{end}}
{{with .State}}<input type="hidden" name="state" value="{{.}}">{{end}}
<p><button type="submit">Sign out</button></p>
</form>
</main></body></html>{{end}}
{{define "loggedout"}}{{template "head"}}
<main><h1>Signed out</h1><p>You are signed out of Rampart.</p>{{with .}}<p>{{.}}</p>{{end}}</main></body></html>{{end}}
`))
