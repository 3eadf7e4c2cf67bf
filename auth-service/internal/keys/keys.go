// Package keys manages the authorization server's signing keys: generated
// on first start (never shipped), persisted with mode 0600 — and encrypted
// with AES-256-GCM when a key-encryption key is configured — rotated on a
// schedule, and published in a JWKS that keeps every retired key for as
// long as tokens it signed may still be valid.
//
// Keys are pre-published, as large identity providers do: for each
// algorithm the manager holds a current key, which signs, and a next key,
// which is already in the JWKS but signs nothing yet. Rotate promotes next
// to current and publishes a fresh next, so verifiers learn every key one
// rotation before it signs (see Rotate for what that guarantees).
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

// rsaBits is the ID-token key size. 2048 bits is 112-bit security, which
// NIST SP 800-57 accepts through 2030, and what Google, Okta, Auth0 and
// Entra ID sign ID tokens with; our keys also rotate daily and retire with
// their tokens. 3072 bits costs 3.1x the CPU per signature (2.6 ms against
// 0.84 ms here) on every code and refresh grant, for a margin a key that
// lives one day does not need (docs/security.md, "Signing keys").
const rsaBits = 2048

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

// key is one signing key, in one of three states: next (Next set:
// published, not signing), current (signing) or retired (RetiredAt set:
// published until its last token has expired).
type key struct {
	KID       string
	Alg       Alg
	Private   crypto.Signer
	CreatedAt time.Time // generated
	// PromotedAt is when the key became current: zero while next. A current
	// key from a store written before pre-publication has none on disk and
	// takes CreatedAt, which is when it started signing.
	PromotedAt time.Time
	RetiredAt  time.Time // zero while next or current
	Next       bool
}

// set is an immutable snapshot; Manager swaps whole snapshots.
type set struct {
	keys    []key // current, then next, then retired; newest first in each
	current map[Alg]*key
	next    map[Alg]*key
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

// Open loads the key file or, on first start, generates and stores a
// current and a next key per algorithm. A file written before
// pre-publication (no next key) gets a next key per algorithm, stored
// before Open returns. It returns an error when Dir is empty, the
// encryption key is not 32 bytes, or the file cannot be read, decrypted,
// parsed or written.
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
			k.Next, k.PromotedAt = false, k.CreatedAt
			keys = append(keys, k)
		}
		if keys, err = m.addMissingNext(keys); err != nil {
			return nil, err
		}
		if err := m.store(keys); err != nil {
			return nil, err
		}
		log.Info("generated signing keys", slog.String("dir", o.Dir))
	case err != nil:
		return nil, err
	default:
		n := len(keys)
		if keys, err = m.addMissingNext(keys); err != nil {
			return nil, err
		}
		if len(keys) != n {
			// Stored before the set is served: a restart must not publish
			// a different next key than the one verifiers already cached.
			if err := m.store(keys); err != nil {
				return nil, err
			}
			log.Info("generated pre-published next signing keys", slog.String("dir", o.Dir))
		}
	}
	s, err := newSet(keys)
	if err != nil {
		return nil, err
	}
	m.snap.Store(s)
	return m, nil
}

