package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/auth-service/internal/account"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/shared/tokens"
)

// Grant types.
const (
	GrantCode              = "authorization_code"
	GrantRefresh           = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange" //nolint:gosec // G101: a grant type URN, not a credential
	TokenTypeAccess        = "urn:ietf:params:oauth:token-type:access_token"   //nolint:gosec // G101: a token type URN, not a credential
)

// allowToken takes one token request from its budget: the calling
// service's when a service other than the gateway calls us directly with
// its certificate (returned, for the event), else the end user's address.
func (s *Server) allowToken(r *http.Request) (bool, string) {
	if _, id, ok := peerCert(r); ok && id != s.cfg.TrustedProxy {
		return s.services.Allow("token", id), id
	}
	return s.throttle.Allow("token", s.clientIP(r)), ""
}

// token is POST /oauth2/token.
func (s *Server) token(c *gin.Context) {
	if ok, service := s.allowToken(c.Request); !ok {
		s.events.Emit(c.Request.Context(), secevent.Event{
			Type: secevent.RateLimitExceeded, Reason: "token", ClientIP: s.clientIP(c.Request), ClientID: service,
			Route: c.FullPath(), RequestID: server.RequestID(c),
		})
		c.Header("Retry-After", "60")
		writeError(c, &oauthError{Code: "slow_down", Description: "too many token requests", status: http.StatusTooManyRequests})
		return
	}
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
	grant := p.Get("grant_type")
	if grant == "" {
		writeError(c, errInvalidRequest("grant_type is required"))
		return
	}
	if !slices.Contains([]string{GrantCode, GrantRefresh, GrantClientCredentials, GrantTokenExchange}, grant) {
		writeError(c, errUnsupportedGrant("supported: authorization_code, refresh_token, client_credentials, token-exchange"))
		return
	}
	if !cl.allowsGrant(grant) {
		// An authenticated client trying a grant it is not registered for
		// (a public client attempting token exchange, say) is probing.
		s.emit(c, secevent.GrantInvalid, secevent.ReasonClientMismatch, "", cl.ID)
		writeError(c, errUnauthorizedClient("this client may not use "+grant))
		return
	}
	var resp *tokenResponse
	switch grant {
	case GrantCode:
		resp, oerr = s.codeGrant(c, cl, p)
	case GrantRefresh:
		resp, oerr = s.refreshGrant(c, cl, p)
	case GrantClientCredentials:
		resp, oerr = s.clientCredentials(c, cl, p)
	case GrantTokenExchange:
		resp, oerr = s.tokenExchange(c, cl, p)
	}
	if oerr != nil {
		writeError(c, oerr)
		return
	}
	s.metrics.tokenIssued(grant)
	noStore(c)
	c.JSON(http.StatusOK, resp)
}

