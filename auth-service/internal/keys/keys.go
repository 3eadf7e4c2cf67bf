// Package keys manages the authorization server's signing keys: generated
// on first start (never shipped), persisted with mode 0600 — and encrypted
// with AES-256-GCM when a key-encryption key is configured — rotated on a
// schedule, and published in a JWKS that keeps every retired key for as
// long as tokens it signed may still be valid.
//
// Access tokens are signed ES256; ID tokens RS256 (OpenID Connect Discovery
// requires RS256 support). Key ids are RFC 7638 thumbprints.
package keys

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Alg is a signing algorithm.
type Alg string

// The algorithms the server signs with.
const (
	ES256 Alg = "ES256"
	RS256 Alg = "RS256"
)

// Options configure Open.
type Options struct {
	Dir string
	// EncryptionKey is an optional 32-byte key-encryption key.
	EncryptionKey []byte
	// RotateEvery is the scheduled rotation period (default 24h).
	RotateEvery time.Duration
	// MaxTokenLifetime is the longest lifetime of a token signed with these
	// keys; a retired key stays published that long plus a minute.
	MaxTokenLifetime time.Duration
	Now              func() time.Time
	Rand             io.Reader
	Logger           *slog.Logger
}

// key is one signing key.
type key struct {
	KID       string
	Alg       Alg
	Private   crypto.Signer
	CreatedAt time.Time
	RetiredAt time.Time // zero while current
}

// set is an immutable snapshot; Manager swaps whole snapshots.
type set struct {
	keys    []key // current first, then retired, newest first
	current map[Alg]*key
	public  map[string]crypto.PublicKey
	jwks    []byte
	etag    string
}

// Manager holds the keys.
type Manager struct {
	o    Options
	log  *slog.Logger
	snap atomic.Pointer[set]
	mu   sync.Mutex // serialises rotation and persistence
}

const fileName = "signing-keys.json"

// Open loads the key file or, on first start, generates and stores one key
// per algorithm.
func Open(o Options) (*Manager, error) {
	if o.Dir == "" {
		return nil, errors.New("keys: directory is required")
	}
	if len(o.EncryptionKey) != 0 && len(o.EncryptionKey) != 32 {
		return nil, errors.New("keys: encryption key must be 32 bytes")
	}
	if o.RotateEvery <= 0 {
		o.RotateEvery = 24 * time.Hour
	}
	if o.MaxTokenLifetime <= 0 {
		o.MaxTokenLifetime = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{o: o, log: log}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: create %s: %w", o.Dir, err)
	}
	keys, err := m.load()
	switch {
	case errors.Is(err, os.ErrNotExist):
		keys = nil
		for _, a := range []Alg{ES256, RS256} {
			k, err := m.generate(a)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
		if err := m.store(keys); err != nil {
			return nil, err
		}
		log.Info("generated signing keys", slog.String("dir", o.Dir))
	case err != nil:
		return nil, err
	}
	s, err := newSet(keys)
	if err != nil {
		return nil, err
	}
	m.snap.Store(s)
	return m, nil
}

func (m *Manager) generate(a Alg) (key, error) {
	var priv crypto.Signer
	var err error
	switch a {
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), m.o.Rand)
	case RS256:
		priv, err = rsa.GenerateKey(m.o.Rand, 3072)
	default:
		return key{}, fmt.Errorf("keys: unsupported algorithm %s", a)
	}
	if err != nil {
		return key{}, fmt.Errorf("keys: generate %s key: %w", a, err)
	}
	kid, err := Thumbprint(priv.Public())
	if err != nil {
		return key{}, err
	}
	return key{KID: kid, Alg: a, Private: priv, CreatedAt: m.o.Now().UTC()}, nil
}

func newSet(keys []key) (*set, error) {
	sort.SliceStable(keys, func(i, j int) bool {
		ri, rj := keys[i].RetiredAt.IsZero(), keys[j].RetiredAt.IsZero()
		if ri != rj {
			return ri
		}
		return keys[i].CreatedAt.After(keys[j].CreatedAt)
	})
	s := &set{keys: keys, current: map[Alg]*key{}, public: map[string]crypto.PublicKey{}}
	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	for i := range s.keys {
		k := &s.keys[i]
		if k.RetiredAt.IsZero() {
			if _, dup := s.current[k.Alg]; !dup {
				s.current[k.Alg] = k
			}
		}
		s.public[k.KID] = k.Private.Public()
		j, err := publicJWK(k.Private.Public())
		if err != nil {
			return nil, err
		}
		j["kid"], j["alg"], j["use"] = k.KID, string(k.Alg), "sig"
		jwks.Keys = append(jwks.Keys, j)
	}
	for _, a := range []Alg{ES256, RS256} {
		if s.current[a] == nil {
			return nil, fmt.Errorf("keys: no current %s key", a)
		}
	}
	b, err := json.Marshal(jwks)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	s.jwks, s.etag = b, `"`+base64.RawURLEncoding.EncodeToString(sum[:16])+`"`
	return s, nil
}

