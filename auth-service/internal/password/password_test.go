package password

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		pw      string
		context []string
		want    Problem
	}{
		{"short", nil, TooShort},
		{"elevenchars", nil, TooShort},
		{strings.Repeat("é", 11), nil, TooShort}, // counted in characters, not bytes
		{strings.Repeat("x", 129), nil, TooLong},
		{"\xff\xfe-not-utf8-at-all", nil, NotUTF8},
		{"baseball1234", nil, Common},     // common word padded with digits
		{"!!Football2024!!", nil, Common}, // padded with symbols
		{"passwordpassword", nil, Common}, // a common word repeated
		{"PASSWORD123456", nil, Common},   // case does not help
		{"my-rampart-login-01", nil, Contextual},
		{"alice.smith.was.here", []string{"alice.smith"}, Contextual},
		{"aaaaaaaaaaaa", nil, Repetitive},
		{"abababababab", nil, Repetitive},
		{"123456789012", nil, Repetitive},
		{"abcdefghijklmn", nil, Repetitive},
		{"correct horse battery staple", nil, ""},
		{"Tr0ub4dor&3-plus-more", nil, ""},
		{strings.Repeat("long passphrase ", 8), nil, ""},
		{strings.Repeat("x", 128), nil, Repetitive}, // max length passes the length rule
		{"ünïcödé pässwörd wörks", nil, ""},
	}
	for _, c := range cases {
		if got := Check(c.pw, c.context...); got != c.want {
			t.Errorf("Check(%q) = %q, want %q", c.pw, got, c.want)
		}
	}
	if len(common) < 7000 {
		t.Fatalf("common list not loaded: %d entries", len(common))
	}
}

var testParams = Params{MemoryKiB: 64, Time: 1, Threads: 1}

var ctx = context.Background()

// TestConcurrencyIsBounded: with every slot taken a caller waits, and
// gives up without computing when its context ends; callers queued behind
// the slots all finish and give every slot back.
func TestConcurrencyIsBounded(t *testing.T) {
	const n = 2
	h, err := NewHasherN(testParams, n)
	if err != nil {
		t.Fatal(err)
	}
	// Occupy every slot, as n long computations would.
	for range n {
		h.slots <- struct{}{}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := h.Hash(short, "correct horse battery staple"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hash with every slot taken: %v, want context.DeadlineExceeded", err)
	}
	if ok, _, err := h.Verify(short, "x", h.dummy); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify with every slot taken: ok=%v err=%v", ok, err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("returned after %s without waiting for a slot", waited)
	}

	// Free the slots: many callers queue for them and all finish, and
	// every slot is given back (a leak would deadlock the next logins).
	for range n {
		<-h.slots
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			enc, err := h.Hash(ctx, "correct horse battery staple")
			if err == nil && i%2 == 0 {
				_, _, err = h.Verify(ctx, "correct horse battery staple", enc)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(h.slots) != 0 {
		t.Fatalf("%d slots still held after every caller returned", len(h.slots))
	}
	if _, err := NewHasherN(testParams, 0); err == nil {
		t.Fatal("NewHasherN accepted 0 slots")
	}
}

func TestHashVerifyAndRehash(t *testing.T) {
	h, err := NewHasher(testParams)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("not a PHC argon2id string: %s", enc)
	}
	if again, _ := h.Hash(ctx, "correct horse battery staple"); again == enc {
		t.Fatal("salt not random")
	}
	if ok, rehash, err := h.Verify(ctx, "correct horse battery staple", enc); !ok || rehash || err != nil {
		t.Fatalf("verify: ok=%v rehash=%v err=%v", ok, rehash, err)
	}
	if ok, _, _ := h.Verify(ctx, "correct horse battery stapl", enc); ok {
		t.Fatal("wrong password accepted")
	}
	stronger, _ := NewHasher(Params{MemoryKiB: 128, Time: 2, Threads: 1})
	if ok, rehash, _ := stronger.Verify(ctx, "correct horse battery staple", enc); !ok || !rehash {
		t.Fatalf("parameter change not detected: ok=%v rehash=%v", ok, rehash)
	}
	if _, rehash, _ := stronger.Verify(ctx, "wrong", enc); rehash {
		t.Fatal("rehash suggested after a failed verification")
	}
	h.Burn(ctx, "anything") // must not panic
}

func TestMalformedHashes(t *testing.T) {
	h, _ := NewHasher(testParams)
	for _, s := range []string{
		"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5", // memory bomb
		"$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1$!!$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$",
	} {
		if ok, _, err := h.Verify(ctx, "x", s); ok || err == nil {
			t.Errorf("Verify accepted malformed %q (ok=%v err=%v)", s, ok, err)
		}
	}
}

func TestGenerate(t *testing.T) {
	a, _ := Generate()
	b, _ := Generate()
	if a == b || len(a) != 24 || Check(a) != "" {
		t.Fatalf("generated %q, %q", a, b)
	}
}

func BenchmarkHashDefault(b *testing.B) {
	h, _ := NewHasher(DefaultParams)
	for b.Loop() {
		_, _ = h.Hash(ctx, "correct horse battery staple")
	}
}
