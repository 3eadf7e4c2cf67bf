package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rampart-go/rampart/shared/tokens"
)

func open(t *testing.T, dir string, kek []byte, now func() time.Time) *Manager {
	t.Helper()
	m, err := Open(Options{Dir: dir, EncryptionKey: kek, RotateEvery: time.Hour, MaxTokenLifetime: 15 * time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func claims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "https://rampart.test", "sub": "u1", "aud": "rampart-api", "jti": "j1", "client_id": "c",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
}

// fakeClock is a settable clock for Options.Now, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time         { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Add(d time.Duration)    { c.ns.Add(int64(d)) }
func nextKID(m *Manager, alg Alg) string    { return m.snap.Load().next[alg].KID }
func published(m *Manager, kid string) bool { _, ok := m.PublicKeys()[kid]; return ok }

// snapshot is what a verifier that fetched the JWKS now would hold, parsed
// by the verifiers' own parser.
func snapshot(t testing.TB, m *Manager) tokens.StaticKeys {
	t.Helper()
	keys, err := tokens.ParseJWKS(m.JWKS(), []string{"ES256", "RS256"})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// verifyWith checks an at+jwt of either algorithm against keys, as a
// verifier holding only that key set would.
func verifyWith(t testing.TB, keys tokens.KeySet, raw string) error {
	t.Helper()
	v, err := tokens.NewVerifier(tokens.Options{Issuer: "https://rampart.test", Audience: "rampart-api",
		Algorithms: []string{"ES256", "RS256"}, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), raw)
	return err
}

func TestKeysPersistWithOwnerOnlyModeAndEncryption(t *testing.T) {
	t.Parallel()
	for _, kek := range [][]byte{nil, bytes.Repeat([]byte{7}, 32)} {
		dir := t.TempDir()
		m := open(t, dir, kek, nil)
		kid, _ := m.Current(ES256)
		next := nextKID(m, ES256)
		fi, err := os.Stat(filepath.Join(dir, fileName))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %v", fi.Mode().Perm())
		}
		raw, _ := os.ReadFile(filepath.Join(dir, fileName))
		if kek != nil && bytes.Contains(raw, []byte("PRIVATE KEY")) {
			t.Error("encrypted key file holds a plain PEM key")
		}
		again := open(t, dir, kek, nil)
		if k2, _ := again.Current(ES256); k2 != kid {
			t.Errorf("reopened with kid %s, want %s", k2, kid)
		}
		if n2 := nextKID(again, ES256); n2 != next {
			t.Errorf("reopened with next kid %s, want %s: a restart must not replace the pre-published key", n2, next)
		}
		// The promoted key and its fresh successor survive a restart too.
		if err := again.Rotate(); err != nil {
			t.Fatal(err)
		}
		rotated := open(t, dir, kek, nil)
		if k3, _ := rotated.Current(ES256); k3 != next {
			t.Errorf("after rotation reopened with kid %s, want the former next %s", k3, next)
		}
		if n3 := nextKID(rotated, ES256); n3 != nextKID(again, ES256) || n3 == next {
			t.Errorf("after rotation reopened with next kid %s, want %s", n3, nextKID(again, ES256))
		}
		if raw, _ := os.ReadFile(filepath.Join(dir, fileName)); kek != nil && bytes.Contains(raw, []byte("PRIVATE KEY")) {
			t.Error("encrypted key file holds a plain PEM key after rotation")
		}
		if kek != nil {
			wrong := bytes.Repeat([]byte{8}, 32)
			if _, err := Open(Options{Dir: dir, EncryptionKey: wrong}); err == nil {
				t.Error("opened with the wrong key-encryption key")
			}
		}
	}
}

func TestKIDIsTheRFC7638Thumbprint(t *testing.T) {
	t.Parallel()
	m := open(t, t.TempDir(), nil, nil)
	if n := len(m.PublicKeys()); n != 4 {
		t.Errorf("%d published keys after first start, want a current and a next per algorithm", n)
	}
	for kid, pub := range m.PublicKeys() {
		tp, err := Thumbprint(pub)
		if err != nil || tp != kid {
			t.Errorf("kid %s, thumbprint %s (%v)", kid, tp, err)
		}
	}
}

// TestKeySizes pins the published key sizes: P-256 for access tokens and
// 2048-bit RSA for ID tokens (see rsaBits for why not 3072).
func TestKeySizes(t *testing.T) {
	t.Parallel()
	m := open(t, t.TempDir(), nil, nil)
	for kid, pub := range m.PublicKeys() {
		switch k := pub.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() != 2048 {
				t.Errorf("RSA key %s has %d bits, want 2048", kid, k.N.BitLen())
			}
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				t.Errorf("EC key %s on %s, want P-256", kid, k.Curve.Params().Name)
			}
		default:
			t.Errorf("key %s is a %T", kid, pub)
		}
	}
}

