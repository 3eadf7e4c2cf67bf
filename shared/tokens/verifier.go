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
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Reason is why a token was refused; the strings are the CONTRACT §4
// token.rejected reasons, so they can go straight into an event.
type Reason string

// The reasons, one per check of Verify.
const (
	// ReasonMissing: no token at all (no Authorization header).
	ReasonMissing Reason = "missing"
	// ReasonMalformed: not a compact JWS, bad base64url, bad header JSON, or
	// not a Bearer credential.
	ReasonMalformed Reason = "malformed"
	// ReasonSignature: the signature does not verify with the kid's key.
	ReasonSignature Reason = "signature"
	// ReasonAlgorithm: alg not in the allowlist, or not the kind of the key.
	ReasonAlgorithm Reason = "algorithm"
	// ReasonExpired: exp is past (beyond the leeway).
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: nbf or iat is in the future (beyond the leeway).
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonIssuer: iss is not ours.
	ReasonIssuer Reason = "issuer"
	// ReasonAudience: aud does not name this verifier's audience.
	ReasonAudience Reason = "audience"
	// ReasonType: typ is not at+jwt (an ID token or other JWT replayed as
	// an access token, RFC 9068 §4).
	ReasonType Reason = "type"
	// ReasonUnknownKey: no kid, or a kid our key set does not hold.
	ReasonUnknownKey Reason = "unknown_key"
	// ReasonRevoked: the Revocations deny-list holds the token.
	ReasonRevoked Reason = "revoked"
	// ReasonTooLarge: longer than MaxTokenBytes.
	ReasonTooLarge Reason = "too_large"
	// ReasonClaims: a required claim is missing or malformed, or the header
	// has a crit member (we implement no extension, RFC 7515 §4.1.11).
	ReasonClaims Reason = "claims"
	// ReasonBinding: the token is bound to a client certificate (cnf) that
	// the caller did not present. The verifier never returns it (it sees no
	// connection); the HTTP middleware that checks the binding does.
	ReasonBinding Reason = "binding"
)

// Error is a refused token. Callers show the same 401 whatever the Reason
// (telling an attacker which check failed helps them) and send the Reason to
// telemetry; Err is detail for logs.
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

// ReasonOf returns err's Reason if it is (or wraps) an *Error, and
// ReasonMalformed for any other error: an error we cannot classify must
// still count as a refusal, never as "missing".
func ReasonOf(err error) Reason {
	var te *Error
	if errors.As(err, &te) {
		return te.Reason
	}
	return ReasonMalformed
}

// ErrUnknownKey is returned (wrapped) by a KeySet that has no key with the
// kid.
var ErrUnknownKey = errors.New("unknown key id")

// KeySet resolves a kid to a verification key. Only keys from our own JWKS
// are ever used: the jku, x5u, jwk and x5c headers, which let a token name
// its own key, are ignored.
type KeySet interface {
	// Key returns the key with kid, or an error wrapping ErrUnknownKey.
	Key(ctx context.Context, kid string) (crypto.PublicKey, error)
}

// Revocations says whether a verified token was revoked, by its jti or by
// its subject's not-before time. It is consulted last, after the signature
// and claims checks, so a forged token never reaches the deny-list.
type Revocations interface {
	Revoked(ctx context.Context, jti, subject string, issuedAt time.Time) bool
}

// Claims are the verified contents of an access token.
type Claims struct {
	Issuer   string
	Subject  string
	Audience []string
	// ExpiresAt, IssuedAt, NotBefore: NotBefore is zero when the token has
	// no nbf.
	ExpiresAt time.Time
	IssuedAt  time.Time
	NotBefore time.Time
	// ID is the jti, the key of the revocation deny-list.
	ID       string
	ClientID string
	// Scopes is the space-separated scope claim, split.
	Scopes []string
	Roles  []string
	// CertThumbprint is cnf.x5t#S256: the token is bound to the client
	// certificate with this thumbprint (RFC 8705).
	CertThumbprint string
	// Actor is act.sub: the service acting for Subject (RFC 8693).
	Actor string
}

// HasScope reports whether the token carries scope s. A nil *Claims has
// none, so a missing authentication step fails closed.
func (c *Claims) HasScope(s string) bool { return c != nil && slices.Contains(c.Scopes, s) }

// HasRole reports whether the token carries role r (exact, case-sensitive
// match). A nil *Claims has none.
func (c *Claims) HasRole(r string) bool { return c != nil && slices.Contains(c.Roles, r) }

