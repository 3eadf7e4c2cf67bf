package httpapi

import (
	"net/http"
	"testing"

	"github.com/rampart-go/rampart/shared/secevent"
)

// TestPathNormalisation sends each path exactly as written (raw request
// line) and checks it is either refused as bad_path — status 400,
// problem+json, one request.rejected/bad_path event and its metric — or
// routed to exactly the route its plain spelling names. No variant may
// reach a different service than the plain path would.
func TestPathNormalisation(t *testing.T) {
	g := newGateway(t)
	bad := refusal{400, secevent.RequestRejected, secevent.ReasonBadPath}
	// A protected route answers 401 without a token: the route was matched.
	routed := refusal{401, secevent.TokenRejected, secevent.ReasonMissing}
	tests := []struct {
		name, path string
		want       refusal
	}{
		// Accepted spellings: canonical paths route normally.
		{"the plain path", "/api/v1/catalog", refusal{status: 200}},
		{"a query is not part of the path", "/api/v1/catalog?limit=10&cursor=a%2Fb", refusal{status: 200}},
		{"an escaped non-ASCII letter (valid UTF-8) is allowed", "/api/v1/users/caf%C3%A9", routed},
		{"an escaped space is allowed", "/api/v1/users/a%20b", routed},
		{"sub-delims are allowed raw", "/api/v1/users/a+b=c", routed},
		// Dot segments, plain and encoded.
		{"dot-dot", "/api/v1/catalog/../../internal/v1/users", bad},
		{"dot-dot at the end", "/api/v1/users/..", bad},
		{"single dot", "/api/v1/./catalog", bad},
		{"triple dot", "/api/v1/.../catalog", bad},
		{"encoded dot-dot lower case", "/api/v1/users/%2e%2e/%2e%2e/internal", bad},
		{"encoded dot-dot upper case", "/api/v1/users/%2E%2E/internal", bad},
		{"half-encoded dot-dot", "/api/v1/users/.%2E/internal", bad},
		{"encoded single dot", "/api/v1/%2E/catalog", bad},
		{"double-encoded dot-dot", "/api/v1/users/%252e%252e/internal", bad},
		// Slashes.
		{"double slash at the start", "//api/v1/catalog", bad},
		{"double slash inside", "/api/v1//catalog", bad},
		{"trailing slash", "/api/v1/catalog/", bad},
		{"encoded slash lower case", "/api/v1/users/a%2f..%2finternal", bad},
		{"encoded slash upper case", "/api/v1/users%2F1", bad},
		{"double-encoded slash", "/api/v1/users%252F1", bad},
		{"backslash", "/api/v1/users\\..\\internal", bad},
		{"encoded backslash", "/api/v1/users%5C..%5Cinternal", bad},
		// NUL, controls and bytes that are not path characters.
		{"encoded NUL", "/api/v1/catalog%00.json", bad},
		{"encoded CR LF", "/api/v1/catalog%0D%0ASet-Cookie:x", bad},
		{"encoded tab", "/api/v1/catalog%09", bad},
		{"raw non-ASCII byte", "/api/v1/caf\xc3\xa9", bad},
		{"raw double quote", "/api/v1/users/\"x\"", bad},
		{"semicolon path parameter (Tomcat ..;)", "/api/v1/users/..;/internal", bad},
		{"semicolon matrix parameter", "/api/v1/catalog;jsessionid=1", bad},
		{"encoded semicolon", "/api/v1/catalog%3Bx", bad},
		{"fragment in the target", "/api/v1/catalog#frag", bad},
		// Needless and malformed escapes: second spellings.
		{"escaped unreserved letter", "/api/v1/c%61talog", bad},
		{"escaped unreserved upper letter", "/api/v1/%43atalog", bad},
		{"escaped sub-delim", "/api/v1/users/a%2Bb", bad},
		{"lower-case hex in an allowed escape", "/api/v1/users/caf%c3%a9", bad},
		{"truncated escape", "/api/v1/catalog%2", refusal{status: 400}}, // net/http refuses it first
		{"non-hex escape", "/api/v1/catalog%zz", refusal{status: 400}},  // net/http refuses it first
		{"encoded percent", "/api/v1/users/%25", bad},
		// Overlong and invalid UTF-8.
		{"overlong slash C0 AF", "/api/v1/users/%C0%AF..%C0%AFinternal", bad},
		{"overlong dot C0 AE", "/api/v1/users/%C0%AE%C0%AE", bad},
		{"three-byte overlong slash", "/api/v1/users/%E0%80%AF", bad},
		{"lone continuation byte", "/api/v1/users/%80", bad},
		{"UTF-16 surrogate", "/api/v1/users/%ED%A0%80", bad},
		// Case tricks: a folded spelling of a route is refused, not 404.
		{"upper-case route", "/API/V1/CATALOG", bad},
		{"mixed-case route", "/Api/v1/Catalog", bad},
		{"case-folded internal prefix", "/Internal/v1/users", bad},
		{"case-folded prefix route", "/api/v1/USERS/me", bad},
		// Request-target forms other than origin form.
		{"absolute form", "http://evil.example/api/v1/catalog", bad},
		{"asterisk form", "*", bad},
	}
	if len(tests) < 30 {
		t.Fatalf("the table must hold at least 30 variants, has %d", len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g.expectRefusal(t, tc.want, func() *http.Response { return g.rawLine(t, "GET", tc.path) })
			if tc.want.status == 200 {
				if seen := <-g.seen; seen.URL.Path != "/api/v1/catalog" {
					t.Errorf("routed as %q", seen.URL.Path)
				}
			}
		})
	}
}
