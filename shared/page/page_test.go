package page

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

const test Cursor = "t1:"

func TestLimit(t *testing.T) {
	for in, want := range map[string]int{"": DefaultLimit, "1": 1, "100": 100} {
		if n, err := ParseLimit(in); err != nil || n != want {
			t.Errorf("%q: %d %v", in, n, err)
		}
	}
	for _, in := range []string{"0", "101", "-1", "1e3", "ten", " 5", "99999999999999999999"} {
		if _, err := ParseLimit(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestCursor(t *testing.T) {
	id := uuid.NewString()
	if got, err := test.Parse(test.Encode(id)); err != nil || got != id {
		t.Fatalf("round trip: %q %v", got, err)
	}
	for name, s := range map[string]string{
		"another list's cursor": Cursor("o1:").Encode(id),
		"raw id":                id,
		"upper-case id":         test.Encode(strings.ToUpper(id)),
		"not an id":             test.Encode("' OR 1=1 --"),
		"padded":                test.Encode(id) + "=",
		"too long":              strings.Repeat("A", 65),
	} {
		if _, err := test.Parse(s); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// FuzzCursor: no input panics, and whatever is accepted is a canonical
// UUID that re-encodes to the same cursor. (The services' own cursor fuzz
// targets keep their seed corpora.)
func FuzzCursor(f *testing.F) {
	f.Add("")
	f.Add(test.Encode("0196f0a8-1c3e-7d2a-9b4f-2f1e3d4c5b6a"))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := test.Parse(s)
		if err != nil || s == "" {
			return
		}
		if u, perr := uuid.Parse(id); perr != nil || u.String() != id {
			t.Fatalf("accepted non-canonical id %q", id)
		}
		if test.Encode(id) != s {
			t.Fatalf("cursor %q is not the encoding of %q", s, id)
		}
	})
}
