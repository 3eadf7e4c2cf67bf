package tokens_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-go/rampart/shared/tokens"
	"github.com/rampart-go/rampart/shared/tokens/tokenstest"
)

const (
	testIssuer   = "https://rampart.test"
	testAudience = "rampart-api"
)

// epochUnix is the fixed "now" of every test, so expiry rows cannot flake.
const epochUnix = 1_800_000_000

func fixedNow() time.Time { return time.Unix(epochUnix, 0) }

// newIssuer returns an issuer on the fixed clock.
func newIssuer(t testing.TB) *tokenstest.Issuer {
	t.Helper()
	iss := tokenstest.NewIssuer(t, testIssuer, testAudience)
	iss.Now = fixedNow
	return iss
}

// newVerifier builds a verifier over keys on the fixed clock; edit may
// change the options first.
func newVerifier(t testing.TB, keys tokens.KeySet, rev tokens.Revocations, edit func(*tokens.Options)) *tokens.Verifier {
	t.Helper()
	o := tokens.Options{Issuer: testIssuer, Audience: testAudience, Keys: keys, Revocations: rev, Now: fixedNow}
	if edit != nil {
		edit(&o)
	}
	v, err := tokens.NewVerifier(o)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// denyList is a Revocations that revokes the listed jtis and records every
// call.
type denyList struct {
	mu      sync.Mutex
	revoked map[string]bool
	calls   atomic.Int64
}

func (d *denyList) Revoked(_ context.Context, jti, _ string, _ time.Time) bool {
	d.calls.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.revoked[jti]
}

func (d *denyList) revoke(jti string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.revoked == nil {
		d.revoked = map[string]bool{}
	}
	d.revoked[jti] = true
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// withSignature replaces tok's signature segment with sig.
func withSignature(tok string, sig []byte) string {
	return tok[:strings.LastIndexByte(tok, '.')+1] + enc(sig)
}

// signingInput returns the first two segments of tok.
func signingInput(tok string) string { return tok[:strings.LastIndexByte(tok, '.')] }

// segments returns tok's three segments.
func segments(t testing.TB, tok string) (h, p, s string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

// rawJSONToken signs header and payload given as raw JSON text, for rows
// that need what json.Marshal will not write (duplicate keys, odd types).
func rawJSONToken(t testing.TB, iss *tokenstest.Issuer, header, payload string) string {
	t.Helper()
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	return input + "." + enc(tokenstest.SignES256(t, iss.Key, input))
}

func wantReason(t testing.TB, err error, want tokens.Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("verified; want refusal %q", want)
	}
	if got := tokens.ReasonOf(err); got != want {
		t.Fatalf("reason = %q, want %q (%v)", got, want, err)
	}
}

func jwtDecode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func sha256Sum(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// claimOf returns the string claim name of tok (unverified: test input).
func claimOf(t testing.TB, tok, name string) string {
	t.Helper()
	_, p, _ := segments(t, tok)
	b, err := jwtDecode(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[name].(string)
	return s
}