// TestRotationUnderTraffic: tokens signed before a rotation keep verifying
// through a JWKS-caching verifier, which picks the new key up on first
// sight of its kid; retired keys leave the JWKS only after every token
// they signed has expired.
func TestRotationUnderTraffic(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	m := open(t, t.TempDir(), nil, now)
	srv := httptest.NewTLSServer(m.Handler())
	defer srv.Close()
	jwks, err := tokens.NewJWKS(tokens.JWKSOptions{URL: srv.URL, Client: srv.Client(), MinRefreshInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := jwks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := tokens.NewVerifier(tokens.Options{Issuer: "https://rampart.test", Audience: "rampart-api", Keys: jwks})
	if err != nil {
		t.Fatal(err)
	}
	sign := func() string {
		s, err := m.Sign(ES256, "at+jwt", claims(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := sign()
	oldKID, _ := m.Current(ES256)

	var wg sync.WaitGroup
	var failures atomic.Int64
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := v.Verify(context.Background(), sign()); err != nil {
					failures.Add(1)
					t.Errorf("verify during rotation: %v", err)
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d verifications failed across the rotation", failures.Load())
	}
	newKID, _ := m.Current(ES256)
	if newKID == oldKID {
		t.Fatal("rotation kept the key")
	}
	if _, err := v.Verify(context.Background(), before); err != nil {
		t.Fatalf("a token signed before the rotation: %v", err)
	}
	// Retired keys stay until their last token expired, then go.
	clock.Add(int64(10 * time.Minute))
	_ = m.Prune()
	if _, ok := m.PublicKeys()[oldKID]; !ok {
		t.Fatal("retired key pruned while its tokens may be valid")
	}
	clock.Add(int64(10 * time.Minute))
	_ = m.Prune()
	if _, ok := m.PublicKeys()[oldKID]; ok {
		t.Fatal("retired key kept after its tokens expired")
	}
	// Pruning only ever drops retired keys: the signing and the next key
	// of each algorithm stay, however old.
	for _, a := range []Alg{ES256, RS256} {
		if kid, _ := m.Current(a); !published(m, kid) || !published(m, nextKID(m, a)) {
			t.Errorf("%s: current or next key pruned", a)
		}
	}
	if n := len(m.PublicKeys()); n != 4 {
		t.Errorf("%d keys published after pruning, want current and next per algorithm", n)
	}
}

// TestEveryKeyIsPublishedBeforeItSigns: each algorithm has a next key in
// the JWKS that signs nothing; Rotate promotes it, so a token signed after
// each of two back-to-back rotations verifies against a JWKS snapshot taken
// before that rotation — no verifier needs to refetch to accept it. The
// age Current reports starts at the promotion, and the retired keys go
// once their last token has expired.
func TestEveryKeyIsPublishedBeforeItSigns(t *testing.T) {
	t.Parallel()
	clock := newClock()
	m := open(t, t.TempDir(), nil, clock.Now)
	sign := func(a Alg) string {
		// Real time in the claims: the verifier checks them against its
		// own clock; the manager's clock only dates the keys.
		s, err := m.Sign(a, "at+jwt", claims(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var retired []string
	for _, a := range []Alg{ES256, RS256} {
		cur, created := m.Current(a)
		if next := nextKID(m, a); next == cur || !published(m, next) {
			t.Fatalf("%s: next key %s not published beside current %s", a, next, cur)
		}
		if !created.Equal(clock.Now()) {
			t.Errorf("%s: first key signs since %v, want %v", a, created, clock.Now())
		}
		if err := verifyWith(t, snapshot(t, m), sign(a)); err != nil {
			t.Fatalf("%s: before any rotation: %v", a, err)
		}
	}
	// The first rotation is due by age; the second follows at once.
	for i, wait := range []time.Duration{2 * time.Hour, time.Second} {
		clock.Add(wait)
		before := snapshot(t, m)
		want := map[Alg][2]string{}
		for _, a := range []Alg{ES256, RS256} {
			cur, _ := m.Current(a)
			want[a] = [2]string{cur, nextKID(m, a)}
		}
		if err := m.Rotate(); err != nil {
			t.Fatal(err)
		}
		for _, a := range []Alg{ES256, RS256} {
			old, next := want[a][0], want[a][1]
			cur, since := m.Current(a)
			if cur != next {
				t.Fatalf("rotation %d, %s: signing with %s, want the pre-published %s", i+1, a, cur, next)
			}
			// The promoted key was generated one rotation ago; its age for
			// Run and the key-age metric starts now.
			if !since.Equal(clock.Now()) {
				t.Errorf("rotation %d, %s: Current says signing since %v, want the promotion at %v", i+1, a, since, clock.Now())
			}
			if n := nextKID(m, a); n == cur || n == old || !published(m, n) {
				t.Errorf("rotation %d, %s: fresh next key %s not published", i+1, a, n)
			}
			if !published(m, old) {
				t.Errorf("rotation %d, %s: retired key %s withdrawn while its tokens live", i+1, a, old)
			}
			tok := sign(a)
			if err := verifyWith(t, before, tok); err != nil {
				t.Errorf("rotation %d, %s: token signed after it, against the JWKS from before it: %v", i+1, a, err)
			}
			retired = append(retired, old)
		}
	}
	clock.Add(15*time.Minute + time.Minute + time.Second)
	if err := m.Prune(); err != nil {
		t.Fatal(err)
	}
	for _, kid := range retired {
		if published(m, kid) {
			t.Errorf("retired key %s still published after its last token expired", kid)
		}
	}
	if n := len(m.PublicKeys()); n != 4 {
		t.Errorf("%d keys published after pruning, want current and next per algorithm", n)
	}
}

// TestRefetchBudgetAcrossBackToBackRotations replays the load test that
// found the bug: a verifier whose unknown-kid refetches are rate limited
// (one per MinRefreshInterval, here longer than the test) sees tokens right
// after each of several rotations in a row. Two and three rotations pass
// with at most one refetch; a fourth within the interval is the documented
// limit (Rotate) and is refused until the interval has passed.
func TestRefetchBudgetAcrossBackToBackRotations(t *testing.T) {
	t.Parallel()
	m := open(t, t.TempDir(), nil, nil)
	var fetches atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		m.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	jwks, err := tokens.NewJWKS(tokens.JWKSOptions{URL: srv.URL, Client: srv.Client(), MinRefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := jwks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for rotation, wantFetches := range []int64{1, 2, 2} {
		if err := m.Rotate(); err != nil {
			t.Fatal(err)
		}
		for _, a := range []Alg{ES256, RS256} {
			tok, err := m.Sign(a, "at+jwt", claims(time.Now()))
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyWith(t, jwks, tok); err != nil {
				t.Fatalf("rotation %d, %s: %v", rotation+1, a, err)
			}
		}
		if got := fetches.Load(); got != wantFetches {
			t.Errorf("rotation %d: %d JWKS fetches, want %d", rotation+1, got, wantFetches)
		}
	}
	if err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	tok, err := m.Sign(ES256, "at+jwt", claims(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyWith(t, jwks, tok); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Errorf("fourth rotation within the refetch interval: %v, want the documented limit (unknown key)", err)
	}
}

// TestOpenAddsANextKeyToAnOldStore: a key file written before
// pre-publication — current and retired keys, no next, no promoted_at —
// still loads, plain or encrypted at rest. Open keeps its keys and their
// signing age, generates a next key per algorithm, and stores it at once
// so a restart publishes the same one.
func TestOpenAddsANextKeyToAnOldStore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		kek  []byte
	}{{"plain PEM", nil}, {"AES-256-GCM at rest", bytes.Repeat([]byte{9}, 32)}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			clock := newClock()
			// Written by the unexported store, whose records for keys
			// without Next and PromotedAt are exactly the old format; the
			// check on the raw file below makes sure of it.
			old := &Manager{o: Options{Dir: dir, EncryptionKey: tc.kek, Now: clock.Now, Rand: rand.Reader}}
			var legacy []key
			for _, spec := range []struct {
				alg     Alg
				retired bool
			}{{ES256, true}, {ES256, false}, {RS256, false}} {
				k, err := old.generate(spec.alg)
				if err != nil {
					t.Fatal(err)
				}
				k.Next = false
				k.CreatedAt = clock.Now().Add(-3 * time.Hour)
				if spec.retired {
					k.CreatedAt = k.CreatedAt.Add(-24 * time.Hour)
					k.RetiredAt = clock.Now().Add(-3 * time.Hour)
				}
				legacy = append(legacy, k)
			}
			if err := old.store(legacy); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(dir, fileName))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte(`"next"`)) || bytes.Contains(raw, []byte(`"promoted_at"`)) {
				t.Fatalf("test store is not in the old format:\n%s", raw)
			}

			m := open(t, dir, tc.kek, clock.Now)
			for _, want := range legacy[1:] {
				kid, since := m.Current(want.Alg)
				if kid != want.KID || !since.Equal(want.CreatedAt) {
					t.Errorf("%s: current %s since %v, want %s since %v (its creation)", want.Alg, kid, since, want.KID, want.CreatedAt)
				}
				if n := nextKID(m, want.Alg); n == want.KID || !published(m, n) {
					t.Errorf("%s: no published next key (%s)", want.Alg, n)
				}
			}
			if !published(m, legacy[0].KID) {
				t.Error("retired key dropped on upgrade")
			}
			raw, err = os.ReadFile(filepath.Join(dir, fileName))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(raw, []byte(`"next": true`)) {
				t.Error("next keys not persisted by Open")
			}
			if tc.kek != nil && bytes.Contains(raw, []byte("PRIVATE KEY")) {
				t.Error("encrypted key file holds a plain PEM key after the upgrade")
			}
			again := open(t, dir, tc.kek, clock.Now)
			for _, a := range []Alg{ES256, RS256} {
				if nextKID(again, a) != nextKID(m, a) {
					t.Errorf("%s: restart published a different next key", a)
				}
			}
			// The first rotation after the upgrade promotes the key
			// published at Open.
			next := nextKID(again, ES256)
			if err := again.Rotate(); err != nil {
				t.Fatal(err)
			}
			if kid, _ := again.Current(ES256); kid != next {
				t.Errorf("rotation after upgrade signs with %s, want %s", kid, next)
			}
		})
	}
}

func TestJWKSHandlerCachesAndRevalidates(t *testing.T) {
	t.Parallel()
	m := open(t, t.TempDir(), nil, nil)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	if rec.Code != 200 || rec.Header().Get("Cache-Control") == "" || rec.Header().Get("ETag") == "" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	if bytes.Contains(rec.Body.Bytes(), []byte(`"d"`)) {
		t.Fatal("JWKS exposes a private key member")
	}
	req := httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil)
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	rec2 := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec2, req)
	if rec2.Code != http.StatusNotModified {
		t.Fatalf("revalidation → %d", rec2.Code)
	}
}