// addMissingNext appends a fresh next key for each algorithm that has none.
func (m *Manager) addMissingNext(keys []key) ([]key, error) {
	for _, a := range []Alg{ES256, RS256} {
		has := false
		for _, k := range keys {
			has = has || (k.Alg == a && k.Next)
		}
		if has {
			continue
		}
		k, err := m.generate(a)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// generate returns a fresh key of a in the next state.
func (m *Manager) generate(a Alg) (key, error) {
	var priv crypto.Signer
	var err error
	switch a {
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), m.o.Rand)
	case RS256:
		priv, err = rsa.GenerateKey(m.o.Rand, rsaBits)
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
	return key{KID: kid, Alg: a, Private: priv, CreatedAt: m.o.Now().UTC(), Next: true}, nil
}

// rank orders keys by state in the JWKS: current first (a client that
// ignores kid and takes the first key still gets the signing one), then
// next, then retired.
func (k *key) rank() int {
	switch {
	case !k.RetiredAt.IsZero():
		return 2
	case k.Next:
		return 1
	}
	return 0
}

// newSet builds the snapshot of keys. It returns an error unless every
// algorithm has a current key and exactly one next key. Of several
// unretired non-next keys of one algorithm (which no version of this
// package writes) the newest is current; the others stay published.
func newSet(keys []key) (*set, error) {
	sort.SliceStable(keys, func(i, j int) bool {
		ri, rj := keys[i].rank(), keys[j].rank()
		if ri != rj {
			return ri < rj
		}
		return keys[i].CreatedAt.After(keys[j].CreatedAt)
	})
	s := &set{keys: keys, current: map[Alg]*key{}, next: map[Alg]*key{}, public: map[string]crypto.PublicKey{}}
	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	for i := range s.keys {
		k := &s.keys[i]
		switch k.rank() {
		case 0:
			if _, dup := s.current[k.Alg]; !dup {
				s.current[k.Alg] = k
			}
		case 1:
			if _, dup := s.next[k.Alg]; dup {
				return nil, fmt.Errorf("keys: more than one next %s key", k.Alg)
			}
			s.next[k.Alg] = k
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
		if s.next[a] == nil {
			return nil, fmt.Errorf("keys: no next %s key", a)
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

// Rotate, for each algorithm, retires the current key (still published
// until every token it signed has expired), promotes the next key to
// current, publishes a fresh next key, and prunes retired keys past their
// last token. It returns an error, and changes nothing, when a key cannot
// be generated or the key file cannot be written.
//
// Why back-to-back rotations are safe. Every JWKS response is one atomic
// snapshot; say a verifier's snapshot is "taken at f" when it is the set
// this manager served at f, and write R for the verifiers'
// MinRefreshInterval (shared/tokens: 10 s), the least time between two
// fetches that unknown kids may trigger.
//
//  1. A key is published one rotation before it signs (next from rotation
//     n, or from Open; current from rotation n+1) and stays published
//     until every token it signed has expired.
//  2. So a snapshot taken at f holds the key of every live token signed
//     before the second rotation after f: that key was next or current at
//     f. In particular a verifier that accepts a token of the current key K
//     has fetched after K was published as next; and if that fetch came
//     after K began signing — as any fetch a miss triggers does — it also
//     learnt K's successor, so the following rotation needs no fetch
//     either. A verifier misses the kid of a genuine token only when two
//     rotations have happened since its last successful fetch.
//  3. On a miss it refetches, and learns the kid, unless a miss already
//     triggered a fetch less than R ago, at m. That refusal is the only way
//     a genuine token fails, and by 2 applied to the snapshot taken at m it
//     needs two more rotations after m, and the token before m+R.
//  4. With genuine tokens only, the fetch at m was itself triggered by a
//     miss, so by 2 two rotations came between it and the fetch before it
//     (a background refresh, at most RefreshInterval = 5 min earlier).
//
// Guarantee: a genuine token is refused only after four rotations since a
// verifier's previous fetch, the second of which made it refetch at m and
// the fourth of which came before m+R; the refusals last until m+R. Under
// load m follows the second rotation at once, so that is three rotations
// within R preceded by a fourth since the previous fetch. Two or three
// rotations in a row, with none in the 5 min before — `make rotate-keys`
// twice, or three times — never yield 401 unknown_key; without a next
// key, two within R did (the first made verifiers refetch, the second
// found the budget spent).
//
// Limits. Made-up kids (an attacker, a broken client) spend the same
// budget: a verifier flooded with them refetches every R anyway, and then
// two rotations within R can be refused for up to R (without a next key,
// one could). A verifier whose fetches fail keeps its last good snapshot,
// which covers one rotation after it. And a copy from a shared HTTP cache
// honouring max-age=300 is a snapshot up to 5 min old, so the counting
// starts there.
func (m *Manager) Rotate() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.Now().UTC()
	keys := append([]key(nil), m.snap.Load().keys...)
	for i := range keys {
		switch k := &keys[i]; {
		case k.Next:
			k.Next, k.PromotedAt = false, now
		case k.RetiredAt.IsZero():
			k.RetiredAt = now
		}
	}
	keys, err := m.addMissingNext(keys)
	if err != nil {
		return err
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
	m.log.Info("signing keys rotated",
		slog.String("es256_kid", s.current[ES256].KID), slog.String("rs256_kid", s.current[RS256].KID),
		slog.String("es256_next_kid", s.next[ES256].KID), slog.String("rs256_next_kid", s.next[RS256].KID))
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
// promotion (see Current), so restarts do not reset the clock — and
// prunes, until ctx ends.
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

// Current returns the id of the key that signs alg and when it started
// signing. That is its promotion from next to current, not its generation:
// a key is generated one rotation before it signs, so its generation time
// would make a just-promoted key look RotateEvery old — Run would rotate
// again within the minute, and rampart_auth_signing_key_age_seconds would
// not drop to 0 at a rotation. What age limits is how long one key signs.
// For a key from a store written before pre-publication, or the first key
// of a new store, promotion and generation are the same time.
func (m *Manager) Current(alg Alg) (kid string, createdAt time.Time) {
	k := m.snap.Load().current[alg]
	if k == nil {
		return "", time.Time{}
	}
	return k.KID, k.PromotedAt
}

// JWKS returns the public key set document.
func (m *Manager) JWKS() []byte { return m.snap.Load().jwks }

// PublicKeys returns kid → public key for every published key: current,
// next and retired.
func (m *Manager) PublicKeys() map[string]crypto.PublicKey {
	out := map[string]crypto.PublicKey{}
	for k, v := range m.snap.Load().public {
		out[k] = v
	}
	return out
}

// Handler serves the JWKS. max-age=300 lets verifiers cache it, and is far
// shorter than the overlap a retired key gets; a copy at most one rotation
// old already holds the signing key (it was published as next), and a
// verifier that meets an unknown kid refetches anyway. application/json
// rather than application/jwk-set+json: several widely used clients only
// accept the former.
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
	// PromotedAt and Next were added with pre-publication. A record
	// without them is current (or retired), and its CreatedAt is when it
	// started signing. An older binary ignores both: it would sign with the
	// newest unretired key, the next one — already published, so a
	// downgrade behaves like one more rotation.
	PromotedAt time.Time `json:"promoted_at,omitzero"`
	Next       bool      `json:"next,omitzero"`
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
		k := key{KID: r.KID, Alg: r.Alg, Private: signer, CreatedAt: r.CreatedAt, PromotedAt: r.PromotedAt, RetiredAt: r.RetiredAt, Next: r.Next}
		if k.Next {
			k.PromotedAt = time.Time{}
		} else if k.PromotedAt.IsZero() {
			k.PromotedAt = k.CreatedAt
		}
		keys = append(keys, k)
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
		r := stored{KID: k.KID, Alg: k.Alg, CreatedAt: k.CreatedAt, PromotedAt: k.PromotedAt, RetiredAt: k.RetiredAt, Next: k.Next}
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