// Sign signs claims with the current key of alg, setting kid and typ.
func (m *Manager) Sign(alg Alg, typ string, claims jwt.Claims) (string, error) {
	k := m.snap.Load().current[alg]
	if k == nil {
		return "", fmt.Errorf("keys: no current %s key", alg)
	}
	var method jwt.SigningMethod = jwt.SigningMethodES256
	if alg == RS256 {
		method = jwt.SigningMethodRS256
	}
	t := jwt.NewWithClaims(method, claims)
	t.Header["kid"] = k.KID
	t.Header["typ"] = typ
	return t.SignedString(k.Private)
}

// Rotate makes a fresh key of each algorithm current, retires the previous
// ones (still published until every token they signed has expired) and
// prunes retired keys past that point.
func (m *Manager) Rotate() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.Now().UTC()
	keys := append([]key(nil), m.snap.Load().keys...)
	for i := range keys {
		if keys[i].RetiredAt.IsZero() {
			keys[i].RetiredAt = now
		}
	}
	for _, a := range []Alg{ES256, RS256} {
		k, err := m.generate(a)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	keys = m.prune(keys, now)
	s, err := newSet(keys)
	if err != nil {
		return err
	}
	if err := m.store(keys); err != nil {
		return err
	}
	m.snap.Store(s)
	m.log.Info("signing keys rotated", slog.String("es256_kid", s.current[ES256].KID), slog.String("rs256_kid", s.current[RS256].KID))
	return nil
}

// prune drops retired keys whose last token has expired.
func (m *Manager) prune(keys []key, now time.Time) []key {
	keep := keys[:0]
	for _, k := range keys {
		if !k.RetiredAt.IsZero() && now.Sub(k.RetiredAt) > m.o.MaxTokenLifetime+time.Minute {
			continue
		}
		keep = append(keep, k)
	}
	return keep
}

// Prune removes expired retired keys now (Run does it on schedule).
func (m *Manager) Prune() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.snap.Load().keys
	keys := m.prune(append([]key(nil), old...), m.o.Now())
	if len(keys) == len(old) {
		return nil
	}
	s, err := newSet(keys)
	if err != nil {
		return err
	}
	if err := m.store(keys); err != nil {
		return err
	}
	m.snap.Store(s)
	return nil
}

// Run rotates when the current key is RotateEvery old — measured from its
// creation time, so restarts do not reset the clock — and prunes, until ctx
// ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if _, created := m.Current(ES256); m.o.Now().Sub(created) >= m.o.RotateEvery {
			if err := m.Rotate(); err != nil {
				m.log.Error("scheduled key rotation failed", slog.Any("error", err))
			}
		} else if err := m.Prune(); err != nil {
			m.log.Error("pruning retired keys failed", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Current returns the current key id of alg and when it was created.
func (m *Manager) Current(alg Alg) (kid string, createdAt time.Time) {
	k := m.snap.Load().current[alg]
	if k == nil {
		return "", time.Time{}
	}
	return k.KID, k.CreatedAt
}

// JWKS returns the public key set document.
func (m *Manager) JWKS() []byte { return m.snap.Load().jwks }

// PublicKeys returns kid → public key for every published key.
func (m *Manager) PublicKeys() map[string]crypto.PublicKey {
	out := map[string]crypto.PublicKey{}
	for k, v := range m.snap.Load().public {
		out[k] = v
	}
	return out
}

// Handler serves the JWKS. max-age=300 lets verifiers cache it, and is far
// shorter than the overlap a retired key gets; a verifier that meets an
// unknown kid refetches anyway. application/json rather than
// application/jwk-set+json: several widely used clients only accept the
// former.
func (m *Manager) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.snap.Load()
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("ETag", s.etag)
		if r.Header.Get("If-None-Match") == s.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(s.jwks)
	})
}

// Thumbprint is the RFC 7638 JWK thumbprint of pub: SHA-256 over the
// required members in lexicographic order, base64url without padding.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	var canon string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("keys: only P-256 EC keys")
		}
		x, y, err := ecXY(k)
		if err != nil {
			return "", err
		}
		canon = fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, b64(x), b64(y))
	case *rsa.PublicKey:
		canon = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(big.NewInt(int64(k.E)).Bytes()), b64(k.N.Bytes()))
	default:
		return "", fmt.Errorf("keys: unsupported key type %T", pub)
	}
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:]), nil
}

