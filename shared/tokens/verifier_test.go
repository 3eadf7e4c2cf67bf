package tokens_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/rampart-go/rampart/shared/tokens"
)

// attacker is what an attacker holds: their own keys, and our public key
// (it is published).
type attacker struct {
	ec  *ecdsa.PrivateKey
	rsa *rsa.PrivateKey
}

func newAttacker(t testing.TB) attacker {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return attacker{ec: ec, rsa: rk}
}

// publicJWK is key as a JWK JSON object, for header injection.
func publicJWK(t testing.TB, key any, kid string) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: "ES256", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// signedBy re-signs tok (header and claims unchanged) with method and key.
func signedBy(t testing.TB, tok string, method jwt.SigningMethod, key any) string {
	t.Helper()
	sig, err := method.Sign(signingInput(tok), key)
	if err != nil {
		t.Fatal(err)
	}
	return withSignature(tok, sig)
}

// p256Order is N, the order of P-256: r or s equal to it is out of range.
func p256Order() []byte { return elliptic.P256().Params().N.FillBytes(make([]byte, 32)) }

func TestVerifyRefusesAttacks(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	atk := newAttacker(t)
	pubDER, err := x509.MarshalPKIXPublicKey(&iss.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	sign := func(mutate func(h, c map[string]any)) string { return iss.Sign(t, mutate) }
	revoked := sign(nil)
	deny := &denyList{}
	deny.revoke(claimOf(t, revoked, "jti"))

	tests := []struct {
		name string
		tok  string
		// opts edits the verifier's options for this row.
		opts func(*tokens.Options)
		want tokens.Reason
	}{
		// Size and structure.
		{name: "empty token is missing", tok: "", want: tokens.ReasonMissing},
		{name: "oversized token is refused before parsing", want: tokens.ReasonTooLarge,
			tok: sign(func(_, c map[string]any) { c["pad"] = strings.Repeat("A", 9000) })},
		{name: "oversized per MaxTokenBytes option", want: tokens.ReasonTooLarge, tok: sign(nil),
			opts: func(o *tokens.Options) { o.MaxTokenBytes = 100 }},
		{name: "two segments are malformed", tok: signingInput(sign(nil)), want: tokens.ReasonMalformed},
		{name: "extra dots are malformed", tok: sign(nil) + ".", want: tokens.ReasonMalformed},
		{name: "four segments are malformed", tok: sign(nil) + ".e30", want: tokens.ReasonMalformed},
		{name: "bad base64 in header is malformed", tok: "e*30" + sign(nil)[4:], want: tokens.ReasonMalformed},
		{name: "padded base64 is malformed", tok: strings.Replace(sign(nil), ".", "==.", 1), want: tokens.ReasonMalformed},
		{name: "standard (non-url) base64 in signature is malformed", want: tokens.ReasonMalformed,
			tok: signingInput(sign(nil)) + ".ab+/"},
		{name: "header that is not JSON is malformed", tok: enc([]byte("alg")) + ".e30.AA", want: tokens.ReasonMalformed},
		{name: "header that is a JSON array is malformed", tok: enc([]byte(`["ES256"]`)) + ".e30.AA", want: tokens.ReasonMalformed},
		{name: "duplicate header member is malformed", want: tokens.ReasonMalformed,
			tok: rawJSONToken(t, iss, `{"alg":"ES256","typ":"at+jwt","typ":"JWT","kid":"`+iss.KID+`"}`, `{}`)},
		{name: "non-string kid is malformed", want: tokens.ReasonMalformed,
			tok: sign(func(h, _ map[string]any) { h["kid"] = 7 })},

		// Algorithm.
		{name: "alg none is refused", want: tokens.ReasonAlgorithm,
			tok: signingInput(sign(func(h, _ map[string]any) { h["alg"] = "none" })) + "."},
		{name: "alg None in another case is refused", want: tokens.ReasonAlgorithm,
			tok: signingInput(sign(func(h, _ map[string]any) { h["alg"] = "nOnE" })) + "."},
		{name: "missing alg is refused", want: tokens.ReasonAlgorithm,
			tok: sign(func(h, _ map[string]any) { delete(h, "alg") })},
		{name: "HS256 with the EC public key PEM as HMAC secret is refused", want: tokens.ReasonAlgorithm,
			tok: signedBy(t, sign(func(h, _ map[string]any) { h["alg"] = "HS256" }), jwt.SigningMethodHS256, pubPEM)},
		{name: "HS256 with the EC public key DER as HMAC secret is refused", want: tokens.ReasonAlgorithm,
			tok: signedBy(t, sign(func(h, _ map[string]any) { h["alg"] = "HS256" }), jwt.SigningMethodHS256, pubDER)},
		{name: "RS256 when only ES256 is allowed is refused", want: tokens.ReasonAlgorithm,
			tok: signedBy(t, sign(func(h, _ map[string]any) { h["alg"] = "RS256" }), jwt.SigningMethodRS256, atk.rsa)},
		{name: "RS256 allowed but the kid names an EC key is refused", want: tokens.ReasonAlgorithm,
			opts: func(o *tokens.Options) { o.Algorithms = []string{"ES256", "RS256"} },
			tok:  signedBy(t, sign(func(h, _ map[string]any) { h["alg"] = "RS256" }), jwt.SigningMethodRS256, atk.rsa)},
		{name: "ES384 allowed but the kid names a P-256 key is refused", want: tokens.ReasonAlgorithm,
			opts: func(o *tokens.Options) { o.Algorithms = []string{"ES256", "ES384"} },
			tok:  sign(func(h, _ map[string]any) { h["alg"] = "ES384" })},

		// Type.
		{name: "typ JWT (an ID token) is refused", tok: sign(func(h, _ map[string]any) { h["typ"] = "JWT" }), want: tokens.ReasonType},
		{name: "missing typ is refused", tok: sign(func(h, _ map[string]any) { delete(h, "typ") }), want: tokens.ReasonType},
		{name: "typ with trailing junk is refused", tok: sign(func(h, _ map[string]any) { h["typ"] = "at+jwt2" }), want: tokens.ReasonType},
		{name: "typ of another media tree is refused", tok: sign(func(h, _ map[string]any) { h["typ"] = "text/at+jwt" }), want: tokens.ReasonType},

		// Critical extensions.
		{name: "crit header is refused", tok: sign(func(h, c map[string]any) { h["crit"] = []string{"exp"} }), want: tokens.ReasonClaims},
		{name: "empty crit header is refused", tok: sign(func(h, c map[string]any) { h["crit"] = []string{} }), want: tokens.ReasonClaims},
		{name: "b64=false with crit is refused", want: tokens.ReasonClaims,
			tok: sign(func(h, c map[string]any) { h["b64"] = false; h["crit"] = []string{"b64"} })},

		// Key selection: only our key set is consulted.
		{name: "unknown kid is refused", tok: sign(func(h, _ map[string]any) { h["kid"] = "nope" }), want: tokens.ReasonUnknownKey},
		{name: "missing kid is refused", tok: sign(func(h, _ map[string]any) { delete(h, "kid") }), want: tokens.ReasonUnknownKey},
		{name: "jku naming the attacker's JWKS with the attacker's kid is ignored", want: tokens.ReasonUnknownKey,
			tok: signedBy(t, sign(func(h, _ map[string]any) {
				h["jku"], h["kid"] = "https://evil.example/jwks.json", "evil"
			}), jwt.SigningMethodES256, atk.ec)},
		{name: "jku naming the attacker's JWKS with our kid is ignored", want: tokens.ReasonSignature,
			tok: signedBy(t, sign(func(h, _ map[string]any) { h["jku"] = "https://evil.example/jwks.json" }), jwt.SigningMethodES256, atk.ec)},
		{name: "embedded jwk of the attacker's key without kid is ignored", want: tokens.ReasonUnknownKey,
			tok: signedBy(t, sign(func(h, _ map[string]any) {
				delete(h, "kid")
				h["jwk"] = publicJWK(t, &atk.ec.PublicKey, "")
			}), jwt.SigningMethodES256, atk.ec)},
		{name: "embedded jwk of the attacker's key with our kid is ignored", want: tokens.ReasonSignature,
			tok: signedBy(t, sign(func(h, _ map[string]any) { h["jwk"] = publicJWK(t, &atk.ec.PublicKey, iss.KID) }), jwt.SigningMethodES256, atk.ec)},
		{name: "x5u naming the attacker's certificate is ignored", want: tokens.ReasonSignature,
			tok: signedBy(t, sign(func(h, _ map[string]any) { h["x5u"] = "https://evil.example/cert.pem" }), jwt.SigningMethodES256, atk.ec)},

		// Signature.
		{name: "tampered payload is refused", want: tokens.ReasonSignature, tok: func() string {
			good := sign(nil)
			evil := sign(func(_, c map[string]any) { c["roles"] = []string{"ADMIN"} })
			h, _, s := segments(t, good)
			_, p, _ := segments(t, evil)
			return h + "." + p + "." + s
		}()},
		{name: "tampered header is refused", want: tokens.ReasonSignature, tok: func() string {
			_, p, s := segments(t, sign(nil))
			h, _, _ := segments(t, sign(func(h, _ map[string]any) { h["typ"] = "application/at+jwt" }))
			return h + "." + p + "." + s
		}()},
		{name: "our kid signed by the attacker's key is refused", want: tokens.ReasonSignature,
			tok: signedBy(t, sign(nil), jwt.SigningMethodES256, atk.ec)},
		{name: "ECDSA r=s=0 (all-zero signature) is refused", tok: withSignature(sign(nil), make([]byte, 64)), want: tokens.ReasonSignature},
		{name: "ECDSA r=0 with a real s is refused", want: tokens.ReasonSignature, tok: func() string {
			tok := sign(nil)
			_, _, s := segments(t, tok)
			sig, _ := jwtDecode(s)
			clear(sig[:32])
			return withSignature(tok, sig)
		}()},
		{name: "ECDSA r=s=N (out of range) is refused", want: tokens.ReasonSignature,
			tok: withSignature(sign(nil), append(p256Order(), p256Order()...))},
		{name: "ECDSA r=s=2^256-1 (out of range) is refused", want: tokens.ReasonSignature,
			tok: withSignature(sign(nil), []byte(strings.Repeat("\xff", 64)))},
		{name: "truncated signature is refused", want: tokens.ReasonSignature, tok: func() string {
			tok := sign(nil)
			_, _, s := segments(t, tok)
			sig, _ := jwtDecode(s)
			return withSignature(tok, sig[:48])
		}()},
		{name: "ASN.1 DER signature instead of r||s is refused", want: tokens.ReasonSignature, tok: func() string {
			tok := sign(nil)
			der, err := ecdsa.SignASN1(rand.Reader, iss.Key, sha256Sum(signingInput(tok)))
			if err != nil {
				t.Fatal(err)
			}
			return withSignature(tok, der)
		}()},
		{name: "empty signature is refused", tok: signingInput(sign(nil)) + ".", want: tokens.ReasonSignature},

		// Required claims, after the signature.
		{name: "missing exp is refused", tok: sign(func(_, c map[string]any) { delete(c, "exp") }), want: tokens.ReasonClaims},
		{name: "missing sub is refused", tok: sign(func(_, c map[string]any) { delete(c, "sub") }), want: tokens.ReasonClaims},
		{name: "missing jti is refused", tok: sign(func(_, c map[string]any) { delete(c, "jti") }), want: tokens.ReasonClaims},
		{name: "missing iat is refused", tok: sign(func(_, c map[string]any) { delete(c, "iat") }), want: tokens.ReasonClaims},
		{name: "missing iss is refused", tok: sign(func(_, c map[string]any) { delete(c, "iss") }), want: tokens.ReasonClaims},
		{name: "missing aud is refused", tok: sign(func(_, c map[string]any) { delete(c, "aud") }), want: tokens.ReasonClaims},
		{name: "empty aud is refused", tok: sign(func(_, c map[string]any) { c["aud"] = []string{""} }), want: tokens.ReasonClaims},
		{name: "empty sub is refused", tok: sign(func(_, c map[string]any) { c["sub"] = "" }), want: tokens.ReasonClaims},
		{name: "null sub is refused", tok: sign(func(_, c map[string]any) { c["sub"] = nil }), want: tokens.ReasonClaims},
		{name: "exp as a string is refused", tok: sign(func(_, c map[string]any) { c["exp"] = "1800000600" }), want: tokens.ReasonClaims},
		{name: "negative exp is refused", tok: sign(func(_, c map[string]any) { c["exp"] = -1 }), want: tokens.ReasonClaims},
		{name: "absurd exp is refused", tok: sign(func(_, c map[string]any) { c["exp"] = 1e300 }), want: tokens.ReasonClaims},
		{name: "roles as a string is refused", tok: sign(func(_, c map[string]any) { c["roles"] = "ADMIN" }), want: tokens.ReasonClaims},
		{name: "roles with a non-string item is refused", tok: sign(func(_, c map[string]any) { c["roles"] = []any{"USER", 1} }), want: tokens.ReasonClaims},
		{name: "scope as an array is refused", tok: sign(func(_, c map[string]any) { c["scope"] = []string{"admin"} }), want: tokens.ReasonClaims},
		{name: "aud as a number is refused", tok: sign(func(_, c map[string]any) { c["aud"] = 1 }), want: tokens.ReasonClaims},
		{name: "cnf without x5t#S256 is refused", tok: sign(func(_, c map[string]any) { c["cnf"] = map[string]any{"jkt": "abc"} }), want: tokens.ReasonClaims},
		{name: "act without sub is refused", tok: sign(func(_, c map[string]any) { c["act"] = map[string]any{} }), want: tokens.ReasonClaims},
		{name: "duplicate claim is refused", want: tokens.ReasonClaims, tok: rawJSONToken(t, iss,
			`{"alg":"ES256","typ":"at+jwt","kid":"`+iss.KID+`"}`,
			fmt.Sprintf(`{"iss":%q,"sub":"u","aud":"other","aud":%q,"exp":%d,"iat":%d,"jti":"j"}`,
				testIssuer, testAudience, epochUnix+600, epochUnix))},
		{name: "duplicate member inside cnf is refused", want: tokens.ReasonClaims, tok: rawJSONToken(t, iss,
			`{"alg":"ES256","typ":"at+jwt","kid":"`+iss.KID+`"}`,
			fmt.Sprintf(`{"iss":%q,"sub":"u","aud":%q,"exp":%d,"iat":%d,"jti":"j","cnf":{"x5t#S256":"a","x5t#S256":"b"}}`,
				testIssuer, testAudience, epochUnix+600, epochUnix))},
		{name: "escaped duplicate header member is malformed", want: tokens.ReasonMalformed,
			tok: rawJSONToken(t, iss, `{"alg":"ES256","typ":"at+jwt","kid":"`+iss.KID+`","\u0061lg":"none"}`, `{}`)},
		{name: "case-variant claim name is not the claim", want: tokens.ReasonClaims,
			tok: sign(func(_, c map[string]any) { c["SUB"] = c["sub"]; delete(c, "sub") })},
		{name: "payload that is not an object is refused", want: tokens.ReasonClaims,
			tok: rawJSONToken(t, iss, `{"alg":"ES256","typ":"at+jwt","kid":"`+iss.KID+`"}`, `["sub"]`)},
		{name: "payload with invalid UTF-8 is refused", want: tokens.ReasonClaims,
			tok: rawJSONToken(t, iss, `{"alg":"ES256","typ":"at+jwt","kid":"`+iss.KID+`"}`,
				fmt.Sprintf(`{"iss":%q,"sub":"u\xff","aud":%q,"exp":%d,"iat":%d,"jti":"j"}`,
					testIssuer, testAudience, epochUnix+600, epochUnix))},

		// Issuer, audience.
		{name: "wrong iss is refused", tok: sign(func(_, c map[string]any) { c["iss"] = "https://evil.example" }), want: tokens.ReasonIssuer},
		{name: "iss with a trailing slash is refused", tok: sign(func(_, c map[string]any) { c["iss"] = testIssuer + "/" }), want: tokens.ReasonIssuer},
		{name: "wrong aud is refused", tok: sign(func(_, c map[string]any) { c["aud"] = "order-service" }), want: tokens.ReasonAudience},
		{name: "aud array without ours is refused", tok: sign(func(_, c map[string]any) { c["aud"] = []string{"a", "b"} }), want: tokens.ReasonAudience},
		{name: "token-exchange token for another service is refused", want: tokens.ReasonAudience,
			opts: func(o *tokens.Options) { o.Audience = "user-service" },
			tok:  sign(func(_, c map[string]any) { c["aud"] = "order-service" })},

		// Time.
		{name: "expired beyond the leeway is refused", tok: sign(func(_, c map[string]any) { c["exp"] = epochUnix - 31 }), want: tokens.ReasonExpired},
		{name: "expired exactly at the leeway is refused", tok: sign(func(_, c map[string]any) { c["exp"] = epochUnix - 30 }), want: tokens.ReasonExpired},
		{name: "expired with a smaller leeway is refused", tok: sign(func(_, c map[string]any) { c["exp"] = epochUnix - 10 }),
			opts: func(o *tokens.Options) { o.Leeway = 5 * time.Second }, want: tokens.ReasonExpired},
		{name: "nbf in the future is refused", tok: sign(func(_, c map[string]any) { c["nbf"] = epochUnix + 60 }), want: tokens.ReasonNotYetValid},
		{name: "iat in the future is refused", tok: sign(func(_, c map[string]any) { c["iat"] = epochUnix + 60 }), want: tokens.ReasonNotYetValid},

		// Revocation.
		{name: "revoked jti is refused", tok: revoked, want: tokens.ReasonRevoked},

		// Order: the first failing check names the reason.
		{name: "alg none with an unknown kid is algorithm", want: tokens.ReasonAlgorithm,
			tok: signingInput(sign(func(h, _ map[string]any) { h["alg"], h["kid"] = "none", "nope" })) + "."},
		{name: "wrong typ with an unknown kid is type", want: tokens.ReasonType,
			tok: sign(func(h, _ map[string]any) { h["typ"], h["kid"] = "JWT", "nope" })},
		{name: "forged and expired is signature", want: tokens.ReasonSignature,
			tok: signedBy(t, sign(func(_, c map[string]any) { c["exp"] = epochUnix - 3600 }), jwt.SigningMethodES256, atk.ec)},
		{name: "missing jti and expired is claims", want: tokens.ReasonClaims,
			tok: sign(func(_, c map[string]any) { delete(c, "jti"); c["exp"] = epochUnix - 3600 })},
		{name: "wrong issuer and expired is issuer", want: tokens.ReasonIssuer,
			tok: sign(func(_, c map[string]any) { c["iss"] = "https://evil.example"; c["exp"] = epochUnix - 3600 })},
		{name: "wrong audience and expired is audience", want: tokens.ReasonAudience,
			tok: sign(func(_, c map[string]any) { c["aud"] = "x"; c["exp"] = epochUnix - 3600 })},
		{name: "expired and not yet valid is expired", want: tokens.ReasonExpired,
			tok: sign(func(_, c map[string]any) { c["exp"] = epochUnix - 3600; c["nbf"] = epochUnix + 3600 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, iss.Keys(), deny, tt.opts)
			c, err := v.Verify(context.Background(), tt.tok)
			if c != nil {
				t.Errorf("returned claims with an error: %+v", c)
			}
			wantReason(t, err, tt.want)
			var te *tokens.Error
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *tokens.Error", err)
			}
		})
	}
}

