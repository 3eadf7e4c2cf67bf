package httpapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/rampart-go/rampart/order-service/internal/order"
	"github.com/rampart-go/rampart/shared/problem"
)

func TestParseCreate(t *testing.T) {
	ok := []struct{ body, key string }{
		{`{"items":[{"sku":"RMP-MUG","quantity":2}]}`, ""},
		{`{"items":[{"sku":"RMP-MUG","quantity":2}]}`, "order-2026-12-01-1"},
	}
	for _, c := range ok {
		if _, _, err := parseCreate(strings.NewReader(c.body), c.key); err != nil {
			t.Errorf("%s %q: %v", c.body, c.key, err)
		}
	}
	bad := []struct{ name, body, key string }{
		{"not json", `items`, ""},
		{"no items", `{}`, ""},
		{"client price", `{"items":[{"sku":"RMP-MUG","quantity":1,"price_cents":1}]}`, ""},
		{"client total", `{"items":[{"sku":"RMP-MUG","quantity":1}],"total_cents":1}`, ""},
		{"client owner", `{"items":[{"sku":"RMP-MUG","quantity":1}],"user_id":"x"}`, ""},
		{"client status", `{"items":[{"sku":"RMP-MUG","quantity":1}],"status":"paid"}`, ""},
		{"case-variant key", `{"Items":[{"sku":"RMP-MUG","quantity":1}]}`, ""},
		{"duplicate key", `{"items":[],"items":[{"sku":"RMP-MUG","quantity":1}]}`, ""},
		{"trailing data", `{"items":[{"sku":"RMP-MUG","quantity":1}]} {}`, ""},
		{"fractional quantity", `{"items":[{"sku":"RMP-MUG","quantity":1.5}]}`, ""},
		{"huge quantity", `{"items":[{"sku":"RMP-MUG","quantity":1e30}]}`, ""},
		{"string quantity", `{"items":[{"sku":"RMP-MUG","quantity":"1"}]}`, ""},
		{"key with space", `{"items":[{"sku":"RMP-MUG","quantity":1}]}`, "a b"},
		{"key with newline", `{"items":[{"sku":"RMP-MUG","quantity":1}]}`, "a\nb"},
		{"key too long", `{"items":[{"sku":"RMP-MUG","quantity":1}]}`, strings.Repeat("k", 256)},
	}
	for _, c := range bad {
		_, _, err := parseCreate(strings.NewReader(c.body), c.key)
		var pe *problem.Error
		if !errors.As(err, &pe) || pe.Code != problem.Invalid {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestReplayHashIsCanonical: the same order with other whitespace or key
// order is the same request; another quantity is not.
func TestReplayHashIsCanonical(t *testing.T) {
	hash := func(body string) string {
		_, idem, err := parseCreate(strings.NewReader(body), "k")
		if err != nil {
			t.Fatal(err)
		}
		return idem.Hash
	}
	a := hash(`{"items":[{"sku":"RMP-MUG","quantity":2}]}`)
	b := hash(" {\n \"items\" : [ {\"quantity\":2, \"sku\":\"RMP-MUG\"} ] }\n")
	c := hash(`{"items":[{"sku":"RMP-MUG","quantity":3}]}`)
	if a != b || a == c || len(a) != 64 {
		t.Errorf("%s %s %s", a, b, c)
	}
}

// FuzzParseCreate: no body or key panics or is half-accepted: either an
// error that is a 400/413 problem, or a request within every limit with a
// well-formed key hash.
func FuzzParseCreate(f *testing.F) {
	f.Add(`{"items":[{"sku":"RMP-MUG","quantity":2}]}`, "")
	f.Add(`{"items":[{"sku":"RMP-MUG","quantity":2}]}`, "key-1")
	f.Fuzz(func(t *testing.T, body, key string) {
		req, idem, err := parseCreate(strings.NewReader(body), key)
		if err != nil {
			var pe *problem.Error
			if !errors.As(err, &pe) || (pe.Code != problem.Invalid && pe.Code != problem.TooLarge) {
				t.Fatalf("error is not a client problem: %v", err)
			}
			return
		}
		if len(req.Items) < 1 || len(req.Items) > order.MaxItems {
			t.Fatalf("%d items accepted", len(req.Items))
		}
		for _, l := range req.Items {
			if l.Quantity < 1 || l.Quantity > order.MaxQuantity || l.SKU == "" {
				t.Fatalf("line %+v accepted", l)
			}
		}
		if (key == "") != (idem.Key == "") || (key != "" && len(idem.Hash) != 64) {
			t.Fatalf("key %q → %+v", key, idem)
		}
	})
}
