package keys

import (
	"bytes"
	"context"
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

func TestKeysPersistWithOwnerOnlyModeAndEncryption(t *testing.T) {
	for _, kek := range [][]byte{nil, bytes.Repeat([]byte{7}, 32)} {
		dir := t.TempDir()
		m := open(t, dir, kek, nil)
		kid, _ := m.Current(ES256)
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
		if kek != nil {
			wrong := bytes.Repeat([]byte{8}, 32)
			if _, err := Open(Options{Dir: dir, EncryptionKey: wrong}); err == nil {
				t.Error("opened with the wrong key-encryption key")
			}
		}
	}
}

func TestKIDIsTheRFC7638Thumbprint(t *testing.T) {
	m := open(t, t.TempDir(), nil, nil)
	for kid, pub := range m.PublicKeys() {
		tp, err := Thumbprint(pub)
		if err != nil || tp != kid {
			t.Errorf("kid %s, thumbprint %s (%v)", kid, tp, err)
		}
	}
}

// TestRotationUnderTraffic: tokens signed before a rotation keep verifying
// through a JWKS-caching verifier, which picks the new key up on first
// sight of its kid; retired keys leave the JWKS only after every token
// they signed has expired.
func TestRotationUnderTraffic(t *testing.T) {
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
}

func TestJWKSHandlerCachesAndRevalidates(t *testing.T) {
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
