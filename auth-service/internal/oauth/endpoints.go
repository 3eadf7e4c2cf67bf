package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/tokens"
)

// revoke is POST /oauth2/revoke (RFC 7009). Any authenticated client may
// revoke its own tokens; the answer is 200 whether or not the token was
// valid, so the endpoint cannot be used to test tokens.
func (s *Server) revoke(c *gin.Context) {
	p, err := ParseForm(c.Request)
	if err != nil {
		writeError(c, errInvalidRequest(err.Error()))
		return
	}
	cl, oerr := s.authenticateClient(c, p)
	if oerr != nil {
		writeError(c, oerr)
		return
	}
	tok := p.Get("token")
	if tok == "" {
		writeError(c, errInvalidRequest("token is required"))
		return
	}
	ctx := c.Request.Context()
	// token_type_hint is not consulted: RFC 7009 §2.1 has the server
	// search every token type when the token is not found under the hint,
	// and skipping the refresh-token lookup for hint=access_token
	// answered 200 while the refresh token lived on. The lookup is one
	// indexed read, so there is nothing to save by ordering on the hint.
	if s.revokeRefresh(c, cl, tok) {
		c.Status(http.StatusOK)
		return
	}
	if claims, err := s.clientAccessToken(ctx, cl, tok); err == nil && claims.ClientID == cl.ID {
		if err := s.revs.RevokeToken(ctx, claims.ID, claims.ExpiresAt); err != nil {
			writeError(c, &oauthError{Code: "temporarily_unavailable", Description: "try again", status: http.StatusServiceUnavailable})
			return
		}
		s.emit(c, secevent.TokenRevoked, secevent.ReasonUser, claims.Subject, cl.ID)
	}
	c.Status(http.StatusOK)
}

// clientAccessToken verifies an access token for the public API or for one
// of the audiences cl is registered for. Revocation needs both: a client's
// client_credentials and exchanged tokens for a service are its tokens
// too, and checked against the public API's audience alone they were
// answered 200 and never revoked.
func (s *Server) clientAccessToken(ctx context.Context, cl *client, raw string) (*tokens.Claims, error) {
	claims, err := s.access.Verify(ctx, raw)
	if tokens.ReasonOf(err) != tokens.ReasonAudience {
		return claims, err
	}
	for _, aud := range cl.audiences() {
		o := s.accessOpts
		o.Audience = aud
		v, verr := tokens.NewVerifier(o)
		if verr != nil {
			return nil, verr
		}
		if claims, err = v.Verify(ctx, raw); err == nil {
			return claims, nil
		}
	}
	return nil, err
}

// revokeRefresh revokes the family of a refresh token owned by cl.
func (s *Server) revokeRefresh(c *gin.Context, cl *client, raw string) bool {
	ctx := c.Request.Context()
	var rt store.RefreshToken
	if err := s.db.WithContext(ctx).Where("token_hash = ?", hash(raw)).Take(&rt).Error; err != nil {
		return false
	}
	var fam store.TokenFamily
	if err := s.db.WithContext(ctx).Where("id = ?", rt.FamilyID).Take(&fam).Error; err != nil || fam.ClientID != cl.ID {
		return false
	}
	s.revokeFamily(ctx, fam.ID, "revoked")
	s.emit(c, secevent.TokenRevoked, secevent.ReasonUser, fam.AccountID, cl.ID)
	return true
}

