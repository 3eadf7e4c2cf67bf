// Package tokens verifies Rampart access tokens (RFC 9068 JWTs) for the
// gateway and every service, with one strict policy: an algorithm
// allowlist (ES256 by default; never "none" or HMAC), the at+jwt type, no
// critical extensions, keys looked up by kid only in our own JWKS (the jku,
// x5u, jwk and x5c headers are never consulted), and iss, aud, exp, nbf and
// iat checked with at most 30 seconds of leeway. Every failure maps to one
// Reason, which callers report in a token.rejected event while showing the
// client the same 401 whatever it was.
package tokens

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Reason is why a token was refused (CONTRACT §4 token.rejected reasons).
type Reason string

// The reasons.
const (
	ReasonMissing     Reason = "missing"
	ReasonMalformed   Reason = "malformed"
	ReasonSignature   Reason = "signature"
	ReasonAlgorithm   Reason = "algorithm"
	ReasonExpired     Reason = "expired"
	ReasonNotYetValid Reason = "not_yet_valid"
	ReasonIssuer      Reason = "issuer"
	ReasonAudience    Reason = "audience"
	ReasonType        Reason = "type"
	ReasonUnknownKey  Reason = "unknown_key"
	ReasonRevoked     Reason = "revoked"
	ReasonTooLarge    Reason = "too_large"
	ReasonClaims      Reason = "claims"
)

// Error is a refused token.
type Error struct {
	Reason Reason
	Err    error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err == nil {
		return "token rejected: " + string(e.Reason)
	}
	return fmt.Sprintf("token rejected: %s: %v", e.Reason, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func reject(r Reason, err error) error { return &Error{Reason: r, Err: err} }

// ReasonOf returns err's reason; ReasonMalformed for any other error.
func ReasonOf(err error) Reason {
	var te *Error
	if errors.As(err, &te) {
		return te.Reason
	}
	return ReasonMalformed
}

// ErrUnknownKey is returned by a KeySet that has no key with the kid.
var ErrUnknownKey = errors.New("unknown key id")

// KeySet resolves a kid to a verification key.
type KeySet interface {
	Key(ctx context.Context, kid string) (crypto.PublicKey, error)
}

// Revocations says whether a verified token was revoked, by its jti or by
// its subject's not-before time.
type Revocations interface {
	Revoked(ctx context.Context, jti, subject string, issuedAt time.Time) bool
}

// Claims are the verified contents of an access token.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	ExpiresAt time.Time
	IssuedAt  time.Time
	NotBefore time.Time
	ID        string
	ClientID  string
	Scopes    []string
	Roles     []string
	// CertThumbprint is cnf.x5t#S256: the token is bound to the client
	// certificate with this thumbprint (RFC 8705).
	CertThumbprint string
	// Actor is act.sub: the service acting for Subject (RFC 8693).
	Actor string
}

// HasScope reports whether the token carries scope s.
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scopes, s) }

// HasRole reports whether the token carries role r.
func (c *Claims) HasRole(r string) bool { return slices.Contains(c.Roles, r) }

// Options configure NewVerifier.
type Options struct {
	Issuer, Audience string
	// Algorithms allowed; default ES256. "none" and HS* are refused.
	Algorithms []string
	// Types accepted in the typ header; default at+jwt (and its
	// application/ form, RFC 9068 §2.1).
	Types []string
	// Leeway for time claims; default and maximum 30s.
	Leeway time.Duration
	// MaxTokenBytes bounds the work an attacker can make us do; default 8 KiB.
	MaxTokenBytes int
	Keys          KeySet
	Revocations   Revocations
	Now           func() time.Time
}

// MaxLeeway is the most clock skew a verifier will forgive.
const MaxLeeway = 30 * time.Second

// Verifier checks access tokens.
type Verifier struct {
	o      Options
	parser *jwt.Parser
}