func publicJWK(pub crypto.PublicKey) (map[string]string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		x, y, err := ecXY(k)
		if err != nil {
			return nil, err
		}
		return map[string]string{"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}, nil
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}, nil
	}
	return nil, fmt.Errorf("keys: unsupported key type %T", pub)
}

// ecXY returns a P-256 key's fixed-width coordinates from its uncompressed
// encoding (0x04 || X || Y).
func ecXY(k *ecdsa.PublicKey) (x, y []byte, err error) {
	b, err := k.Bytes()
	if err != nil || len(b) != 65 {
		return nil, nil, fmt.Errorf("keys: encode EC key: %w", err)
	}
	return b[1:33], b[33:65], nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// stored is the on-disk form of one key.
type stored struct {
	KID       string    `json:"kid"`
	Alg       Alg       `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// Private is PKCS#8 PEM, or base64(nonce || AES-256-GCM ciphertext)
	// with the kid as additional data when a key-encryption key is set.
	Private   string `json:"private"`
	Encrypted bool   `json:"encrypted"`
}

func (m *Manager) path() string { return filepath.Join(m.o.Dir, fileName) }

func (m *Manager) load() ([]key, error) {
	fi, err := os.Stat(m.path())
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keys: %s has mode %v; private keys must be 0600", m.path(), fi.Mode().Perm())
	}
	b, err := os.ReadFile(m.path())
	if err != nil {
		return nil, err
	}
	var recs []stored
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("keys: parse %s: %w", m.path(), err)
	}
	keys := make([]key, 0, len(recs))
	for _, r := range recs {
		der, err := m.decrypt(r)
		if err != nil {
			return nil, err
		}
		pk, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("keys: parse key %s: %w", r.KID, err)
		}
		signer, ok := pk.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("keys: key %s cannot sign", r.KID)
		}
		if kid, err := Thumbprint(signer.Public()); err != nil || kid != r.KID {
			return nil, fmt.Errorf("keys: key %s does not match its id", r.KID)
		}
		keys = append(keys, key{KID: r.KID, Alg: r.Alg, Private: signer, CreatedAt: r.CreatedAt, RetiredAt: r.RetiredAt})
	}
	return keys, nil
}

func (m *Manager) decrypt(r stored) ([]byte, error) {
	if !r.Encrypted {
		if len(m.o.EncryptionKey) != 0 {
			return nil, fmt.Errorf("keys: key %s is stored unencrypted but a key-encryption key is configured; refusing to mix", r.KID)
		}
		blk, _ := pem.Decode([]byte(r.Private))
		if blk == nil {
			return nil, fmt.Errorf("keys: key %s is not PEM", r.KID)
		}
		return blk.Bytes, nil
	}
	if len(m.o.EncryptionKey) == 0 {
		return nil, fmt.Errorf("keys: key %s is encrypted and no key-encryption key is configured", r.KID)
	}
	raw, err := base64.StdEncoding.DecodeString(r.Private)
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: %w", r.KID, err)
	}
	gcm, err := m.gcm()
	if err != nil {
		return nil, err
	}
	if len(raw) < gcm.NonceSize() {
		return nil, fmt.Errorf("keys: key %s is truncated", r.KID)
	}
	der, err := gcm.Open(nil, raw[:gcm.NonceSize()], raw[gcm.NonceSize():], []byte(r.KID))
	if err != nil {
		return nil, fmt.Errorf("keys: cannot decrypt key %s: wrong key-encryption key or tampered file", r.KID)
	}
	return der, nil
}

func (m *Manager) gcm() (cipher.AEAD, error) {
	blk, err := aes.NewCipher(m.o.EncryptionKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func (m *Manager) store(keys []key) error {
	recs := make([]stored, 0, len(keys))
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			return err
		}
		r := stored{KID: k.KID, Alg: k.Alg, CreatedAt: k.CreatedAt, RetiredAt: k.RetiredAt}
		if len(m.o.EncryptionKey) == 0 {
			r.Private = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		} else {
			gcm, err := m.gcm()
			if err != nil {
				return err
			}
			nonce := make([]byte, gcm.NonceSize())
			if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
				return err
			}
			r.Private = base64.StdEncoding.EncodeToString(gcm.Seal(nonce, nonce, der, []byte(k.KID)))
			r.Encrypted = true
		}
		recs = append(recs, r)
	}
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(m.o.Dir, ".signing-keys-*")
	if err != nil {
		return fmt.Errorf("keys: write: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) //nolint:errcheck // gone after a successful rename
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, m.path())
}