// introspect is POST /oauth2/introspect (RFC 7662), for confidential and
// tls_client_auth clients only: a public client cannot keep the
// credentials that would make it a resource server.
func (s *Server) introspect(c *gin.Context) {
	p, err := ParseForm(c.Request)
	if err != nil {
		writeError(c, errInvalidRequest(err.Error()))
		return
	}
	cl, oerr := s.authenticateClient(c, p)
	if oerr != nil {
		writeError(c, oerr)
		return
	}
	if cl.Type == store.ClientPublic {
		// A client using an endpoint it may not use is probing, as one
		// using a grant it is not registered for is (token).
		s.emit(c, secevent.GrantInvalid, secevent.ReasonClientMismatch, "", cl.ID)
		writeError(c, errInvalidClient("public clients may not introspect"))
		return
	}
	noStore(c)
	tok := p.Get("token")
	inactive := gin.H{"active": false}
	if tok == "" {
		writeError(c, errInvalidRequest("token is required"))
		return
	}
	// token_type_hint is not consulted: when the token is not found under
	// the hint, RFC 7662 §2.1 has the server search its other types, and
	// an access token sent with hint=refresh_token was answered inactive.
	if cl2, err := s.access.Verify(c.Request.Context(), tok); err == nil {
		out := gin.H{
			"active": true, "token_type": "Bearer", "sub": cl2.Subject, "client_id": cl2.ClientID,
			"scope": strings.Join(cl2.Scopes, " "), "exp": cl2.ExpiresAt.Unix(), "iat": cl2.IssuedAt.Unix(),
			"iss": cl2.Issuer, "aud": cl2.Audience, "jti": cl2.ID,
		}
		if len(cl2.Roles) > 0 {
			out["roles"] = cl2.Roles
		}
		if cl2.CertThumbprint != "" {
			out["cnf"] = gin.H{"x5t#S256": cl2.CertThumbprint}
		}
		if cl2.Actor != "" {
			out["act"] = gin.H{"sub": cl2.Actor}
		}
		c.JSON(http.StatusOK, out)
		return
	}
	// Refresh tokens are only described to the client that holds them.
	var rt store.RefreshToken
	if err := s.db.WithContext(c.Request.Context()).Where("token_hash = ?", hash(tok)).Take(&rt).Error; err == nil {
		var fam store.TokenFamily
		now := s.now()
		if err := s.db.WithContext(c.Request.Context()).Where("id = ?", rt.FamilyID).Take(&fam).Error; err == nil &&
			fam.ClientID == cl.ID && fam.RevokedAt == nil && rt.UsedAt == nil && now.Before(rt.ExpiresAt) && now.Before(fam.ExpiresAt) {
			c.JSON(http.StatusOK, gin.H{
				"active": true, "token_type": "refresh_token", "sub": fam.AccountID, "client_id": fam.ClientID,
				"scope": fam.Scope, "exp": rt.ExpiresAt.Unix(), "iss": s.cfg.Issuer,
			})
			return
		}
	}
	c.JSON(http.StatusOK, inactive)
}

// userinfo is the OIDC UserInfo endpoint: bearer access token with the
// openid scope (RFC 6750 errors).
func (s *Server) userinfo(c *gin.Context) {
	raw, err := tokens.BearerToken(c.GetHeader("Authorization"))
	if err != nil || raw == "" {
		reason := secevent.ReasonMissing
		if c.GetHeader("Authorization") != "" {
			reason = secevent.ReasonMalformed
		}
		s.emit(c, secevent.TokenRejected, reason, "", "")
		c.Header("WWW-Authenticate", `Bearer realm="rampart"`)
		if reason == secevent.ReasonMalformed {
			c.Header("WWW-Authenticate", `Bearer realm="rampart", error="invalid_token"`)
		}
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "invalid_token"})
		return
	}
	claims, err := s.access.Verify(c.Request.Context(), raw)
	if err != nil {
		s.emit(c, secevent.TokenRejected, secevent.Reason(tokens.ReasonOf(err)), "", "")
		c.Header("WWW-Authenticate", `Bearer realm="rampart", error="invalid_token"`)
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "invalid_token"})
		return
	}
	if !claims.HasScope("openid") {
		s.emit(c, secevent.AccessDenied, secevent.ReasonScope, claims.Subject, claims.ClientID)
		c.Header("WWW-Authenticate", `Bearer realm="rampart", error="insufficient_scope", scope="openid"`)
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "insufficient_scope"})
		return
	}
	acct, err := s.accounts.Get(c.Request.Context(), claims.Subject)
	if err != nil {
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": "temporarily_unavailable"})
		return
	}
	if acct == nil || acct.Disabled {
		s.emit(c, secevent.TokenRejected, secevent.ReasonRevoked, claims.Subject, claims.ClientID)
		c.Header("WWW-Authenticate", `Bearer realm="rampart", error="invalid_token"`)
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "invalid_token"})
		return
	}
	out := gin.H{"sub": acct.ID}
	if claims.HasScope("email") {
		out["email"], out["email_verified"] = acct.Email, false
	}
	if claims.HasScope("profile") {
		out["name"] = acct.DisplayName
	}
	noStore(c)
	c.JSON(http.StatusOK, out)
}

