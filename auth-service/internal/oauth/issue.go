package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/auth-service/internal/keys"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/mtls"
)

// AccessClaims are an access token's claims (CONTRACT §3, RFC 9068, RFC
// 8705 cnf, RFC 8693 act).
type AccessClaims struct {
	jwt.RegisteredClaims
	ClientID string        `json:"client_id"`
	Scope    string        `json:"scope,omitempty"`
	Roles    []string      `json:"roles,omitempty"`
	AuthTime int64         `json:"auth_time,omitempty"`
	Cnf      *Confirmation `json:"cnf,omitempty"`
	Act      *Actor        `json:"act,omitempty"`
}

// Confirmation binds a token to a client certificate.
type Confirmation struct {
	X5tS256 string `json:"x5t#S256"`
}

// Actor is who acts for the subject.
type Actor struct {
	Sub string `json:"sub"`
}

// IDClaims are an ID token's claims (OIDC Core §2).
type IDClaims struct {
	jwt.RegisteredClaims
	AuthTime      int64  `json:"auth_time"`
	Nonce         string `json:"nonce,omitempty"`
	AtHash        string `json:"at_hash,omitempty"`
	AZP           string `json:"azp"`
	SID           string `json:"sid,omitempty"`
	Email         string `json:"email,omitempty"`
	EmailVerified *bool  `json:"email_verified,omitempty"`
	Name          string `json:"name,omitempty"`
}

// tokenResponse is RFC 6749 §5.1 (plus id_token and, for token exchange,
// issued_token_type).
type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int    `json:"expires_in"`
	RefreshToken    string `json:"refresh_token,omitempty"`
	IDToken         string `json:"id_token,omitempty"`
	Scope           string `json:"scope,omitempty"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
}

// accessSpec is what one access token says.
type accessSpec struct {
	Subject  string
	Audience string
	ClientID string
	Scope    string
	Roles    []string
	AuthTime time.Time
	TTL      time.Duration
	Cert     string // cnf.x5t#S256, when bound
	Actor    string
}

// mintAccess signs an access token and returns it with its jti and expiry.
func (s *Server) mintAccess(ctx context.Context, a accessSpec) (raw, jti string, exp time.Time, err error) {
	now := s.issueTime(a.Subject)
	exp = now.Add(a.TTL)
	jti = uuid.NewString()
	cl := AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: a.Subject, Audience: jwt.ClaimStrings{a.Audience},
			ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ID: jti,
		},
		ClientID: a.ClientID, Scope: a.Scope, Roles: a.Roles,
	}
	if !a.AuthTime.IsZero() {
		cl.AuthTime = a.AuthTime.Unix()
	}
	if a.Cert != "" {
		cl.Cnf = &Confirmation{X5tS256: a.Cert}
	}
	if a.Actor != "" {
		cl.Act = &Actor{Sub: a.Actor}
	}
	raw, err = s.keys.Sign(keys.ES256, "at+jwt", cl)
	return raw, jti, exp, err
}

// issueTime is the iat for a new token of subject. A subject-wide
// revocation denies tokens issued in its second (iat has one-second
// resolution), so right after one we wait for the next second rather than
// mint a token that is dead on arrival.
func (s *Server) issueTime(subject string) time.Time {
	now := s.now()
	if s.revs != nil {
		if nb, ok := s.revs.NotBefore(subject); ok && !now.Truncate(time.Second).After(nb.Truncate(time.Second)) {
			wait := nb.Truncate(time.Second).Add(time.Second).Sub(now)
			if wait > 0 && wait <= time.Second {
				time.Sleep(wait)
				now = s.now()
			}
		}
	}
	return now.Truncate(time.Second)
}

// mintID signs an ID token for the user of a code or refresh grant.
func (s *Server) mintID(cl *client, acct *store.Account, scope []string, nonce, accessToken, sid string, authTime time.Time) (string, error) {
	now := s.now().Truncate(time.Second)
	sum := sha256.Sum256([]byte(accessToken))
	c := IDClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: acct.ID, Audience: jwt.ClaimStrings{cl.ID},
			ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.AccessTokenTTL)), IssuedAt: jwt.NewNumericDate(now),
		},
		AuthTime: authTime.Unix(), Nonce: nonce, AZP: cl.ID, SID: sid,
		// OIDC Core §3.1.3.6: the left half of the access token's hash.
		AtHash: base64.RawURLEncoding.EncodeToString(sum[:16]),
	}
	for _, sc := range scope {
		switch sc {
		case "email":
			f := false // no email verification flow exists, so never claim one
			c.Email, c.EmailVerified = acct.Email, &f
		case "profile":
			c.Name = acct.DisplayName
		}
	}
	alg := keys.RS256
	if cl.IDTokenAlg == string(keys.ES256) {
		alg = keys.ES256
	}
	return s.keys.Sign(alg, "JWT", c)
}

// userTokens issues the tokens of a code or refresh grant inside family:
// an access token (recorded in the family so revoking the family denies
// it), an ID token when openid was granted, and, when offline_access was
// granted, a new refresh token.
func (s *Server) userTokens(ctx context.Context, tx *gorm.DB, cl *client, acct *store.Account, fam *store.TokenFamily, nonce string, scope []string, withRefresh bool) (*tokenResponse, error) {
	at, jti, exp, err := s.mintAccess(ctx, accessSpec{
		Subject: acct.ID, Audience: s.cfg.Audience, ClientID: cl.ID, Scope: joinScopes(scope),
		Roles: acct.RoleList(), AuthTime: fam.AuthTime, TTL: s.cfg.AccessTokenTTL,
	})
	if err != nil {
		return nil, err
	}
	if err := tx.Create(&store.FamilyAccessToken{JTI: jti, FamilyID: fam.ID, ExpiresAt: exp}).Error; err != nil {
		return nil, err
	}
	resp := &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(s.cfg.AccessTokenTTL / time.Second), Scope: joinScopes(scope)}
	if contains(scope, "openid") {
		if resp.IDToken, err = s.mintID(cl, acct, scope, nonce, at, fam.SessionIDHash[:16], fam.AuthTime); err != nil {
			return nil, err
		}
	}
	if withRefresh && contains(scope, "offline_access") {
		rt := randomToken()
		now := s.now().UTC()
		idle := now.Add(s.cfg.RefreshIdleTTL)
		if idle.After(fam.ExpiresAt) {
			idle = fam.ExpiresAt
		}
		if err := tx.Create(&store.RefreshToken{TokenHash: hash(rt), FamilyID: fam.ID, CreatedAt: now, ExpiresAt: idle}).Error; err != nil {
			return nil, err
		}
		resp.RefreshToken = rt
	}
	return resp, nil
}

// certThumbprint is the cnf value for a tls_client_auth client's tokens.
func (c *client) certThumbprint() string {
	if c.cert == nil {
		return ""
	}
	return mtls.Thumbprint(c.cert)
}