func TestVerifyConsultsRevocationsOnlyForVerifiedTokens(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	atk := newAttacker(t)
	deny := &denyList{}
	v := newVerifier(t, iss.Keys(), deny, nil)
	for _, tok := range []string{
		signedBy(t, iss.Sign(t, nil), jwt.SigningMethodES256, atk.ec),
		iss.Sign(t, func(_, c map[string]any) { c["exp"] = epochUnix - 3600 }),
		iss.Sign(t, func(_, c map[string]any) { c["iss"] = "x" }),
	} {
		if _, err := v.Verify(context.Background(), tok); err == nil {
			t.Fatal("verified")
		}
	}
	if n := deny.calls.Load(); n != 0 {
		t.Fatalf("deny-list consulted %d times for refused tokens", n)
	}
	tok := iss.Sign(t, nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if n := deny.calls.Load(); n != 1 {
		t.Fatalf("deny-list consulted %d times for one good token, want 1", n)
	}
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	tests := []struct {
		name   string
		mutate func(h, c map[string]any)
		opts   func(*tokens.Options)
	}{
		{name: "default token"},
		{name: "typ application/at+jwt", mutate: func(h, _ map[string]any) { h["typ"] = "application/at+jwt" }},
		{name: "typ in upper case", mutate: func(h, _ map[string]any) { h["typ"] = "AT+JWT" }},
		{name: "aud as an array holding ours", mutate: func(_, c map[string]any) { c["aud"] = []string{"x", testAudience} }},
		{name: "expired within the leeway", mutate: func(_, c map[string]any) { c["exp"] = epochUnix - 29 }},
		{name: "nbf within the leeway", mutate: func(_, c map[string]any) { c["nbf"] = epochUnix + 29 }},
		{name: "iat within the leeway", mutate: func(_, c map[string]any) { c["iat"] = epochUnix + 29 }},
		{name: "no nbf", mutate: func(_, c map[string]any) { delete(c, "nbf") }},
		{name: "fractional times", mutate: func(_, c map[string]any) { c["exp"] = float64(epochUnix) + 600.5 }},
		{name: "unknown claims and header members are ignored", mutate: func(h, c map[string]any) {
			h["x-extra"], c["auth_time"], c["ext"] = 1, epochUnix, map[string]any{"a": []any{1, "b"}}
		}},
		{name: "another allowed type", mutate: func(h, _ map[string]any) { h["typ"] = "service+jwt" },
			opts: func(o *tokens.Options) { o.Types = []string{"at+jwt", "application/service+jwt"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, iss.Keys(), &denyList{}, tt.opts)
			if _, err := v.Verify(context.Background(), iss.Sign(t, tt.mutate)); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

func TestVerifyParsesClaims(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	v := newVerifier(t, iss.Keys(), nil, func(o *tokens.Options) { o.Audience = "user-service" })
	tok := iss.Sign(t, func(_, c map[string]any) {
		c["sub"], c["jti"], c["client_id"] = "5b1c", "j-1", "order-service"
		c["aud"] = []string{"user-service"}
		c["scope"] = "  users:read   orders:write "
		c["roles"] = []string{"USER", "MANAGER"}
		c["cnf"] = map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
		c["act"] = map[string]any{"sub": "spiffe://rampart.local/service/order-service", "act": map[string]any{"sub": "earlier"}}
		c["iat"], c["nbf"], c["exp"] = epochUnix-5, epochUnix-5, epochUnix+595
	})
	got, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	want := &tokens.Claims{
		Issuer: testIssuer, Subject: "5b1c", Audience: []string{"user-service"},
		ExpiresAt: time.Unix(epochUnix+595, 0), IssuedAt: time.Unix(epochUnix-5, 0), NotBefore: time.Unix(epochUnix-5, 0),
		ID: "j-1", ClientID: "order-service",
		Scopes: []string{"users:read", "orders:write"}, Roles: []string{"USER", "MANAGER"},
		CertThumbprint: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2",
		Actor:          "spiffe://rampart.local/service/order-service",
	}
	if !claimsEqual(got, want) {
		t.Fatalf("claims:\n got %+v\nwant %+v", got, want)
	}
	for _, s := range []string{"users:read", "orders:write"} {
		if !got.HasScope(s) {
			t.Errorf("HasScope(%q) = false", s)
		}
	}
	for _, s := range []string{"users", "", "orders:read"} {
		if got.HasScope(s) {
			t.Errorf("HasScope(%q) = true", s)
		}
	}
	if !got.HasRole("MANAGER") || got.HasRole("ADMIN") || got.HasRole("manager") {
		t.Error("HasRole is not an exact match")
	}
	var nilClaims *tokens.Claims
	if nilClaims.HasRole("USER") || nilClaims.HasScope("openid") {
		t.Error("nil claims hold a role or scope")
	}
}

func claimsEqual(a, b *tokens.Claims) bool {
	return a.Issuer == b.Issuer && a.Subject == b.Subject && slices.Equal(a.Audience, b.Audience) &&
		a.ExpiresAt.Equal(b.ExpiresAt) && a.IssuedAt.Equal(b.IssuedAt) && a.NotBefore.Equal(b.NotBefore) &&
		a.ID == b.ID && a.ClientID == b.ClientID && slices.Equal(a.Scopes, b.Scopes) &&
		slices.Equal(a.Roles, b.Roles) && a.CertThumbprint == b.CertThumbprint && a.Actor == b.Actor
}

func TestNewVerifierRefusesUnsafeOptions(t *testing.T) {
	t.Parallel()
	keys := tokens.StaticKeys{}
	tests := []struct {
		name string
		edit func(*tokens.Options)
	}{
		{name: "alg none", edit: func(o *tokens.Options) { o.Algorithms = []string{"ES256", "none"} }},
		{name: "HS256", edit: func(o *tokens.Options) { o.Algorithms = []string{"HS256"} }},
		{name: "HS384", edit: func(o *tokens.Options) { o.Algorithms = []string{"HS384"} }},
		{name: "HS512", edit: func(o *tokens.Options) { o.Algorithms = []string{"HS512"} }},
		{name: "unknown alg", edit: func(o *tokens.Options) { o.Algorithms = []string{"ES256K"} }},
		{name: "alg in the wrong case", edit: func(o *tokens.Options) { o.Algorithms = []string{"es256"} }},
		{name: "leeway above 30s", edit: func(o *tokens.Options) { o.Leeway = 31 * time.Second }},
		{name: "negative leeway", edit: func(o *tokens.Options) { o.Leeway = -time.Second }},
		{name: "no issuer", edit: func(o *tokens.Options) { o.Issuer = "" }},
		{name: "no audience", edit: func(o *tokens.Options) { o.Audience = "" }},
		{name: "no key set", edit: func(o *tokens.Options) { o.Keys = nil }},
		{name: "empty type", edit: func(o *tokens.Options) { o.Types = []string{"application/"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := tokens.Options{Issuer: testIssuer, Audience: testAudience, Keys: keys}
			tt.edit(&o)
			if v, err := tokens.NewVerifier(o); err == nil || v != nil {
				t.Fatalf("NewVerifier accepted %+v", o)
			}
		})
	}
	if _, err := tokens.NewVerifier(tokens.Options{Issuer: testIssuer, Audience: testAudience, Keys: keys,
		Algorithms: []string{"ES256", "RS256", "PS256", "EdDSA"}, Leeway: 30 * time.Second}); err != nil {
		t.Fatalf("safe options refused: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header string
		want   string
		reason tokens.Reason // "" when accepted
	}{
		{name: "bearer token is extracted", header: "Bearer abc.def.ghi", want: "abc.def.ghi"},
		{name: "scheme is case-insensitive", header: "bEARER abc", want: "abc"},
		{name: "token68 punctuation is allowed", header: "Bearer a-b.c_d~e+f/g==", want: "a-b.c_d~e+f/g=="},
		{name: "empty header is missing", header: "", reason: tokens.ReasonMissing},
		{name: "other scheme is malformed", header: "Basic dXNlcjpwdw==", reason: tokens.ReasonMalformed},
		{name: "scheme alone is malformed", header: "Bearer", reason: tokens.ReasonMalformed},
		{name: "scheme and space alone is malformed", header: "Bearer ", reason: tokens.ReasonMalformed},
		{name: "two spaces are malformed", header: "Bearer  abc", reason: tokens.ReasonMalformed},
		{name: "tab separator is malformed", header: "Bearer\tabc", reason: tokens.ReasonMalformed},
		{name: "trailing space is malformed", header: "Bearer abc ", reason: tokens.ReasonMalformed},
		{name: "two tokens are malformed", header: "Bearer abc def", reason: tokens.ReasonMalformed},
		{name: "padding inside the token is malformed", header: "Bearer ab=c", reason: tokens.ReasonMalformed},
		{name: "padding only is malformed", header: "Bearer ==", reason: tokens.ReasonMalformed},
		{name: "quote is malformed", header: `Bearer "abc"`, reason: tokens.ReasonMalformed},
		{name: "comma (a second credential) is malformed", header: "Bearer abc,Bearer def", reason: tokens.ReasonMalformed},
		{name: "control character is malformed", header: "Bearer abc\x00", reason: tokens.ReasonMalformed},
		{name: "non-ASCII is malformed", header: "Bearer abcé", reason: tokens.ReasonMalformed},
		{name: "prefix of the scheme is malformed", header: "Bear abc", reason: tokens.ReasonMalformed},
		{name: "leading space is malformed", header: " Bearer abc", reason: tokens.ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tokens.BearerToken(tt.header)
			if tt.reason == "" {
				if err != nil || got != tt.want {
					t.Fatalf("BearerToken(%q) = %q, %v; want %q", tt.header, got, err, tt.want)
				}
				return
			}
			if got != "" {
				t.Errorf("returned %q with an error", got)
			}
			wantReason(t, err, tt.reason)
		})
	}
}

func TestReasonOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want tokens.Reason
	}{
		{name: "an *Error gives its reason", err: &tokens.Error{Reason: tokens.ReasonExpired}, want: tokens.ReasonExpired},
		{name: "a wrapped *Error gives its reason", err: fmt.Errorf("verify: %w", &tokens.Error{Reason: tokens.ReasonRevoked}), want: tokens.ReasonRevoked},
		{name: "any other error is malformed", err: errors.New("boom"), want: tokens.ReasonMalformed},
		{name: "unknown key from a key set is malformed until Verify classifies it", err: tokens.ErrUnknownKey, want: tokens.ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tokens.ReasonOf(tt.err); got != tt.want {
				t.Fatalf("ReasonOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorUnwrapsTheKeySetError(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	v := newVerifier(t, iss.Keys(), nil, nil)
	_, err := v.Verify(context.Background(), iss.Sign(t, func(h, _ map[string]any) { h["kid"] = "gone" }))
	if !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("error %v does not wrap ErrUnknownKey", err)
	}
	if !strings.Contains(err.Error(), "unknown_key") {
		t.Fatalf("error text %q does not name the reason", err)
	}
}
