package jsonx

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/shared/problem"
)

type item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type order struct {
	Items   []item            `json:"items"`
	Note    *string           `json:"note,omitempty"`
	Meta    map[string]string `json:"meta"`
	When    time.Time         `json:"when"`
	Any     any               `json:"any"`
	Skipped string            `json:"-"`
	Embedded
}

type Embedded struct {
	Tag string `json:"tag"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		code       problem.Code // "" = accepted
		msg        string
	}{
		{"a well-formed body is accepted", `{"items":[{"sku":"A","quantity":2}],"meta":{"k":"v"},"tag":"x","when":"2026-01-01T00:00:00Z","any":{"Any":1,"any":2}}`, "", ""},
		{"an unknown top-level field is refused", `{"items":[],"roles":["ADMIN"]}`, problem.Invalid, `unknown field "roles"`},
		{"an unknown nested field is refused", `{"items":[{"sku":"A","price_cents":1}]}`, problem.Invalid, `unknown field "items[0].price_cents"`},
		{"a duplicate key is refused", `{"tag":"a","tag":"b"}`, problem.Invalid, `duplicate key "tag"`},
		{"a duplicate key inside a map is refused", `{"meta":{"k":"1","k":"2"}}`, problem.Invalid, `duplicate key "meta.k"`},
		{"a duplicate key under an interface is refused", `{"any":{"a":1,"a":2}}`, problem.Invalid, `duplicate key "any.a"`},
		{"a case-variant key is refused", `{"Items":[]}`, problem.Invalid, `field "Items" must be spelled "items"`},
		{"a case-variant nested key is refused", `{"items":[{"SKU":"A"}]}`, problem.Invalid, `must be spelled "items[0].sku"`},
		{"a Kelvin-sign fold is refused", "{\"ta\u212a\":\"x\"}", problem.Invalid, "unknown field"},
		{"a field tagged - is unknown", `{"Skipped":"x"}`, problem.Invalid, `unknown field "Skipped"`},
		{"trailing data is refused", `{"tag":"a"}{"tag":"b"}`, problem.Invalid, "unexpected data after the JSON value"},
		{"trailing garbage is refused", `{"tag":"a"} x`, problem.Invalid, ""},
		{"trailing whitespace is fine", "{\"tag\":\"a\"} \n\t", "", ""},
		{"an empty body is refused", "  ", problem.Invalid, "empty"},
		{"invalid UTF-8 is refused", "{\"tag\":\"\xff\"}", problem.Invalid, "UTF-8"},
		{"a syntax error is refused", `{"tag":}`, problem.Invalid, "invalid JSON"},
		{"a truncated document is refused", `{"items":[`, problem.Invalid, ""},
		{"a wrong type names the field", `{"items":[{"sku":"A","quantity":"two"}]}`, problem.Invalid, `"items.quantity" must be an integer in range`},
		{"an overflowing integer is refused", `{"items":[{"quantity":1e400}]}`, problem.Invalid, ""},
		{"deep nesting is refused", `{"any":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, problem.Invalid, "nesting deeper"},
		{"a top-level array is refused for an object", `[1,2]`, problem.Invalid, "must be an object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var o order
			err := Decode(strings.NewReader(tc.body), &o)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var pe *problem.Error
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("got %v, want code %s", err, tc.code)
			}
			if !strings.Contains(pe.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", pe.Message, tc.msg)
			}
		})
	}
}

// TestRefusedDocumentsLeaveTheTargetUntouched: the checks run before any
// assignment, so a handler never sees a half-filled value.
func TestRefusedDocumentsLeaveTheTargetUntouched(t *testing.T) {
	t.Parallel()
	o := order{Embedded: Embedded{Tag: "before"}}
	if err := Decode(strings.NewReader(`{"tag":"after","roles":[]}`), &o); err == nil {
		t.Fatal("accepted")
	}
	if o.Tag != "before" {
		t.Errorf("target modified to %q", o.Tag)
	}
}

func TestBodyOverTheLimitIsTooLarge(t *testing.T) {
	t.Parallel()
	r := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(`{"tag":"`+strings.Repeat("a", 100)+`"}`)), 16)
	var o order
	var pe *problem.Error
	if err := Decode(r, &o); !errors.As(err, &pe) || pe.Code != problem.TooLarge {
		t.Fatalf("got %v, want too_large", err)
	}
}

func TestAllowUnknown(t *testing.T) {
	t.Parallel()
	var o order
	if err := DecodeWith(strings.NewReader(`{"tag":"a","extra":1}`), &o, Options{AllowUnknown: true}); err != nil {
		t.Fatal(err)
	}
	if err := DecodeWith(strings.NewReader(`{"tag":"a","tag":1}`), &o, Options{AllowUnknown: true}); err == nil {
		t.Fatal("duplicates must be refused even when unknown fields are allowed")
	}
}

// FuzzDecode: no input panics, and whatever Decode accepts encoding/json
// accepts too, with the same result.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"items":[{"sku":"A","quantity":1}]}`, `{"tag":"a","tag":"b"}`, `{"Items":[]}`, `[]`, `null`,
		`{"meta":{"a":"b"}}`, `{"any":[[[{"x":1}]]]}`, "{\"tag\":\"\xff\"}", `{"items":[{"quantity":1e400}]}`, `{} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var strict order
		err := Decode(strings.NewReader(string(data)), &strict)
		var pe *problem.Error
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("non-problem error %T: %v", err, err)
		}
		if err != nil {
			return
		}
		var lax order
		if err := json.Unmarshal(data, &lax); err != nil {
			t.Fatalf("strict accepted what encoding/json refuses: %v", err)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	body := `{"items":[{"sku":"RMP-MUG","quantity":2},{"sku":"RMP-TSHIRT","quantity":1}],"tag":"gift"}`
	b.Run("jsonx", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var o order
			if err := Decode(strings.NewReader(body), &o); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var o order
			if err := json.Unmarshal([]byte(body), &o); err != nil {
				b.Fatal(err)
			}
		}
	})
}