// codeGrant redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6).
// The code is burned by the first redemption attempt whatever its outcome,
// and a second redemption revokes everything the first one issued.
func (s *Server) codeGrant(c *gin.Context, cl *client, p Params) (*tokenResponse, *oauthError) {
	ctx := c.Request.Context()
	code := p.Get("code")
	if code == "" || p.Get("code_verifier") == "" {
		return nil, errInvalidRequest("code and code_verifier are required")
	}
	var row store.AuthCode
	err := s.db.WithContext(ctx).Where("code_hash = ?", hash(code)).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonCodeInvalid, "", cl.ID)
		return nil, errInvalidGrant("the code is invalid")
	} else if err != nil {
		return nil, errServer()
	}
	// Claim the code: only one request can flip used_at.
	now := s.now().UTC()
	res := s.db.WithContext(ctx).Model(&store.AuthCode{}).
		Where("code_hash = ? AND used_at IS NULL", row.CodeHash).Update("used_at", now)
	if res.Error != nil {
		return nil, errServer()
	}
	if res.RowsAffected == 0 {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonCodeReused, row.AccountID, cl.ID)
		s.revokeCodeFamily(ctx, row.CodeHash)
		return nil, errInvalidGrant("the code was already used")
	}
	fail := func(r secevent.Reason, desc string) (*tokenResponse, *oauthError) {
		s.emit(c, secevent.GrantInvalid, r, row.AccountID, cl.ID)
		return nil, errInvalidGrant(desc)
	}
	switch {
	case now.After(row.ExpiresAt):
		return fail(secevent.ReasonGrantExpired, "the code has expired")
	case row.ClientID != cl.ID:
		return fail(secevent.ReasonClientMismatch, "the code was issued to another client")
	case p.Get("redirect_uri") != row.RedirectURI:
		return fail(secevent.ReasonRedirectMismatch, "redirect_uri does not match the authorization request")
	case !verifierRE.MatchString(p.Get("code_verifier")) || !pkceMatches(p.Get("code_verifier"), row.CodeChallenge):
		return fail(secevent.ReasonPKCEMismatch, "code_verifier does not match the code challenge")
	}
	acct, err := s.accounts.Get(ctx, row.AccountID)
	if err != nil {
		return nil, errServer()
	}
	if acct == nil || acct.Disabled {
		return fail(secevent.ReasonCodeInvalid, "the account can no longer sign in")
	}
	// The code's scope was narrowed to the user's roles when it was
	// issued; narrow it again to the roles they hold now, as a refresh
	// does, so a role lost since then is not granted for one more grant.
	scope := account.GrantableScopes(acct.RoleList(), strings.Fields(row.Scope))
	fam := &store.TokenFamily{
		ID: uuid.NewString(), AccountID: acct.ID, ClientID: cl.ID, SessionIDHash: row.SessionIDHash,
		Scope: joinScopes(scope), AuthTime: row.AuthTime, CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshMaxTTL),
	}
	var resp *tokenResponse
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Record the family on the code first, and only where no replay
		// has marked it (revokeCodeFamily): this holds the code's row,
		// so a replay arriving now waits and then revokes this family.
		res := tx.Model(&store.AuthCode{}).Where("code_hash = ? AND family_id IS NULL", row.CodeHash).
			Update("family_id", fam.ID)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return errCodeReplayed
		}
		// The code's browser session must still exist, and is locked
		// while its family is created: logout and RevokeSubject delete
		// the session before they revoke its families, so a redemption
		// after a sign-out is refused, and one in flight is waited for
		// and then revoked with the rest (as lockLiveFamily does for a
		// refresh).
		res = tx.Model(&store.Session{}).Where("id_hash = ?", row.SessionIDHash).
			Update("expires_at", gorm.Expr("expires_at"))
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return errSessionEnded
		}
		if err := tx.Create(fam).Error; err != nil {
			return err
		}
		var err error
		resp, err = s.userTokens(ctx, tx, cl, acct, fam, row.Nonce, scope, true)
		return err
	})
	if errors.Is(err, errSessionEnded) {
		return fail(secevent.ReasonCodeInvalid, "the sign-in session has ended")
	}
	if errors.Is(err, errCodeReplayed) {
		return fail(secevent.ReasonCodeReused, "the code was already used")
	}
	if err != nil {
		s.log.Error("code grant", "error", err)
		return nil, errServer()
	}
	return resp, nil
}

