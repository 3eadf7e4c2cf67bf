package oauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseForm(t *testing.T) {
	cases := []struct {
		name, body, ctype, query string
		ok                       bool
	}{
		{"plain", "grant_type=client_credentials&scope=a+b", "application/x-www-form-urlencoded", "", true},
		{"charset parameter", "a=b", "application/x-www-form-urlencoded; charset=UTF-8", "", true},
		{"repeated parameter", "grant_type=a&grant_type=b", "application/x-www-form-urlencoded", "", false},
		{"json body", `{"grant_type":"x"}`, "application/json", "", false},
		{"no content type", "a=b", "", "", false},
		{"query string", "a=b", "application/x-www-form-urlencoded", "code=x", false},
		{"bad escape", "a=%zz", "application/x-www-form-urlencoded", "", false},
		{"control character", "a=%00", "application/x-www-form-urlencoded", "", false},
		{"invalid utf-8", "a=%ff", "application/x-www-form-urlencoded", "", false},
		{"too large", "a=" + strings.Repeat("x", maxFormBytes), "application/x-www-form-urlencoded", "", false},
		{"too many", strings.Repeat("a=1&", 0) + manyParams(40), "application/x-www-form-urlencoded", "", false},
		{"semicolon separator", "a=1;b=2", "application/x-www-form-urlencoded", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := "/oauth2/token"
			if c.query != "" {
				target += "?" + c.query
			}
			r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(c.body))
			if c.ctype != "" {
				r.Header.Set("Content-Type", c.ctype)
			}
			_, err := ParseForm(r)
			if (err == nil) != c.ok {
				t.Fatalf("ParseForm: err=%v, want ok=%v", err, c.ok)
			}
		})
	}
}

func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString("p")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString("=1")
	}
	return b.String()
}

func TestMatchRedirect(t *testing.T) {
	reg := []string{"http://127.0.0.1/callback", "http://[::1]/callback", "https://app.example/cb"}
	for uri, want := range map[string]bool{
		"http://127.0.0.1/callback":         true,
		"http://127.0.0.1:53682/callback":   true,
		"http://[::1]:8080/callback":        true,
		"https://app.example/cb":            true,
		"https://app.example:8443/cb":       false, // ports only float on loopback
		"https://app.example/cb/":           false,
		"https://app.example/cb?x=1":        false,
		"https://app.example/cb#frag":       false,
		"http://localhost:53682/callback":   false,
		"http://127.0.0.1:53682/callback?a": false,
		"http://127.0.0.1:53682/Callback":   false,
		"http://127.0.0.1:53682/call%62ack": false,
		"http://127.0.0.2:53682/callback":   false,
		"http://u@127.0.0.1:53682/callback": false,
		"https://127.0.0.1:53682/callback":  false,
		"":                                  false,
	} {
		if got := matchRedirect(reg, uri); got != want {
			t.Errorf("matchRedirect(%q) = %v, want %v", uri, got, want)
		}
	}
}

func TestBasicAuthIsFormDecoded(t *testing.T) {
	// RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
	id, secret, ok, err := basicAuth("Basic " + "YSUzQWI6cyUyQiUyNg==") // "a%3Ab:s%2B%26"
	if err != nil || !ok || id != "a:b" || secret != "s+&" {
		t.Fatalf("got %q %q %v %v", id, secret, ok, err)
	}
	if _, _, _, err := basicAuth("Basic !!!"); err == nil {
		t.Fatal("malformed base64 accepted")
	}
	if _, _, ok, _ := basicAuth("Bearer abc"); ok {
		t.Fatal("a bearer header is not client authentication")
	}
}

func TestThrottleIsBoundedAndLimits(t *testing.T) {
	th := NewThrottle(ThrottleOptions{PerMinute: 60, Burst: 3, MaxKeys: 100})
	for i := range 3 {
		if !th.Allow("login", "1.2.3.4") {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	if th.Allow("login", "1.2.3.4") {
		t.Fatal("burst exceeded but allowed")
	}
	if !th.Allow("token", "1.2.3.4") || !th.Allow("login", "5.6.7.8") {
		t.Fatal("buckets are not per endpoint and address")
	}
	for i := range 1000 {
		th.Allow("login", "10.0."+string(rune('a'+i%26))+"."+strings.Repeat("x", i%50))
	}
	if n := len(th.limiters); n > 100 {
		t.Fatalf("%d buckets kept, bound is 100", n)
	}
}

// FuzzParseFormBody: whatever the body, the parser answers with a result
// or an error, never a panic, and a result never holds a repeated or
// control-character parameter.
func FuzzParseFormBody(f *testing.F) {
	for _, s := range []string{
		"grant_type=authorization_code&code=abc&code_verifier=xyz&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb",
		"grant_type=a&grant_type=b", "a=%00", "a=%ff%fe", "=&=", "a", "&&&", "a=1;b=2", "%zz=1",
		"client_id=rampart-demo&client_secret=", strings.Repeat("k=v&", 40),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		p, err := ParseFormBody(body)
		if err != nil {
			return
		}
		if len(p) > maxParams {
			t.Fatalf("%d params", len(p))
		}
		for k, v := range p {
			if hasControl(k) || hasControl(v) {
				t.Fatalf("control character in %q=%q", k, v)
			}
		}
	})
}
