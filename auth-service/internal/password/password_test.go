package password

import (
	"strings"
	"testing"
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

func TestHashVerifyAndRehash(t *testing.T) {
	h, err := NewHasher(testParams)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := h.Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("not a PHC argon2id string: %s", enc)
	}
	if again, _ := h.Hash("correct horse battery staple"); again == enc {
		t.Fatal("salt not random")
	}
	if ok, rehash, err := h.Verify("correct horse battery staple", enc); !ok || rehash || err != nil {
		t.Fatalf("verify: ok=%v rehash=%v err=%v", ok, rehash, err)
	}
	if ok, _, _ := h.Verify("correct horse battery stapl", enc); ok {
		t.Fatal("wrong password accepted")
	}
	stronger, _ := NewHasher(Params{MemoryKiB: 128, Time: 2, Threads: 1})
	if ok, rehash, _ := stronger.Verify("correct horse battery staple", enc); !ok || !rehash {
		t.Fatalf("parameter change not detected: ok=%v rehash=%v", ok, rehash)
	}
	if _, rehash, _ := stronger.Verify("wrong", enc); rehash {
		t.Fatal("rehash suggested after a failed verification")
	}
	h.Burn("anything") // must not panic
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
		if ok, _, err := h.Verify("x", s); ok || err == nil {
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
		_, _ = h.Hash("correct horse battery staple")
	}
}