// pkceMatches is RFC 7636 §4.6 for S256, compared in constant time.
func pkceMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// refreshGrant rotates a refresh token (RFC 6749 §6, RFC 9700 §4.14.2).
// Presenting a token that was already rotated means two parties hold it:
// the whole family is revoked and auth.refresh.reused recorded.
func (s *Server) refreshGrant(c *gin.Context, cl *client, p Params) (*tokenResponse, *oauthError) {
	ctx := c.Request.Context()
	raw := p.Get("refresh_token")
	if raw == "" {
		return nil, errInvalidRequest("refresh_token is required")
	}
	var rt store.RefreshToken
	err := s.db.WithContext(ctx).Where("token_hash = ?", hash(raw)).Take(&rt).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonCodeInvalid, "", cl.ID)
		return nil, errInvalidGrant("the refresh token is invalid")
	} else if err != nil {
		return nil, errServer()
	}
	var fam store.TokenFamily
	if err := s.db.WithContext(ctx).Where("id = ?", rt.FamilyID).Take(&fam).Error; err != nil {
		return nil, errServer()
	}
	if fam.ClientID != cl.ID {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonClientMismatch, fam.AccountID, cl.ID)
		return nil, errInvalidGrant("the refresh token was issued to another client")
	}
	now := s.now().UTC()
	if fam.RevokedAt != nil {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonCodeInvalid, fam.AccountID, cl.ID)
		return nil, errInvalidGrant("the refresh token was revoked")
	}
	// A refresh may narrow the scope, never widen it (RFC 6749 §6).
	scope := strings.Fields(fam.Scope)
	widened := ""
	if asked := strings.Fields(p.Get("scope")); len(asked) > 0 {
		for _, sc := range asked {
			if !slices.Contains(scope, sc) && widened == "" {
				widened = sc
			}
		}
		scope = asked
	}
	refuseScope := func() (*tokenResponse, *oauthError) {
		// Asking for more than was granted is an escalation attempt,
		// recorded as the token exchange records one.
		s.emit(c, secevent.GrantInvalid, secevent.ReasonScope, fam.AccountID, cl.ID)
		return nil, errInvalidScope("scope " + widened + " was not granted originally")
	}
	// Refused before the token is spent: a client's bad request must
	// leave it its token, or its retry would count as reuse and revoke
	// the family. A token already rotated goes on to reuse detection
	// whatever the scope, so a thief cannot dodge it with a bad scope.
	if widened != "" && rt.UsedAt == nil {
		return refuseScope()
	}
	res := s.db.WithContext(ctx).Model(&store.RefreshToken{}).
		Where("token_hash = ? AND used_at IS NULL", rt.TokenHash).Update("used_at", now)
	if res.Error != nil {
		return nil, errServer()
	}
	if res.RowsAffected == 0 {
		s.emit(c, secevent.RefreshReused, secevent.ReasonNone, fam.AccountID, cl.ID)
		s.revokeFamily(ctx, fam.ID, "refresh_reused")
		return nil, errInvalidGrant("the refresh token was already used")
	}
	if widened != "" {
		return refuseScope() // rotated between our read and the claim
	}
	if now.After(rt.ExpiresAt) || now.After(fam.ExpiresAt) {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonGrantExpired, fam.AccountID, cl.ID)
		return nil, errInvalidGrant("the refresh token has expired")
	}
	acct, err := s.accounts.Get(ctx, fam.AccountID)
	if err != nil {
		return nil, errServer()
	}
	if acct == nil || acct.Disabled {
		// As for a code of a disabled account: one auth.grant.invalid.
		s.emit(c, secevent.GrantInvalid, secevent.ReasonCodeInvalid, fam.AccountID, cl.ID)
		s.revokeFamily(ctx, fam.ID, "disabled")
		return nil, errInvalidGrant("the account can no longer sign in")
	}
	// The user's current roles apply: a demoted admin loses admin now.
	scope = account.GrantableScopes(acct.RoleList(), scope)
	var resp *tokenResponse
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := lockLiveFamily(tx, fam.ID); err != nil {
			return err
		}
		var err error
		resp, err = s.userTokens(ctx, tx, cl, acct, &fam, "", scope, true)
		return err
	})
	if errors.Is(err, errFamilyRevoked) {
		// Revoked since we read it: by a concurrent use of this same
		// token (reuse), a logout or an admin.
		s.emit(c, secevent.GrantInvalid, secevent.ReasonCodeInvalid, fam.AccountID, cl.ID)
		return nil, errInvalidGrant("the refresh token was revoked")
	}
	if err != nil {
		s.log.Error("refresh grant", "error", err)
		return nil, errServer()
	}
	return resp, nil
}

// codeReplayed is the family_id of a code replayed before its first
// redemption recorded a family: that redemption then issues nothing.
const codeReplayed = "replayed"

// errCodeReplayed is a code redemption overtaken by a replay of its code.
var errCodeReplayed = errors.New("code replayed")

// revokeCodeFamily is what a replayed code does to the tokens its first
// redemption issued (RFC 6749 §4.1.2). Reading the family id the
// redemption recorded is not enough: the replay may arrive while that
// redemption is still being written, and the tokens it was about to
// commit escaped (TestConcurrentCodeReplay). So the code is marked
// replayed where it has no family yet, which makes the redemption's
// transaction fail; where it has one, that update waited for the
// redemption's transaction, and the family is revoked with everything it
// committed.
func (s *Server) revokeCodeFamily(ctx context.Context, codeHash string) {
	db := s.db.WithContext(ctx)
	res := db.Model(&store.AuthCode{}).Where("code_hash = ? AND family_id IS NULL", codeHash).Update("family_id", codeReplayed)
	if res.Error != nil {
		s.log.Error("mark replayed code", "error", res.Error)
		return
	}
	if res.RowsAffected == 1 {
		return
	}
	var row store.AuthCode
	if err := db.Where("code_hash = ?", codeHash).Take(&row).Error; err != nil {
		s.log.Error("read replayed code", "error", err)
		return
	}
	if row.FamilyID != nil && *row.FamilyID != codeReplayed {
		s.revokeFamily(ctx, *row.FamilyID, "code_reused")
	}
}

// errSessionEnded is a code redemption whose browser session has ended.
var errSessionEnded = errors.New("session ended")

// errFamilyRevoked is lockLiveFamily's answer for a revoked family.
var errFamilyRevoked = errors.New("token family revoked")