// logout is OIDC RP-initiated logout 1.0 (GET and POST /oauth2/logout): it
// ends the browser session and revokes the refresh tokens (and access
// tokens) issued within it. It redirects only to a post_logout_redirect_uri
// registered for the client that id_token_hint (or client_id) names,
// matched as redirect URIs are; state is echoed. A bad hint or an
// unregistered address is refused with a 400 page, no redirect, and one
// security event.
//
// A request that can end a session must show that the user asked for it
// (RP-Initiated Logout §2: without a valid id_token_hint the OP SHOULD ask
// the End-User). Otherwise any page could sign a user out with a top-level
// navigation: logout CSRF. So a GET ends the session at once only with a
// verified hint of this session's user (or when there is no session to
// end); any other GET is answered with a confirmation form — CSRF
// protected as the login form is — that posts the validated parameters
// back, and only that POST ends the session.
func (s *Server) logout(c *gin.Context) {
	post := c.Request.Method == http.MethodPost
	var p Params
	var err error
	if post {
		p, err = ParseForm(c.Request)
	} else {
		p, err = ParseQuery(c.Request)
	}
	if err != nil {
		s.errorPage(c, http.StatusBadRequest, "The sign-out request is malformed.")
		return
	}
	if post && !s.logoutConfirmed(c, p) {
		s.emit(c, secevent.LoginFailed, secevent.ReasonCSRF, "", "")
		s.errorPage(c, http.StatusForbidden, "This sign-out form has expired or was not sent by this site. Go back to the application and sign out again.")
		return
	}

	req := logoutRequest{ClientID: p.Get("client_id"), PostLogoutRedirectURI: p.Get("post_logout_redirect_uri"), State: p.Get("state")}
	hint := p.Get("id_token_hint")
	var hintAud, hintSub string
	var hintReason secevent.Reason
	if hint != "" {
		hintAud, hintSub, hintReason = s.idTokenClaims(hint)
	}
	// Whether the request itself is the user's word: decided before any
	// state changes, from a verified hint and a read of the session.
	confirmed := post
	if !confirmed {
		sess := s.sessionRow(c)
		confirmed = sess == nil || (hint != "" && hintReason == "" && hintSub == sess.AccountID)
	}
	if confirmed {
		s.endSession(c)
	}
	// done answers a request that is not sent back to the client: the
	// signed-out page, or the confirmation form without redirect.
	done := func(status int, msg string) {
		if confirmed {
			var m any
			if msg != "" {
				m = msg
			}
			s.page(c, status, "loggedout", m)
			return
		}
		s.confirmLogout(c, status, logoutRequest{}, msg)
	}

	if hint != "" {
		if hintReason != "" {
			s.emit(c, secevent.TokenRejected, hintReason, "", "")
			done(http.StatusBadRequest, "The application's sign-out request could not be verified, so you will not be sent back to it.")
			return
		}
		if req.ClientID != "" && req.ClientID != hintAud {
			s.emit(c, secevent.GrantInvalid, secevent.ReasonClientMismatch, "", hintAud)
			done(http.StatusBadRequest, "The application's sign-out request is inconsistent, so you will not be sent back to it.")
			return
		}
		req.ClientID = hintAud
	}
	if req.PostLogoutRedirectURI == "" {
		done(http.StatusOK, "")
		return
	}
	var cl *store.Client
	if req.ClientID != "" {
		if cl, err = s.lookupClient(c, req.ClientID); err != nil {
			done(http.StatusServiceUnavailable, "You cannot be sent back to the application right now.")
			return
		}
	}
	if cl == nil || !matchRedirect(strings.Fields(cl.PostLogoutRedirectURIs), req.PostLogoutRedirectURI) {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonRedirectMismatch, "", boundedClientID(cl, req.ClientID))
		done(http.StatusBadRequest, "The application asked to send you to an address it has not registered, so you will not be sent there.")
		return
	}
	if !confirmed {
		// Validated: the form carries exactly what was checked, and the
		// POST is checked again all the same.
		req.ClientID = cl.ID
		s.confirmLogout(c, http.StatusOK, req, "")
		return
	}
	target := req.PostLogoutRedirectURI
	if req.State != "" {
		target = withQuery(target, url.Values{"state": {req.State}})
	}
	c.Redirect(http.StatusSeeOther, target)
}

// logoutRequest is what the logout confirmation form posts back.
type logoutRequest struct {
	ClientID, PostLogoutRedirectURI, State string
}

// logoutForm is what the logout template renders.
type logoutForm struct {
	logoutRequest
	Request, CSRF, Error string
}

// logoutKey is the key of a logout confirmation's row. The rows share the
// login requests' table and binding, and are keyed apart so that a logout
// request id posted to /login, or a login request id posted here, finds
// nothing.
func logoutKey(id string) string { return hash("logout\x00" + id) }

