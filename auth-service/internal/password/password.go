// Package password holds the human-password rules: NIST SP 800-63B checks
// at registration and argon2id hashing.
//
// 800-63B §5.1.1.2 asks for a minimum length, a generous maximum, a check
// against commonly used and compromised passwords, and no composition rules
// ("one digit, one symbol"): those push people to predictable patterns
// without adding entropy. We add two checks the same section suggests:
// context-specific words (the service's name, the user's own email) and
// repetitive or sequential characters.
package password

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Length limits, in characters (Unicode code points, as 800-63B counts).
const (
	MinLength = 12
	MaxLength = 128
)

//go:embed common.txt
var commonList []byte

// common is the bundled list, lower-cased.
var common = func() map[string]struct{} {
	m := make(map[string]struct{}, 8000)
	s := bufio.NewScanner(bytes.NewReader(commonList))
	for s.Scan() {
		if line := s.Text(); line != "" && !strings.HasPrefix(line, "#") {
			m[line] = struct{}{}
		}
	}
	return m
}()

// Problem is a rule a password broke, phrased for the person choosing it.
type Problem string

// The rules.
const (
	TooShort   Problem = "must be at least 12 characters"
	TooLong    Problem = "must be at most 128 characters"
	NotUTF8    Problem = "must be valid text"
	Common     Problem = "is too common: it appears in lists of breached passwords"
	Contextual Problem = "must not contain your email address or the service's name"
	Repetitive Problem = "is too repetitive or sequential"
)

// Check returns the first rule pw breaks, or "" when it is acceptable.
// context holds words the password must not be built on (the email's local
// part, the display name); they are compared case-insensitively.
func Check(pw string, context ...string) Problem {
	if !utf8.ValidString(pw) {
		return NotUTF8
	}
	n := utf8.RuneCountInString(pw)
	switch {
	case n < MinLength:
		return TooShort
	case n > MaxLength:
		return TooLong
	}
	lower := strings.ToLower(pw)
	if _, ok := common[lower]; ok {
		return Common
	}
	// "Password2024!" is as guessable as "password": strip the digits and
	// symbols people pad a common word with, and look the core up too.
	core := strings.TrimFunc(lower, func(r rune) bool { return !unicode.IsLetter(r) })
	if _, ok := common[core]; ok {
		return Common
	}
	if w := repeatedWord(core); w != "" {
		if _, ok := common[w]; ok {
			return Common
		}
	}
	for _, c := range append([]string{"rampart"}, context...) {
		c = strings.ToLower(strings.TrimSpace(c))
		if len(c) >= 4 && strings.Contains(lower, c) {
			return Contextual
		}
	}
	if repetitive(lower) {
		return Repetitive
	}
	return ""
}

// repeatedWord returns w when s is w repeated two or more times.
func repeatedWord(s string) string {
	for l := 1; l <= len(s)/2; l++ {
		if len(s)%l == 0 && strings.Repeat(s[:l], len(s)/l) == s {
			return s[:l]
		}
	}
	return ""
}

// repetitive is true for passwords with under five distinct characters
// ("aaaaaaaaaaaa", "abababababab") or one arithmetic run ("123456789012"
// counts as a run that wraps, "abcdefghijkl", "zyxwvutsrqpo").
func repetitive(s string) bool {
	distinct := map[rune]struct{}{}
	for _, r := range s {
		distinct[r] = struct{}{}
	}
	if len(distinct) < 5 {
		return true
	}
	rs := []rune(s)
	step := rs[1] - rs[0]
	if step != 1 && step != -1 {
		return false
	}
	for i := 2; i < len(rs); i++ {
		d := rs[i] - rs[i-1]
		wrap := unicode.IsDigit(rs[i]) && (d == -9*step)
		if d != step && !wrap {
			return false
		}
	}
	return true
}

// Params are argon2id's cost parameters. OWASP's 2024 minimum is 19 MiB,
// two passes, one lane; raise memory first when the hardware allows.
type Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultParams are the production defaults.
var DefaultParams = Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