// lockLiveFamily takes the write lock on a family's row inside tx, or
// returns errFamilyRevoked when it has been revoked. Issuing into a family
// must start with it: revokeFamily marks the row and then lists the
// family's access tokens to deny them, so without the lock a refresh that
// read the family before a concurrent revocation (a thief's reuse of the
// same token, racing the client) recorded its new access token after that
// list was taken, and the token lived out its ten minutes. With it, the
// revocation either waits for this transaction and then finds its token
// (PostgreSQL re-checks the row after the lock; SQLite has one writer),
// or commits first and this finds the family revoked.
func lockLiveFamily(tx *gorm.DB, familyID string) error {
	res := tx.Model(&store.TokenFamily{}).Where("id = ? AND revoked_at IS NULL", familyID).
		Update("revoked_at", gorm.Expr("revoked_at"))
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return errFamilyRevoked
	}
	return nil
}

// clientCredentials issues a token to the client itself (RFC 6749 §4.4).
// Its sub is the client id; it carries no roles. A tls_client_auth client's
// token is bound to its certificate.
func (s *Server) clientCredentials(c *gin.Context, cl *client, p Params) (*tokenResponse, *oauthError) {
	scope, oerr := requestedScopes(cl, p.Get("scope"))
	if oerr != nil {
		// A scope beyond the registration is an escalation attempt, as
		// an audience beyond it is (audienceFor).
		s.emit(c, secevent.GrantInvalid, secevent.ReasonScope, "", cl.ID)
		return nil, oerr
	}
	aud, oerr := s.audienceFor(c, cl, p.Get("audience"))
	if oerr != nil {
		return nil, oerr
	}
	at, _, _, err := s.mintAccess(c.Request.Context(), accessSpec{
		Subject: cl.ID, Audience: aud, ClientID: cl.ID, Scope: joinScopes(scope),
		TTL: s.cfg.AccessTokenTTL, Cert: cl.certThumbprint(),
	})
	if err != nil {
		return nil, errServer()
	}
	return &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(s.cfg.AccessTokenTTL / time.Second), Scope: joinScopes(scope)}, nil
}

// tokenExchange is RFC 8693 for on-behalf-of calls: a service holding a
// user's access token gets a short-lived token for one other service, with
// the scopes both asked for and held by the user, the user as sub, itself
// as act.sub, bound to its certificate. Only tls_client_auth clients may
// exchange, so the actor is always a proven service identity.
func (s *Server) tokenExchange(c *gin.Context, cl *client, p Params) (*tokenResponse, *oauthError) {
	ctx := c.Request.Context()
	if cl.cert == nil {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonClientMismatch, "", cl.ID)
		return nil, errUnauthorizedClient("token exchange requires tls_client_auth")
	}
	if p.Get("subject_token_type") != TokenTypeAccess {
		return nil, errInvalidRequest("subject_token_type must be " + TokenTypeAccess)
	}
	if p.Get("actor_token") != "" {
		return nil, errInvalidRequest("actor_token is not supported: the actor is the authenticated client")
	}
	if rt := p.Get("requested_token_type"); rt != "" && rt != TokenTypeAccess {
		return nil, errInvalidRequest("only access tokens can be requested")
	}
	if p.Get("audience") == "" {
		return nil, errInvalidTarget("audience is required")
	}
	asked := strings.Fields(p.Get("scope"))
	if len(asked) == 0 {
		return nil, errInvalidScope("scope is required: ask for what the call needs")
	}
	// The exchanged token is for one other service, never the public API:
	// a token the actor could spend anywhere would defeat the down-scoping.
	if p.Get("audience") == s.cfg.Audience {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonScope, "", cl.ID)
		return nil, errInvalidTarget("audience must be the service the call is for")
	}
	aud, oerr := s.audienceFor(c, cl, p.Get("audience"))
	if oerr != nil {
		return nil, oerr
	}
	subj, err := s.access.Verify(ctx, p.Get("subject_token"))
	if err != nil {
		s.emit(c, secevent.TokenRejected, secevent.Reason(tokens.ReasonOf(err)), "", cl.ID)
		return nil, errInvalidGrant("the subject token is not valid")
	}
	// Only a user's own token can be exchanged: not one that is already
	// delegated (no chains of actors), and not a client's
	// client_credentials token (its sub is the client, not a user).
	if subj.Actor != "" || subj.Subject == subj.ClientID {
		s.emit(c, secevent.TokenRejected, secevent.ReasonClaims, subj.Subject, cl.ID)
		return nil, errInvalidGrant("the subject token is not a user's access token")
	}
	var scope []string
	for _, sc := range asked {
		if subj.HasScope(sc) && slices.Contains(cl.scopes(), sc) && !slices.Contains(scope, sc) {
			scope = append(scope, sc)
		}
	}
	if len(scope) == 0 {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonScope, subj.Subject, cl.ID)
		return nil, errInvalidScope("the user holds none of the requested scopes")
	}
	ttl := min(s.cfg.ExchangeTokenTTL, subj.ExpiresAt.Sub(s.now())).Truncate(time.Second)
	if ttl < time.Second {
		s.emit(c, secevent.TokenRejected, secevent.ReasonExpired, subj.Subject, cl.ID)
		return nil, errInvalidGrant("the subject token is about to expire")
	}
	at, jti, exp, err := s.mintAccess(ctx, accessSpec{
		Subject: subj.Subject, Audience: aud, ClientID: cl.ID, Scope: joinScopes(scope), Roles: subj.Roles,
		TTL: ttl, Cert: cl.certThumbprint(), Actor: mtls.ServiceID(cl.ID),
	})
	if err != nil {
		return nil, errServer()
	}
	// A token derived from one issued within a family joins that family,
	// so logout, refresh reuse and code replay deny it with its source.
	// It joins under the family's row lock and only while the family
	// lives (lockLiveFamily): recorded after a revocation had listed the
	// family's tokens, it would never be denied.
	var src store.FamilyAccessToken
	if err := s.db.WithContext(ctx).Where("jti = ?", subj.ID).Take(&src).Error; err == nil {
		err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := lockLiveFamily(tx, src.FamilyID); err != nil {
				return err
			}
			return tx.Create(&store.FamilyAccessToken{JTI: jti, FamilyID: src.FamilyID, ExpiresAt: exp}).Error
		})
		if errors.Is(err, errFamilyRevoked) {
			// The subject token is revoked with its family; the deny-list
			// has not caught up yet.
			s.emit(c, secevent.TokenRejected, secevent.ReasonRevoked, subj.Subject, cl.ID)
			return nil, errInvalidGrant("the subject token is not valid")
		}
		if err != nil {
			s.log.Error("record exchanged token", "error", err)
			return nil, errServer()
		}
	} else if !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, errServer()
	}
	return &tokenResponse{
		AccessToken: at, TokenType: "Bearer", ExpiresIn: int(ttl / time.Second), Scope: joinScopes(scope),
		IssuedTokenType: TokenTypeAccess,
	}, nil
}