// confirmLogout renders the logout confirmation form for req, bound to
// this browser by a fresh __Host- cookie and carrying a fresh CSRF token,
// exactly as startLogin and renderLogin bind the login form.
func (s *Server) confirmLogout(c *gin.Context, status int, req logoutRequest, msg string) {
	id, binding, csrf := randomToken(), randomToken(), randomToken()
	row := store.AuthRequest{
		IDHash: logoutKey(id), LoginHash: hash(binding), CSRFHash: hash(csrf),
		ExpiresAt: s.now().Add(s.cfg.LoginRequestTTL).UTC(),
	}
	if err := s.db.WithContext(c.Request.Context()).Create(&row).Error; err != nil {
		s.errorPage(c, http.StatusServiceUnavailable, "Signing out is unavailable right now. Try again shortly.")
		return
	}
	setCookie(c, logoutCookie, binding, s.cfg.LoginRequestTTL)
	s.page(c, status, "logout", logoutForm{logoutRequest: req, Request: id, CSRF: csrf, Error: msg})
}

// logoutConfirmed checks a posted confirmation form (this browser's
// binding and the token rendered into the form) and uses it up.
func (s *Server) logoutConfirmed(c *gin.Context, p Params) bool {
	row, ok := s.boundRequest(c, logoutKey(p.Get("request")), logoutCookie)
	if !ok || !csrfValid(row, p.Get("csrf_token")) {
		return false
	}
	// Used once: a second post of the same form is refused. Only the
	// delete that removed the row counts, so two posts racing each other
	// cannot both pass.
	res := s.db.WithContext(c.Request.Context()).Where("id_hash = ?", row.IDHash).Delete(&store.AuthRequest{})
	if res.Error != nil || res.RowsAffected != 1 {
		return false
	}
	setCookie(c, logoutCookie, "", -1)
	return true
}

// sessionRow is the browser's session row, expired or not (endSession
// ends either), or nil.
func (s *Server) sessionRow(c *gin.Context) *store.Session {
	sid, err := c.Cookie(sessionCookie)
	if err != nil || sid == "" {
		return nil
	}
	var sess store.Session
	if s.db.WithContext(c.Request.Context()).Where("id_hash = ?", hash(sid)).Take(&sess).Error != nil {
		return nil
	}
	return &sess
}

// endSession ends the browser's session, if it has one: every token family
// issued within it is revoked (refresh tokens and access tokens), the
// session row deleted and the cookie cleared.
func (s *Server) endSession(c *gin.Context) {
	ctx := c.Request.Context()
	if sid, err := c.Cookie(sessionCookie); err == nil && sid != "" {
		var sess store.Session
		if s.db.WithContext(ctx).Where("id_hash = ?", hash(sid)).Take(&sess).Error == nil {
			// The session goes first: a code redemption holds its row
			// while it creates a family, so the delete waits for one in
			// flight, whose family the query below then finds, and any
			// later redemption finds no session and is refused.
			s.db.WithContext(ctx).Where("id_hash = ?", sess.IDHash).Delete(&store.Session{})
			var fams []store.TokenFamily
			s.db.WithContext(ctx).Where("session_id_hash = ? AND revoked_at IS NULL", sess.IDHash).Find(&fams)
			for _, f := range fams {
				s.revokeFamily(ctx, f.ID, "logout")
			}
			s.emit(c, secevent.TokenRevoked, secevent.ReasonLogout, sess.AccountID, "")
		}
	}
	setCookie(c, sessionCookie, "", -1)
}

// maxIDTokenHint bounds the hint before it is parsed (the verifier's bound
// for access tokens).
const maxIDTokenHint = 8192

// idTokenAlgs are the algorithms we sign ID tokens with.
var idTokenAlgs = []string{"RS256", "ES256"}

// errUnknownKid is an ID token hint whose kid is not one of our keys.
var errUnknownKid = errors.New("unknown key")

// idTokenClaims verifies an ID token we issued (expired ones are fine as
// a logout hint, per OIDC RP-Initiated Logout §2) and returns its client
// and subject, or the token.rejected reason it fails with.
func (s *Server) idTokenClaims(raw string) (aud, sub string, reason secevent.Reason) {
	if len(raw) > maxIDTokenHint {
		return "", "", secevent.ReasonTooLarge
	}
	pubs := s.keys.PublicKeys()
	var cl IDClaims
	tok, err := jwt.ParseWithClaims(raw, &cl, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k, ok := pubs[kid]; ok {
			return k, nil
		}
		return nil, errUnknownKid
	}, jwt.WithValidMethods(idTokenAlgs), jwt.WithoutClaimsValidation())
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "", "", secevent.ReasonMalformed
	case err != nil && tok != nil && !slices.Contains(idTokenAlgs, fmt.Sprint(tok.Header["alg"])):
		// alg none, HS256 and friends: named for what they are, as the
		// shared verifier names them for access tokens.
		return "", "", secevent.ReasonAlgorithm
	case errors.Is(err, errUnknownKid):
		return "", "", secevent.ReasonUnknownKey
	case err != nil:
		return "", "", secevent.ReasonSignature
	}
	// An access token is not an ID token, whoever signed it.
	if typ, _ := tok.Header["typ"].(string); typ != "JWT" {
		return "", "", secevent.ReasonType
	}
	if cl.Issuer != s.cfg.Issuer {
		return "", "", secevent.ReasonIssuer
	}
	if len(cl.Audience) != 1 {
		return "", "", secevent.ReasonClaims
	}
	return cl.Audience[0], cl.Subject, ""
}