// Options configure NewVerifier.
type Options struct {
	// Issuer must equal the token's iss, and Audience must be one of its
	// aud values. Both are required: an audience check that can be turned
	// off lets a token for one service be replayed at another.
	Issuer, Audience string
	// Algorithms allowed in the alg header; default ES256. "none" and the
	// HMAC algorithms are refused at construction: with a public key set,
	// HS* means "the public key is the secret" (CVE-2015-9235 and kin).
	Algorithms []string
	// Types accepted in the typ header, compared case-insensitively with
	// or without the "application/" prefix (RFC 7515 §4.1.9); default
	// at+jwt (RFC 9068 §2.1).
	Types []string
	// Leeway forgiven on exp, nbf and iat; default and maximum 30s. (Zero
	// means the default.)
	Leeway time.Duration
	// MaxTokenBytes bounds the work an attacker can make us do before the
	// signature is checked; default 8192.
	MaxTokenBytes int
	// Keys resolves kids to keys (required).
	Keys KeySet
	// Revocations is the deny-list; optional.
	Revocations Revocations
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// MaxLeeway is the most clock skew a verifier will forgive.
const MaxLeeway = 30 * time.Second

// DefaultMaxTokenBytes is MaxTokenBytes when unset: a Rampart access token
// is well under 1 KiB; 8 KiB leaves room without inviting abuse.
const DefaultMaxTokenBytes = 8192

// algorithm is an allowed alg: how to verify it and which keys suit it.
type algorithm struct {
	method jwt.SigningMethod
	// fits reports whether key is the kind this alg needs. Checking it
	// ourselves (rather than trusting the method's type switch) also pins
	// the curve: jwt's ES256 would happily verify with a P-384 key.
	fits func(key crypto.PublicKey) bool
}

func ecKey(curve elliptic.Curve) func(crypto.PublicKey) bool {
	return func(k crypto.PublicKey) bool {
		ec, ok := k.(*ecdsa.PublicKey)
		return ok && ec.Curve == curve
	}
}

func rsaKey(k crypto.PublicKey) bool {
	r, ok := k.(*rsa.PublicKey)
	return ok && r.N != nil && r.N.BitLen() >= 2048
}

func edKey(k crypto.PublicKey) bool {
	ed, ok := k.(ed25519.PublicKey)
	return ok && len(ed) == ed25519.PublicKeySize
}

// supported lists every asymmetric alg golang-jwt implements. It is a
// function, not a package variable, so nothing can mutate it.
func supported(alg string) (algorithm, bool) {
	switch alg {
	case "ES256":
		return algorithm{jwt.SigningMethodES256, ecKey(elliptic.P256())}, true
	case "ES384":
		return algorithm{jwt.SigningMethodES384, ecKey(elliptic.P384())}, true
	case "ES512":
		return algorithm{jwt.SigningMethodES512, ecKey(elliptic.P521())}, true
	case "RS256":
		return algorithm{jwt.SigningMethodRS256, rsaKey}, true
	case "RS384":
		return algorithm{jwt.SigningMethodRS384, rsaKey}, true
	case "RS512":
		return algorithm{jwt.SigningMethodRS512, rsaKey}, true
	case "PS256":
		return algorithm{jwt.SigningMethodPS256, rsaKey}, true
	case "PS384":
		return algorithm{jwt.SigningMethodPS384, rsaKey}, true
	case "PS512":
		return algorithm{jwt.SigningMethodPS512, rsaKey}, true
	case "EdDSA":
		return algorithm{jwt.SigningMethodEdDSA, edKey}, true
	}
	return algorithm{}, false
}

// Verifier checks access tokens. It is safe for concurrent use.
type Verifier struct {
	o     Options
	algs  map[string]algorithm
	types []string // normalised: lower case, no "application/" prefix
	// b64 is base64url without padding, strict: non-canonical trailing
	// bits are refused, so one token has exactly one encoding.
	b64 *base64.Encoding
	// validator is golang-jwt's claims validator configured with every
	// option STYLE.md requires; we run it on claims we decoded strictly
	// ourselves, after the signature check.
	validator *jwt.Validator
}

// NewVerifier validates o and returns a Verifier. It returns an error when
// Issuer, Audience or Keys is missing, when Algorithms names "none", an HMAC
// or any alg that is not an asymmetric signature golang-jwt implements, or
// when Leeway is negative or above MaxLeeway.
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
	v := &Verifier{algs: make(map[string]algorithm, len(o.Algorithms))}
	for _, a := range o.Algorithms {
		alg, ok := supported(a)
		if !ok {
			// "none", HS256/384/512 and anything unknown all land here.
			return nil, fmt.Errorf("tokens: algorithm %q is not allowed", a)
		}
		v.algs[a] = alg
	}
	o.Algorithms = slices.Clone(o.Algorithms)
	if len(o.Types) == 0 {
		o.Types = []string{"at+jwt"}
	}
	for _, t := range o.Types {
		if t = normaliseType(t); t == "" {
			return nil, errors.New("tokens: empty token type")
		}
		v.types = append(v.types, t)
	}
	if o.Leeway == 0 {
		o.Leeway = MaxLeeway
	}
	if o.Leeway < 0 || o.Leeway > MaxLeeway {
		return nil, fmt.Errorf("tokens: leeway %s outside 0..%s", o.Leeway, MaxLeeway)
	}
	if o.MaxTokenBytes <= 0 {
		o.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	v.o = o
	v.b64 = base64.RawURLEncoding.Strict()
	v.validator = jwt.NewValidator(
		jwt.WithValidMethods(o.Algorithms), // inert in a Validator; the allowlist is v.algs
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(o.Issuer),
		jwt.WithAudience(o.Audience),
		jwt.WithLeeway(o.Leeway),
		jwt.WithTimeFunc(o.Now),
	)
	return v, nil
}

// normaliseType maps "application/at+jwt", "AT+JWT" and "at+jwt" to one
// form: RFC 7515 §4.1.9 says a typ without "/" means "application/"+typ,
// and media types are case-insensitive.
func normaliseType(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

// Verify checks raw and returns its claims, or an *Error with the Reason of
// the first check that failed. The checks run in this order: size;
// structure (three base64url parts, a JSON object header); alg in the
// allowlist; typ; crit (any → claims); kid present and known (unknown_key);
// alg suits the key (algorithm); signature; claims decodable and iss, sub,
// aud, exp, iat, jti present (claims); iss; aud; exp (expired); nbf and iat
// (not_yet_valid); revocation. Nothing from the payload is looked at before
// the signature has been verified.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if raw == "" {
		return nil, reject(ReasonMissing, nil)
	}
	if len(raw) > v.o.MaxTokenBytes {
		return nil, reject(ReasonTooLarge, fmt.Errorf("%d bytes", len(raw)))
	}

	// Structure: exactly three segments, each strict base64url.
	h64, rest, ok1 := strings.Cut(raw, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s64, '.') >= 0 {
		return nil, reject(ReasonMalformed, errors.New("not a compact JWS"))
	}
	hb, err := v.b64.DecodeString(h64)
	if err != nil {
		return nil, reject(ReasonMalformed, fmt.Errorf("header encoding: %w", err))
	}
	pb, err := v.b64.DecodeString(p64)
	if err != nil {
		return nil, reject(ReasonMalformed, fmt.Errorf("payload encoding: %w", err))
	}
	sig, err := v.b64.DecodeString(s64)
	if err != nil {
		return nil, reject(ReasonMalformed, fmt.Errorf("signature encoding: %w", err))
	}
	h, err := parseHeader(hb)
	if err != nil {
		return nil, reject(ReasonMalformed, fmt.Errorf("header: %w", err))
	}

	alg, ok := v.algs[h.alg]
	if !ok {
		return nil, reject(ReasonAlgorithm, fmt.Errorf("alg %q not allowed", h.alg))
	}
	if !slices.Contains(v.types, normaliseType(h.typ)) {
		return nil, reject(ReasonType, fmt.Errorf("typ %q", h.typ))
	}
	if h.crit {
		return nil, reject(ReasonClaims, errors.New("critical header extension"))
	}
	if h.kid == "" {
		return nil, reject(ReasonUnknownKey, errors.New("no kid"))
	}
	key, err := v.o.Keys.Key(ctx, h.kid)
	if err != nil {
		return nil, reject(ReasonUnknownKey, err)
	}
	if !alg.fits(key) {
		// A kid whose key is of another kind: the alg/key confusion that
		// RFC 8725 §3.1 warns about. Refuse before any verify call.
		return nil, reject(ReasonAlgorithm, fmt.Errorf("alg %s does not suit key %q (%T)", h.alg, h.kid, key))
	}
	// The signing input is the first two segments exactly as received.
	if err := alg.method.Verify(raw[:len(h64)+1+len(p64)], sig, key); err != nil {
		return nil, reject(ReasonSignature, err)
	}

	c, rc, err := parseClaims(pb)
	if err != nil {
		return nil, reject(ReasonClaims, err)
	}
	if err := v.validator.Validate(rc); err != nil {
		return nil, reject(validationReason(err), err)
	}
	if v.o.Revocations != nil && v.o.Revocations.Revoked(ctx, c.ID, c.Subject, c.IssuedAt) {
		return nil, reject(ReasonRevoked, nil)
	}
	return c, nil
}