// requestedScopes checks a client_credentials scope request against the
// client's registration; no scope asked means every registered one.
func requestedScopes(cl *client, raw string) ([]string, *oauthError) {
	asked := strings.Fields(raw)
	if len(asked) == 0 {
		return cl.scopes(), nil
	}
	for _, sc := range asked {
		if !slices.Contains(cl.scopes(), sc) {
			return nil, errInvalidScope("the client may not request scope " + sc)
		}
	}
	return asked, nil
}

// audienceFor checks a requested audience: the public API by default, or a
// service the client is registered to call. Asking for any other is a
// scope the client does not have: one auth.grant.invalid/scope.
func (s *Server) audienceFor(c *gin.Context, cl *client, asked string) (string, *oauthError) {
	if asked == "" || asked == s.cfg.Audience {
		return s.cfg.Audience, nil
	}
	if strings.ContainsAny(asked, " ") || !slices.Contains(cl.audiences(), asked) {
		s.emit(c, secevent.GrantInvalid, secevent.ReasonScope, "", cl.ID)
		return "", errInvalidTarget("the client may not request audience " + safeName(asked))
	}
	return asked, nil
}

func joinScopes(s []string) string { return strings.Join(s, " ") }

func contains(s []string, v string) bool { return slices.Contains(s, v) }

// revokeFamily revokes a token family: its refresh tokens stop working and
// every access token issued from it is denied until it expires.
func (s *Server) revokeFamily(ctx context.Context, familyID, reason string) {
	now := s.now().UTC()
	if err := s.db.WithContext(ctx).Model(&store.TokenFamily{}).Where("id = ? AND revoked_at IS NULL", familyID).
		Updates(map[string]any{"revoked_at": now, "revoke_reason": reason}).Error; err != nil {
		s.log.Error("revoke family", "error", err)
	}
	var ats []store.FamilyAccessToken
	if err := s.db.WithContext(ctx).Where("family_id = ? AND expires_at > ?", familyID, now).Find(&ats).Error; err != nil {
		s.log.Error("revoke family tokens", "error", err)
		return
	}
	for _, at := range ats {
		if err := s.revs.RevokeToken(ctx, at.JTI, at.ExpiresAt); err != nil {
			s.log.Error("revoke access token", "error", err)
		}
	}
}
