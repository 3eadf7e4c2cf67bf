package order

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/tokens"
)

// TestTransitions checks every ordered pair of statuses against the
// contract's state machine, so adding a status or an edge is a deliberate
// change to this table.
func TestTransitions(t *testing.T) {
	allowed := map[[2]Status]bool{
		{Pending, Paid}:      true,
		{Pending, Cancelled}: true,
		{Paid, Shipped}:      true,
		{Paid, Cancelled}:    true,
		{Shipped, Delivered}: true,
	}
	n := 0
	for _, from := range Statuses() {
		for _, to := range Statuses() {
			n++
			if got := CanTransition(from, to); got != allowed[[2]Status{from, to}] {
				t.Errorf("%s → %s: %v", from, to, got)
			}
		}
	}
	if n != 25 {
		t.Fatalf("checked %d pairs, want 25", n)
	}
	for _, bogus := range []Status{"", "PAID", "refunded"} {
		for _, s := range Statuses() {
			if CanTransition(s, bogus) || CanTransition(bogus, s) {
				t.Errorf("unknown status %q takes part in a transition", bogus)
			}
		}
	}
}

func TestParseStatus(t *testing.T) {
	for _, s := range Statuses() {
		if got, ok := ParseStatus(string(s)); !ok || got != s {
			t.Errorf("%s: %v %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "Paid", "PENDING", " paid", "paid\x00", "refunded"} {
		if _, ok := ParseStatus(s); ok {
			t.Errorf("%q accepted", s)
		}
	}
}

func lines(n int, sku string, qty int) []LineRequest {
	out := make([]LineRequest, n)
	for i := range out {
		out[i] = LineRequest{SKU: fmt.Sprintf("%s-%d", sku, i), Quantity: qty}
	}
	return out
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		req    CreateRequest
		fields []string
	}{
		{"one line", CreateRequest{Items: []LineRequest{{"RMP-MUG", 1}}}, nil},
		{"100 lines at the maximum quantity", CreateRequest{Items: lines(100, "SKU", 1000)}, nil},
		{"no items", CreateRequest{}, []string{"items"}},
		{"101 lines", CreateRequest{Items: lines(101, "SKU", 1)}, []string{"items"}},
		{"quantity 0", CreateRequest{Items: []LineRequest{{"RMP-MUG", 0}}}, []string{"items[0].quantity"}},
		{"negative quantity", CreateRequest{Items: []LineRequest{{"RMP-MUG", -5}}}, []string{"items[0].quantity"}},
		{"quantity 1001", CreateRequest{Items: []LineRequest{{"RMP-MUG", 1001}}}, []string{"items[0].quantity"}},
		{"empty sku", CreateRequest{Items: []LineRequest{{"", 1}}}, []string{"items[0].sku"}},
		{"lower-case sku", CreateRequest{Items: []LineRequest{{"rmp-mug", 1}}}, []string{"items[0].sku"}},
		{"sql in sku", CreateRequest{Items: []LineRequest{{"X' OR 1=1--", 1}}}, []string{"items[0].sku"}},
		{"long sku", CreateRequest{Items: []LineRequest{{strings.Repeat("A", 65), 1}}}, []string{"items[0].sku"}},
		{"duplicate sku", CreateRequest{Items: []LineRequest{{"RMP-MUG", 1}, {"RMP-MUG", 2}}}, []string{"items[1].sku"}},
		{"every problem at once", CreateRequest{Items: []LineRequest{{"", 0}, {"RMP-MUG", 2000}}},
			[]string{"items[0].sku", "items[0].quantity", "items[1].quantity"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := c.req.Validate()
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if strings.Join(got, ",") != strings.Join(c.fields, ",") {
				t.Errorf("fields %v, want %v (%v)", got, c.fields, errs)
			}
		})
	}
}

var testCatalog = map[string]CatalogItem{
	"RMP-MUG":    {SKU: "RMP-MUG", PriceCents: 1450, Currency: "EUR"},
	"RMP-HOODIE": {SKU: "RMP-HOODIE", PriceCents: 5900, Currency: "EUR"},
	"RMP-USD":    {SKU: "RMP-USD", PriceCents: 100, Currency: "USD"},
	"RMP-HUGE":   {SKU: "RMP-HUGE", PriceCents: 1 << 62, Currency: "EUR"},
}

func TestPrice(t *testing.T) {
	items, total, cur, errs := Price(CreateRequest{Items: []LineRequest{{"RMP-MUG", 3}, {"RMP-HOODIE", 1}}}, testCatalog)
	if len(errs) > 0 || total != 3*1450+5900 || cur != "EUR" || len(items) != 2 ||
		items[0] != (Item{"RMP-MUG", 3, 1450}) || items[1] != (Item{"RMP-HOODIE", 1, 5900}) {
		t.Fatalf("%v %d %s %v", items, total, cur, errs)
	}
	for name, req := range map[string]CreateRequest{
		"unknown sku":    {Items: []LineRequest{{"RMP-MUG", 1}, {"RMP-NOPE", 1}}},
		"mixed currency": {Items: []LineRequest{{"RMP-MUG", 1}, {"RMP-USD", 1}}},
		"overflow":       {Items: []LineRequest{{"RMP-HUGE", 1000}}},
	} {
		if _, _, _, errs := Price(req, testCatalog); len(errs) != 1 {
			t.Errorf("%s: %v", name, errs)
		}
	}
}

func TestObjectRules(t *testing.T) {
	owner, other := uuid.NewString(), uuid.NewString()
	user := &tokens.Claims{Subject: owner, Roles: []string{policy.RoleUser}}
	stranger := &tokens.Claims{Subject: other, Roles: []string{policy.RoleUser}}
	manager := &tokens.Claims{Subject: other, Roles: []string{policy.RoleManager}}
	admin := &tokens.Claims{Subject: other, Roles: []string{policy.RoleAdmin}}
	for _, st := range Statuses() {
		o := Order{UserID: owner, Status: st}
		cases := []struct {
			who          string
			c            *tokens.Claims
			view, cancel bool
		}{
			{"owner", user, true, st == Pending},
			{"stranger", stranger, false, false},
			{"manager", manager, true, true},
			{"admin", admin, true, true},
			{"nobody", nil, false, false},
		}
		for _, c := range cases {
			if got := CanView(c.c, o); got != c.view {
				t.Errorf("%s view %s: %v", c.who, st, got)
			}
			if got := CanCancel(c.c, o); got != c.cancel {
				t.Errorf("%s cancel %s: %v", c.who, st, got)
			}
		}
	}
}

// FuzzParseCursor: no input panics, and whatever is accepted is a
// canonical UUID that re-encodes to the same cursor.
func FuzzParseCursor(f *testing.F) {
	f.Add("")
	f.Add(EncodeCursor("0196f0a8-1c3e-7d2a-9b4f-2f1e3d4c5b6a"))
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