// validationReason picks the reason for golang-jwt's joined validation
// errors in our documented order, so a token that is both from the wrong
// issuer and expired is always "issuer".
func validationReason(err error) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ReasonClaims // unreachable after parseClaims; kept as a backstop
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ReasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ReasonAudience
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonNotYetValid
	}
	return ReasonClaims
}

// BearerToken extracts the token from an Authorization header value
// (RFC 6750 §2.1): the scheme "Bearer" case-insensitively, exactly one
// space, then a token68 (RFC 7235: letters, digits, "-._~+/", then only
// "=" padding). It returns an *Error with ReasonMissing for an empty header
// and ReasonMalformed for anything else that does not fit.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", reject(ReasonMissing, nil)
	}
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", reject(ReasonMalformed, errors.New("not a Bearer credential"))
	}
	if !isToken68(tok) {
		return "", reject(ReasonMalformed, errors.New("credential is not a token68"))
	}
	return tok, nil
}

func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		//nolint:staticcheck // QF1001: an allowlist reads clearer stated positively
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// StaticKeys is a KeySet held in memory (tests, and the auth service
// checking its own tokens without a network hop).
type StaticKeys map[string]crypto.PublicKey

// Key implements KeySet.
func (s StaticKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
}

// Compile-time guards: both key sets satisfy the port.
var (
	_ KeySet = StaticKeys(nil)
	_ KeySet = (*JWKS)(nil)
)
