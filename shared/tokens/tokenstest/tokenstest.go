// Package tokenstest is a test issuer of Rampart access tokens: an ES256
// key, a Sign that makes a valid token by default and lets a test mutate
// header and claims to craft an attack, and a TLS server publishing the
// JWKS. Other packages' tests use it to get tokens the shared verifier
// accepts without running the auth service.
package tokenstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/rampart-go/rampart/shared/tokens"
)

// Issuer signs access tokens like the auth service does. Key and KID are
// the current signing key; Rotate replaces them and keeps the old key
// published, as the real JWKS does. Read Key and KID directly only while no
// Rotate runs concurrently.
type Issuer struct {
	// Key and KID sign new tokens.
	Key *ecdsa.PrivateKey
	KID string
	// IssuerURL and Audience are the default iss and aud.
	IssuerURL, Audience string
	// Now is the clock for iat, nbf and exp (default time.Now); set it to
	// match a verifier's fixed clock.
	Now func() time.Time
	// Lifetime is exp - iat (default 10 minutes, CONTRACT §3).
	Lifetime time.Duration

	mu       sync.Mutex
	previous []jose.JSONWebKey
}

// NewIssuer returns an issuer with a fresh P-256 key.
func NewIssuer(t testing.TB, issuer, audience string) *Issuer {
	t.Helper()
	key, kid := newKey(t)
	return &Issuer{Key: key, KID: kid, IssuerURL: issuer, Audience: audience,
		Now: time.Now, Lifetime: 10 * time.Minute}
}

func newKey(t testing.TB) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("tokenstest: generate key: %v", err)
	}
	return key, randomID(t, 8)
}

func randomID(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("tokenstest: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// Rotate makes a new current key and keeps the old one in the JWKS. It
// returns the new kid.
func (i *Issuer) Rotate(t testing.TB) string {
	t.Helper()
	key, kid := newKey(t)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.previous = append(i.previous, jwk(i.Key, i.KID))
	i.Key, i.KID = key, kid
	return kid
}

func (i *Issuer) current() (*ecdsa.PrivateKey, string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.Key, i.KID
}

// Header returns the default header: ES256, at+jwt and the current kid.
func (i *Issuer) Header() map[string]any {
	_, kid := i.current()
	return map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": kid}
}

// Claims returns the default claims of a valid token: a random sub and jti,
// iat and nbf now, exp after Lifetime, client_id rampart-demo, two scopes
// and the USER role.
func (i *Issuer) Claims(t testing.TB) map[string]any {
	t.Helper()
	now := time.Now
	if i.Now != nil {
		now = i.Now
	}
	life := i.Lifetime
	if life <= 0 {
		life = 10 * time.Minute
	}
	n := now().Unix()
	return map[string]any{
		"iss": i.IssuerURL, "sub": randomID(t, 16), "aud": i.Audience,
		"iat": n, "nbf": n, "exp": n + int64(life/time.Second),
		"jti": randomID(t, 16), "client_id": "rampart-demo",
		"scope": "openid orders:read", "roles": []string{"USER"},
	}
}

// Sign returns a token signed with the current key: valid by default;
// mutate (may be nil) edits the header and claims first, to craft attacks.
// The signature is always ES256 with Key, whatever the header then says.
func (i *Issuer) Sign(t testing.TB, mutate func(header, claims map[string]any)) string {
	t.Helper()
	h, c := i.Header(), i.Claims(t)
	if mutate != nil {
		mutate(h, c)
	}
	key, _ := i.current()
	input := SigningInput(t, h, c)
	return input + "." + base64.RawURLEncoding.EncodeToString(SignES256(t, key, input))
}

// SigningInput returns base64url(JSON(header)) + "." +
// base64url(JSON(claims)), for tests that sign some other way.
func SigningInput(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatalf("tokenstest: header: %v", err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("tokenstest: claims: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
}

// SignES256 returns the JWS ES256 signature of input: r and s, 32 bytes
// each (RFC 7518 §3.4), not ASN.1.
func SignES256(t testing.TB, key *ecdsa.PrivateKey, input string) []byte {
	t.Helper()
	sig, err := jwt.SigningMethodES256.Sign(input, key)
	if err != nil {
		t.Fatalf("tokenstest: sign: %v", err)
	}
	return sig
}

func jwk(key *ecdsa.PrivateKey, kid string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: &key.PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"}
}

// JWKSJSON returns the public JWKS: the current key and every rotated-out
// one.
func (i *Issuer) JWKSJSON() []byte {
	i.mu.Lock()
	set := jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey{jwk(i.Key, i.KID)}, i.previous...)}
	i.mu.Unlock()
	b, err := json.Marshal(set)
	if err != nil {
		panic("tokenstest: marshal JWKS: " + err.Error()) // cannot happen with EC public keys
	}
	return b
}

// Keys returns the published keys as a StaticKeys.
func (i *Issuer) Keys() tokens.StaticKeys {
	i.mu.Lock()
	defer i.mu.Unlock()
	ks := tokens.StaticKeys{i.KID: &i.Key.PublicKey}
	for _, k := range i.previous {
		ks[k.KeyID] = k.Key
	}
	return ks
}

// Verifier returns a verifier for this issuer's tokens over Keys, with the
// issuer's clock.
func (i *Issuer) Verifier(t testing.TB) *tokens.Verifier {
	t.Helper()
	v, err := tokens.NewVerifier(tokens.Options{
		Issuer: i.IssuerURL, Audience: i.Audience, Keys: i.Keys(), Now: i.Now,
	})
	if err != nil {
		t.Fatalf("tokenstest: verifier: %v", err)
	}
	return v
}

// ServeJWKS starts a TLS server answering every GET with the current JWKS
// (so Rotate shows up at once), closed by t.Cleanup. Its Client() trusts
// it.
func (i *Issuer) ServeJWKS(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(i.JWKSJSON())
	}))
	t.Cleanup(srv.Close)
	return srv
}