// Hasher hashes and verifies passwords with one set of parameters.
//
// At most one argon2id computation per CPU runs at a time; the rest wait
// for a slot (or for their context to end). Each computation holds
// MemoryKiB (19 MiB by default) until it finishes, so without the bound a
// burst of logins — or an attacker's flood of them from many addresses —
// would grow the heap by 19 MiB per concurrent request until the process
// is killed. More computations than CPUs would not finish any sooner.
type Hasher struct {
	p Params
	// dummy is a real hash of a random password, verified against when an
	// account does not exist so the answer takes the same time.
	dummy string
	slots chan struct{}
}

// NewHasher validates p and prepares the dummy hash. It allows
// runtime.GOMAXPROCS(0) computations at once.
func NewHasher(p Params) (*Hasher, error) {
	return NewHasherN(p, runtime.GOMAXPROCS(0))
}

// NewHasherN is NewHasher with at most n computations at once.
func NewHasherN(p Params, n int) (*Hasher, error) {
	if p.MemoryKiB < 8*uint32(p.Threads) || p.Time < 1 || p.Threads < 1 {
		return nil, fmt.Errorf("password: invalid argon2id parameters %+v", p)
	}
	if n < 1 {
		return nil, fmt.Errorf("password: concurrency %d, want at least 1", n)
	}
	h := &Hasher{p: p, slots: make(chan struct{}, n)}
	var pw [32]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, err
	}
	d, err := h.Hash(context.Background(), string(pw[:]))
	if err != nil {
		return nil, err
	}
	h.dummy = d
	return h, nil
}

// acquire takes a computation slot, or gives up when ctx ends first (the
// caller has gone: its work would be wasted).
func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("password: waiting for a hashing slot: %w", ctx.Err())
	}
}

func (h *Hasher) release() { <-h.slots }

// Occupy takes every slot until the returned function is called: for tests
// of what callers do while the hasher is saturated.
func (h *Hasher) Occupy() (release func()) {
	for range cap(h.slots) {
		h.slots <- struct{}{}
	}
	return func() {
		for range cap(h.slots) {
			<-h.slots
		}
	}
}

// Hash returns the PHC-format argon2id hash of pw:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, h.p.Time, h.p.MemoryKiB, h.p.Threads, keyLen)
	h.release()
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, h.p.MemoryKiB, h.p.Time, h.p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// ErrMalformedHash means a stored hash could not be parsed.
var ErrMalformedHash = errors.New("password: malformed hash")

// Verify reports whether pw matches encoded, in constant time, and whether
// encoded was made with other parameters than the hasher's (the caller
// re-hashes on a successful login, so a parameter change rolls out as
// people sign in).
// It waits for a computation slot as Hash does.
func (h *Hasher) Verify(ctx context.Context, pw, encoded string) (ok, rehash bool, err error) {
	p, salt, key, err := decode(encoded)
	if err != nil {
		return false, false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(key))) //nolint:gosec // len(key) is at most 1 KiB, checked in decode
	ok = subtle.ConstantTimeCompare(got, key) == 1
	return ok, ok && p != h.p, nil
}

// Burn does the work of one verification against the dummy hash: called
// for unknown accounts so they cost what known ones do.
func (h *Hasher) Burn(ctx context.Context, pw string) { _, _, _ = h.Verify(ctx, pw, h.dummy) }

func decode(s string) (Params, []byte, []byte, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Params{}, nil, nil, ErrMalformedHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return Params{}, nil, nil, ErrMalformedHash
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil ||
		p.Time < 1 || p.Threads < 1 || p.MemoryKiB < 8 || p.MemoryKiB > 4<<20 || p.Time > 64 {
		return Params{}, nil, nil, ErrMalformedHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return Params{}, nil, nil, ErrMalformedHash
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 1024 {
		return Params{}, nil, nil, ErrMalformedHash
	}
	return p, salt, key, nil
}

// Generate returns a random password for seeded accounts: 24 characters
// from a 62-symbol alphabet, about 143 bits.
func Generate() (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)] // 256 % 62 bias is negligible at 143 bits
	}
	return string(b), nil
}