// NewVerifier validates o and returns a Verifier.
func NewVerifier(o Options) (*Verifier, error) {
	if o.Issuer == "" || o.Audience == "" {
		return nil, errors.New("tokens: issuer and audience are required")
	}
	if o.Keys == nil {
		return nil, errors.New("tokens: a key set is required")
	}
	if len(o.Algorithms) == 0 {
		o.Algorithms = []string{"ES256"}
	}
	for _, a := range o.Algorithms {
		switch a {
		case "ES256", "ES384", "RS256", "PS256", "EdDSA":
		default:
			return nil, fmt.Errorf("tokens: algorithm %q is not allowed", a)
		}
	}
	if len(o.Types) == 0 {
		o.Types = []string{"at+jwt", "application/at+jwt"}
	}
	if o.Leeway == 0 {
		o.Leeway = MaxLeeway
	}
	if o.Leeway < 0 || o.Leeway > MaxLeeway {
		return nil, fmt.Errorf("tokens: leeway %s outside 0..%s", o.Leeway, MaxLeeway)
	}
	if o.MaxTokenBytes <= 0 {
		o.MaxTokenBytes = 8 << 10
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	v := &Verifier{o: o}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(o.Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(o.Issuer),
		jwt.WithAudience(o.Audience),
		jwt.WithLeeway(o.Leeway),
		jwt.WithTimeFunc(o.Now),
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// header is the part of the JOSE header we act on. jku, x5u, jwk and x5c
// are deliberately absent: they are never used to find a key.
type header struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// accessClaims is the JWT body as golang-jwt decodes it.
type accessClaims struct {
	jwt.RegisteredClaims
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	Roles    []string `json:"roles"`
	Cnf      *struct {
		X5T string `json:"x5t#S256"`
	} `json:"cnf,omitempty"`
	Act *struct {
		Sub string `json:"sub"`
	} `json:"act,omitempty"`
}

// Verify checks raw and returns its claims, or an *Error naming the first
// check that failed: size, structure, algorithm, type, critical headers,
// key id, signature, required claims, issuer, audience, time claims and
// revocation, in that order.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if raw == "" {
		return nil, reject(ReasonMissing, nil)
	}
	if len(raw) > v.o.MaxTokenBytes {
		return nil, reject(ReasonTooLarge, fmt.Errorf("%d bytes", len(raw)))
	}
	dot := strings.IndexByte(raw, '.')
	if dot < 0 || strings.Count(raw, ".") != 2 {
		return nil, reject(ReasonMalformed, errors.New("not a compact JWS"))
	}
	hb, err := base64.RawURLEncoding.DecodeString(raw[:dot])
	if err != nil {
		return nil, reject(ReasonMalformed, fmt.Errorf("header encoding: %w", err))
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, reject(ReasonMalformed, fmt.Errorf("header: %w", err))
	}
	if !slices.Contains(v.o.Algorithms, h.Alg) {
		return nil, reject(ReasonAlgorithm, fmt.Errorf("alg %q", h.Alg))
	}
	if !slices.ContainsFunc(v.o.Types, func(t string) bool { return strings.EqualFold(t, h.Typ) }) {
		return nil, reject(ReasonType, fmt.Errorf("typ %q", h.Typ))
	}
	if len(h.Crit) > 0 {
		// We implement no JWS extensions, so any critical one is unknown
		// and the token must be refused (RFC 7515 §4.1.11).
		return nil, reject(ReasonClaims, errors.New("critical header extensions"))
	}
	if h.Kid == "" {
		return nil, reject(ReasonUnknownKey, errors.New("no kid"))
	}
	key, err := v.o.Keys.Key(ctx, h.Kid)
	if err != nil {
		return nil, reject(ReasonUnknownKey, err)
	}

	var ac accessClaims
	_, err = v.parser.ParseWithClaims(raw, &ac, func(*jwt.Token) (any, error) { return key, nil })
	if err != nil {
		return nil, reject(reasonFor(err), err)
	}
	if ac.Subject == "" || ac.ID == "" || ac.IssuedAt == nil || len(ac.Audience) == 0 {
		return nil, reject(ReasonClaims, errors.New("sub, jti, iat and aud are required"))
	}
	c := &Claims{
		Issuer: ac.Issuer, Subject: ac.Subject, Audience: ac.Audience, ID: ac.ID,
		ExpiresAt: ac.ExpiresAt.Time, IssuedAt: ac.IssuedAt.Time,
		ClientID: ac.ClientID, Scopes: strings.Fields(ac.Scope), Roles: ac.Roles,
	}
	if ac.NotBefore != nil {
		c.NotBefore = ac.NotBefore.Time
	}
	if ac.Cnf != nil {
		c.CertThumbprint = ac.Cnf.X5T
	}
	if ac.Act != nil {
		c.Actor = ac.Act.Sub
	}
	if v.o.Revocations != nil && v.o.Revocations.Revoked(ctx, c.ID, c.Subject, c.IssuedAt) {
		return nil, reject(ReasonRevoked, nil)
	}
	return c, nil
}

// reasonFor maps golang-jwt's errors to our reasons. The signature check
// runs before the claims checks, so a forged token is "signature" whatever
// its claims say.
func reasonFor(err error) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrECDSAVerification),
		errors.Is(err, rsa.ErrVerification), errors.Is(err, jwt.ErrInvalidKeyType):
		return ReasonSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return ReasonAlgorithm
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ReasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ReasonAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing), errors.Is(err, jwt.ErrTokenInvalidClaims):
		return ReasonClaims
	}
	return ReasonMalformed
}

// BearerToken extracts the token from an Authorization header value
// (RFC 6750 §2.1): the scheme case-insensitively, one space, a token68.
func BearerToken(h string) (string, error) {
	if h == "" {
		return "", reject(ReasonMissing, nil)
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", reject(ReasonMalformed, errors.New("not a Bearer credential"))
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=') {
			return "", reject(ReasonMalformed, errors.New("token has characters outside token68"))
		}
	}
	return tok, nil
}

// StaticKeys is a KeySet held in memory (tests, and the auth service
// checking its own tokens without a network hop).
type StaticKeys map[string]crypto.PublicKey

// Key implements KeySet.
func (s StaticKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}
