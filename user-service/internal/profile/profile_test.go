package profile

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/tokens"
)

func ptr(s string) *string { return &s }

func TestPatchValidate(t *testing.T) {
	cases := []struct {
		name   string
		patch  Patch
		fields []string // invalid fields, in order
	}{
		{"empty patch", Patch{}, []string{"body"}},
		{"name only", Patch{DisplayName: ptr("  Ada Lovelace ")}, nil},
		{"empty name", Patch{DisplayName: ptr("   ")}, []string{"display_name"}},
		{"long name", Patch{DisplayName: ptr(strings.Repeat("é", 101))}, []string{"display_name"}},
		{"name of 100 runes", Patch{DisplayName: ptr(strings.Repeat("é", 100))}, nil},
		{"control char in name", Patch{DisplayName: ptr("Ada\x00")}, []string{"display_name"}},
		{"newline in name", Patch{DisplayName: ptr("Ada\nLovelace")}, []string{"display_name"}},
		{"invalid UTF-8 name", Patch{DisplayName: ptr("Ada\xff")}, []string{"display_name"}},
		{"phone E.164", Patch{Phone: ptr("+4930123456")}, nil},
		{"phone grouped", Patch{Phone: ptr("+49 30 123-456")}, nil},
		{"phone cleared", Patch{Phone: ptr("")}, nil},
		{"phone without plus", Patch{Phone: ptr("030 123456")}, []string{"phone"}},
		{"phone letters", Patch{Phone: ptr("+49 CALL ME")}, []string{"phone"}},
		{"phone too long", Patch{Phone: ptr("+49 " + strings.Repeat("1", 40))}, []string{"phone"}},
		{"address with lines", Patch{Address: ptr("1 Main St\n10115 Berlin")}, nil},
		{"address too long", Patch{Address: ptr(strings.Repeat("a", 501))}, []string{"address"}},
		{"address with tab", Patch{Address: ptr("1 Main St\t")}, nil}, // trimmed away
		{"address with bell", Patch{Address: ptr("1 Main\aSt")}, []string{"address"}},
		{"everything wrong", Patch{DisplayName: ptr(""), Phone: ptr("x"), Address: ptr("\x1b[31m")}, []string{"display_name", "phone", "address"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.patch.Validate()
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("invalid fields %v, want %v", got, tc.fields)
			}
		})
	}
}

func TestPatchApplyTrims(t *testing.T) {
	p := Patch{DisplayName: ptr("  Ada  "), Address: ptr(" x ")}
	if errs := p.Validate(); errs != nil {
		t.Fatal(errs)
	}
	got := p.Apply(Profile{ID: "id", Email: "a@example.com", DisplayName: "old", Phone: "+1 555"})
	want := Profile{ID: "id", Email: "a@example.com", DisplayName: "Ada", Phone: "+1 555", Address: "x"}
	if got != want {
		t.Fatalf("Apply = %+v, want %+v", got, want)
	}
}

func TestObjectRules(t *testing.T) {
	me, other := uuid.NewString(), uuid.NewString()
	claims := func(roles ...string) *tokens.Claims { return &tokens.Claims{Subject: me, Roles: roles} }
	withAdminScope := func(c *tokens.Claims) *tokens.Claims { c.Scopes = []string{"admin"}; return c }
	cases := []struct {
		name                 string
		c                    *tokens.Claims
		id                   string
		view, erase, listAll bool
	}{
		{"user, own", claims("USER"), me, true, true, false},
		{"user, other", claims("USER"), other, false, false, false},
		{"manager, own", claims("MANAGER"), me, true, true, true},
		{"manager, other", claims("MANAGER"), other, true, false, true},
		{"admin, other", withAdminScope(claims("ADMIN")), other, true, true, true},
		{"admin without the admin scope, other", claims("ADMIN"), other, true, false, true},
		{"manager with the admin scope, other", withAdminScope(claims("MANAGER")), other, true, false, true},
		{"lower-case role is no role", claims("admin"), other, false, false, false},
		{"no token", nil, me, false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := CanView(tc.c, tc.id); got != tc.view {
				t.Errorf("CanView = %v", got)
			}
			if got := CanErase(tc.c, tc.id); got != tc.erase {
				t.Errorf("CanErase = %v", got)
			}
			if got := CanList(tc.c); got != tc.listAll {
				t.Errorf("CanList = %v", got)
			}
		})
	}
}

func TestCursor(t *testing.T) {
	id := uuid.NewString()
	got, err := ParseCursor(EncodeCursor(id))
	if err != nil || got != id {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	if got, err := ParseCursor(""); err != nil || got != "" {
		t.Fatalf("empty cursor: %q, %v", got, err)
	}
	for _, bad := range []string{
		"x", "!!!!", EncodeCursor("not-a-uuid"), EncodeCursor(strings.ToUpper(id)),
		EncodeCursor(id + "' OR 1=1 --"), strings.Repeat("A", 65), "cDE6" + "\x00",
	} {
		if _, err := ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) accepted", bad)
		}
	}
}

// FuzzParseCursor: no input panics, and whatever is accepted is a
// canonical UUID that re-encodes to the same cursor.
func FuzzParseCursor(f *testing.F) {
	f.Add("")
	f.Add(EncodeCursor("0196f0a8-1c3e-7d2a-9b4f-2f1e3d4c5b6a"))
	f.Add("cDE6")
	f.Add(strings.Repeat("A", 64))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseCursor(s)
		if err != nil || s == "" {
			return
		}
		if u, perr := uuid.Parse(id); perr != nil || u.String() != id {
			t.Fatalf("accepted non-canonical id %q", id)
		}
		if EncodeCursor(id) != s {
			t.Fatalf("cursor %q is not the encoding of %q", s, id)
		}
	})
}