// RevokeSubject revokes every token of an account: all refresh-token
// families, and (through the revocation list's not-before time) every
// access token issued so far, everywhere; its sessions and unredeemed
// authorization codes end with them.
func (s *Server) RevokeSubject(ctx context.Context, subject, reason string) error {
	// The order matters against grants in flight. Sessions go first (a
	// code redemption holds its session's row while it creates a family,
	// so this waits for one in flight and refuses later ones), then the
	// unredeemed codes, then the families (a refresh holds its family's
	// row, lockLiveFamily), and the not-before time is taken last, so it
	// is later than the iat of every access token those grants minted.
	db := s.db.WithContext(ctx)
	if err := db.Where("account_id = ?", subject).Delete(&store.Session{}).Error; err != nil {
		return err
	}
	// Codes not yet redeemed go too: a code issued just before the
	// revocation and redeemed after it would mint tokens issued after the
	// not-before time, which every verifier honours.
	if err := db.Where("account_id = ? AND used_at IS NULL", subject).Delete(&store.AuthCode{}).Error; err != nil {
		return err
	}
	if err := db.Model(&store.TokenFamily{}).Where("account_id = ? AND revoked_at IS NULL", subject).
		Updates(map[string]any{"revoked_at": s.now().UTC(), "revoke_reason": reason}).Error; err != nil {
		return err
	}
	return s.revs.RevokeSubject(ctx, subject, s.now())
}

// discovery is /.well-known/openid-configuration: only what is
// implemented is advertised.
func (s *Server) discovery(c *gin.Context) {
	iss := s.cfg.Issuer
	c.Header("Cache-Control", "public, max-age=300")
	c.JSON(http.StatusOK, gin.H{
		"issuer":                                        iss,
		"authorization_endpoint":                        iss + "/oauth2/authorize",
		"token_endpoint":                                iss + "/oauth2/token",
		"jwks_uri":                                      iss + "/.well-known/jwks.json",
		"userinfo_endpoint":                             iss + "/oauth2/userinfo",
		"revocation_endpoint":                           iss + "/oauth2/revoke",
		"introspection_endpoint":                        iss + "/oauth2/introspect",
		"end_session_endpoint":                          iss + "/oauth2/logout",
		"response_types_supported":                      []string{"code"},
		"response_modes_supported":                      []string{"query"},
		"grant_types_supported":                         []string{GrantCode, GrantRefresh, GrantClientCredentials, GrantTokenExchange},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         []string{"RS256", "ES256"},
		"token_endpoint_auth_methods_supported":         []string{"none", "client_secret_basic", "client_secret_post", "tls_client_auth"},
		"revocation_endpoint_auth_methods_supported":    []string{"none", "client_secret_basic", "client_secret_post", "tls_client_auth"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "tls_client_auth"},
		"code_challenge_methods_supported":              []string{"S256"},
		"scopes_supported": []string{"openid", "profile", "email", "offline_access", "users:read", "users:write",
			"orders:read", "orders:write", "admin"},
		"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "sid",
			"email", "email_verified", "name"},
		"prompt_values_supported":                        []string{"none", "login", "consent"},
		"authorization_response_iss_parameter_supported": true,
		"tls_client_certificate_bound_access_tokens":     true,
		"request_parameter_supported":                    false,
		"request_uri_parameter_supported":                false,
		"claims_parameter_supported":                     false,
		"frontchannel_logout_supported":                  false,
		"backchannel_logout_supported":                   false,
	})
}

// Sweep deletes expired codes, login requests and sessions; Run calls it.
func (s *Server) Sweep(ctx context.Context) {
	now := s.now().UTC()
	db := s.db.WithContext(ctx)
	db.Where("expires_at < ?", now.Add(-time.Hour)).Delete(&store.AuthCode{})
	db.Where("expires_at < ?", now).Delete(&store.AuthRequest{})
	db.Where("expires_at < ?", now).Delete(&store.Session{})
	db.Where("expires_at < ?", now).Delete(&store.FamilyAccessToken{})
}

// RunSweeper sweeps every ten minutes until ctx ends.
func (s *Server) RunSweeper(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sweep(ctx)
		}
	}
}
