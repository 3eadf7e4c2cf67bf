package tokens_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/shared/tokens"
	"github.com/rampart-go/rampart/shared/tokens/tokenstest"
)

// fuzzKID is the kid the FuzzVerify seeds carry.
const fuzzKID = "fuzz-key"

// knownReasons is every Reason Verify may return for a non-empty token.
func knownReasons() []tokens.Reason {
	return []tokens.Reason{
		tokens.ReasonMalformed, tokens.ReasonSignature, tokens.ReasonAlgorithm, tokens.ReasonExpired,
		tokens.ReasonNotYetValid, tokens.ReasonIssuer, tokens.ReasonAudience, tokens.ReasonType,
		tokens.ReasonUnknownKey, tokens.ReasonRevoked, tokens.ReasonTooLarge, tokens.ReasonClaims,
	}
}

// FuzzVerify feeds arbitrary strings to Verify. Two properties:
//
//  1. the string itself never verifies (it cannot carry a signature by a
//     key generated for this run) and never panics;
//  2. its first two segments re-signed with the real key — which gets the
//     fuzzer past the signature into the claims code — verify only when
//     the header and claims really are acceptable, checked here with
//     encoding/json as an independent, lenient oracle.
//
// Seeds are in testdata/fuzz/FuzzVerify (claims are dated around
// epochUnix, the verifier's clock).
func FuzzVerify(f *testing.F) {
	iss := tokenstest.NewIssuer(f, testIssuer, testAudience)
	iss.Now = fixedNow
	iss.KID = fuzzKID // the seeds name it, so re-signed seeds reach the claims checks
	v := newVerifier(f, iss.Keys(), nil, nil)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		if c, err := v.Verify(ctx, raw); err == nil {
			t.Fatalf("unsigned input verified: %+v", c)
		} else if r := tokens.ReasonOf(err); r == tokens.ReasonMissing && raw != "" ||
			r != tokens.ReasonMissing && !slices.Contains(knownReasons(), r) {
			t.Fatalf("reason %q for %q", r, raw)
		}

		h64, rest, ok1 := strings.Cut(raw, ".")
		p64, _, ok2 := strings.Cut(rest, ".")
		if !ok1 || !ok2 {
			return
		}
		input := h64 + "." + p64
		signed := input + "." + enc(tokenstest.SignES256(t, iss.Key, input))
		c, err := v.Verify(ctx, signed)
		if err != nil {
			if r := tokens.ReasonOf(err); !slices.Contains(knownReasons(), r) {
				t.Fatalf("reason %q", r)
			}
			return
		}
		checkAccepted(t, iss, h64, p64, c)
	})
}

// checkAccepted re-checks an accepted token with encoding/json.
func checkAccepted(t *testing.T, iss *tokenstest.Issuer, h64, p64 string, c *tokens.Claims) {
	t.Helper()
	var h map[string]any
	hb, err := jwtDecode(h64)
	if err != nil || json.Unmarshal(hb, &h) != nil {
		t.Fatalf("accepted a header encoding/json cannot read: %q", hb)
	}
	if h["alg"] != "ES256" || h["kid"] != iss.KID {
		t.Fatalf("accepted header %v", h)
	}
	if typ, _ := h["typ"].(string); !strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), "at+jwt") {
		t.Fatalf("accepted typ %q", typ)
	}
	if _, ok := h["crit"]; ok {
		t.Fatalf("accepted crit %v", h["crit"])
	}
	// A map, not a struct: encoding/json matches struct fields
	// case-insensitively, and "ISS" is not the issuer.
	var p map[string]any
	pb, err := jwtDecode(p64)
	if err != nil || json.Unmarshal(pb, &p) != nil {
		t.Fatalf("accepted claims encoding/json cannot read: %q", pb)
	}
	num := func(name string) (float64, bool) { f, ok := p[name].(float64); return f, ok }
	exp, okExp := num("exp")
	iat, okIat := num("iat")
	nbf, okNbf := num("nbf")
	now, leeway := float64(epochUnix), tokens.MaxLeeway.Seconds()
	switch {
	case c.Issuer != testIssuer || p["iss"] != testIssuer:
		t.Fatalf("accepted iss %q", c.Issuer)
	case !slices.Contains(c.Audience, testAudience):
		t.Fatalf("accepted aud %v", c.Audience)
	case c.Subject == "" || p["sub"] != c.Subject || c.ID == "" || p["jti"] != c.ID:
		t.Fatalf("accepted sub %q jti %q (json: %v %v)", c.Subject, c.ID, p["sub"], p["jti"])
	case !okExp || exp+leeway <= now || !c.ExpiresAt.Add(tokens.MaxLeeway).After(fixedNow()):
		t.Fatalf("accepted exp %v", p["exp"])
	case !okIat || iat-leeway > now || c.IssuedAt.Add(-tokens.MaxLeeway).After(fixedNow()):
		t.Fatalf("accepted iat %v", p["iat"])
	case p["nbf"] != nil && (!okNbf || nbf-leeway > now):
		t.Fatalf("accepted nbf %v", p["nbf"])
	}
	if c.ExpiresAt.Before(time.Unix(0, 0)) {
		t.Fatalf("accepted negative exp %v", c.ExpiresAt)
	}
}

// FuzzBearerToken checks BearerToken against its definition: it accepts
// exactly "Bearer" (any case), one space and a token68, returning the
// token68 unchanged; anything else is malformed, and only "" is missing.
func FuzzBearerToken(f *testing.F) {
	f.Fuzz(func(t *testing.T, header string) {
		tok, err := tokens.BearerToken(header)
		if err != nil {
			want := tokens.ReasonMalformed
			if header == "" {
				want = tokens.ReasonMissing
			}
			if r := tokens.ReasonOf(err); r != want || tok != "" {
				t.Fatalf("BearerToken(%q) = %q, %q; want reason %q", header, tok, r, want)
			}
			if len(header) > 7 && strings.EqualFold(header[:7], "Bearer ") && isToken68(header[7:]) {
				t.Fatalf("refused a well-formed credential %q", header)
			}
			return
		}
		if len(header) < 8 || !strings.EqualFold(header[:7], "Bearer ") || header[7:] != tok || !isToken68(tok) {
			t.Fatalf("BearerToken(%q) accepted %q", header, tok)
		}
	})
}

// isToken68 is RFC 7235's token68, written independently of the code under
// test: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	i := 0
	for i < len(s) && strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/", s[i]) >= 0 {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(s) && s[i] == '=' {
		i++
	}
	return i == len(s)
}
