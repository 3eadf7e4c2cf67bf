package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/shared/secevent"
)

// TestClientIdentityHeadersNeverReachAService: every header a client could
// use to claim an identity or steer routing is removed at the edge, and the
// X-Forwarded-* the service sees are the gateway's own.
func TestClientIdentityHeadersNeverReachAService(t *testing.T) {
	g := newGateway(t)
	spoofed := map[string]string{
		"X-User-Id": "admin", "X-User-Roles": "ADMIN", "X-Internal-Caller": "order-service",
		"X-Forwarded-For": "10.0.0.1", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http",
		"Forwarded": "for=10.0.0.1", "X-Real-Ip": "10.0.0.1", "X-Authenticated-User": "root", "X-Remote-User": "root",
		"X-Original-Url": "/internal/v1/users/1", "X-Http-Method-Override": "DELETE", "X-Method-Override": "DELETE",
		"X-Http-Method": "DELETE", "X-Spiffe-Id": "spiffe://rampart.local/service/order-service",
		"True-Client-Ip": "10.0.0.1", "X-Client-Ip": "10.0.0.1", "Cf-Connecting-Ip": "10.0.0.1",
		"X-Idempotency-Key": "resend-me",
	}
	req, _ := http.NewRequest(http.MethodGet, g.url+"/api/v1/catalog", nil)
	for k, v := range spoofed {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Request-Id", "client-chosen-request-id")
	resp := g.do(t, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := (<-g.seen).Header
	if got.Get("X-Forwarded-For") != "127.0.0.1" || got.Get("X-Forwarded-Host") != "gateway.test" || got.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("gateway's forwarding record: For=%q Host=%q Proto=%q", got.Get("X-Forwarded-For"), got.Get("X-Forwarded-Host"), got.Get("X-Forwarded-Proto"))
	}
	for k, v := range spoofed {
		for _, have := range got.Values(k) {
			if have == v {
				t.Errorf("%s: client value %q reached the service", k, have)
			}
		}
	}
	if got.Get("X-Request-Id") == "client-chosen-request-id" || got.Get("X-Request-Id") != resp.Header.Get("X-Request-Id") {
		t.Error("the service must see the gateway's request id, not the client's")
	}
	if resp.Header.Get("Server") != "" || resp.Header.Get("X-Internal-Debug") != "" {
		t.Errorf("internal response headers leaked: %v", resp.Header)
	}
}

// TestMethodOverrideIsIgnored: an override header neither changes the
// method the edge checks nor reaches the service.
func TestMethodOverrideIsIgnored(t *testing.T) {
	g := newGateway(t)
	resp := g.rawLine(t, "GET", "/api/v1/catalog", "X-HTTP-Method-Override: DELETE", "X-Method-Override: DELETE")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	seen := <-g.seen
	if seen.Method != "GET" || seen.Header.Get("X-Http-Method-Override") != "" {
		t.Errorf("service saw %s with override %q", seen.Method, seen.Header.Get("X-Http-Method-Override"))
	}
}

// TestRouting covers deny-by-default, internal paths and the method
// allowlist, each with its status and (for refusals) one event.
func TestRouting(t *testing.T) {
	g := newGateway(t)
	tests := []struct {
		name, method, path string
		want               refusal
	}{
		{"a public route is proxied", "GET", "/api/v1/catalog", refusal{status: 200}},
		{"an unknown path is 404 without an event", "GET", "/api/v2/catalog", refusal{status: 404}},
		{"internal routes do not exist at the edge", "GET", "/internal/v1/users/1", refusal{status: 404}},
		{"a method outside the route's allowlist is 405", "DELETE", "/api/v1/catalog", refusal{405, secevent.RequestRejected, "bad_method"}},
		{"TRACE is never allowed", "TRACE", "/api/v1/catalog", refusal{405, secevent.RequestRejected, "bad_method"}},
		{"an unknown method is 405", "PROPFIND", "/api/v1/catalog", refusal{405, secevent.RequestRejected, "bad_method"}},
		{"GET on the token endpoint is 405", "GET", "/oauth2/token", refusal{405, secevent.RequestRejected, "bad_method"}},
		{"POST on a health endpoint is 405 like on any route", "POST", "/readyz", refusal{405, secevent.RequestRejected, "bad_method"}},
		{"a health endpoint answers GET", "GET", "/healthz", refusal{status: 200}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := g.expectRefusal(t, tc.want, func() *http.Response { return g.rawLine(t, tc.method, tc.path) })
			if tc.want.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			g.drainSeen()
		})
	}
}

// TestHeaderHygiene: one row per hygiene rule, sent as raw bytes so that
// no client library tidies the request first. Rows whose refusal happens
// inside net/http (before any handler) are listed with no event: those are
// documented in docs/gateway.md.
func TestHeaderHygiene(t *testing.T) {
	g := newGateway(t)
	many := make([]string, 0, 120)
	for i := range 120 {
		many = append(many, "X-Pad-"+strconv.Itoa(i)+": x")
	}
	big := []string{"X-Big-1: " + strings.Repeat("a", 9000), "X-Big-2: " + strings.Repeat("b", 9000)}
	req := func(lines ...string) string { return strings.Join(lines, "\r\n") }
	tests := []struct {
		name    string
		request string
		want    refusal
	}{
		{"too many header fields are 431", req(append(append([]string{"GET /api/v1/catalog HTTP/1.1", "Host: gw"}, many...), "", "")...),
			refusal{431, secevent.RequestRejected, "too_many_headers"}},
		{"oversize header fields are 431", req(append(append([]string{"GET /api/v1/catalog HTTP/1.1", "Host: gw"}, big...), "", "")...),
			refusal{431, secevent.RequestRejected, "headers_too_large"}},
		{"heads beyond the server's own limit are 431 from net/http", req("GET /api/v1/catalog HTTP/1.1", "Host: gw", "X-Huge: "+strings.Repeat("a", 80<<10), "", ""),
			refusal{status: 431}},
		{"an overlong request target is 414", req("GET /api/v1/catalog?q="+strings.Repeat("a", 9000)+" HTTP/1.1", "Host: gw", "", ""),
			refusal{414, secevent.RequestRejected, "url_too_long"}},
		{"Content-Length with Transfer-Encoding is smuggling", req("POST /api/v1/auth/register HTTP/1.1", "Host: gw", "Content-Length: 4", "Transfer-Encoding: chunked", "", "0", "", ""),
			refusal{400, secevent.RequestRejected, "smuggling"}},
		{"Transfer-Encoding before Content-Length is smuggling", req("POST /api/v1/auth/register HTTP/1.1", "Host: gw", "Transfer-Encoding: chunked", "Content-Length: 4", "", "0", "", ""),
			refusal{400, secevent.RequestRejected, "smuggling"}},
		{"a duplicate identical Content-Length is smuggling", req("POST /api/v1/auth/register HTTP/1.1", "Host: gw", "Content-Length: 2", "Content-Length: 2", "", "{}"),
			refusal{400, secevent.RequestRejected, "smuggling"}},
		{"differing Content-Lengths are refused by net/http", req("POST /api/v1/auth/register HTTP/1.1", "Host: gw", "Content-Length: 2", "Content-Length: 3", "", "{}x"),
			refusal{status: 400}},
		{"a Content-Length list is refused by net/http", req("POST /api/v1/auth/register HTTP/1.1", "Host: gw", "Content-Length: 2, 2", "", "{}"),
			refusal{status: 400}},
		{"obs-fold (space) is smuggling", req("GET /api/v1/catalog HTTP/1.1", "Host: gw", "X-A: a", " folded", "", ""),
			refusal{400, secevent.RequestRejected, "smuggling"}},
		{"obs-fold (tab) is smuggling", req("GET /api/v1/catalog HTTP/1.1", "Host: gw", "X-A: a", "\tfolded", "", ""),
			refusal{400, secevent.RequestRejected, "smuggling"}},
		{"a bare LF line ending is smuggling", "GET /api/v1/catalog HTTP/1.1\r\nHost: gw\nX-A: b\r\n\r\n",
			refusal{400, secevent.RequestRejected, "smuggling"}},
		{"chunked on HTTP/1.0 is smuggling", req("POST /api/v1/auth/register HTTP/1.0", "Host: gw", "Transfer-Encoding: chunked", "", "0", "", ""),
			refusal{400, secevent.RequestRejected, "smuggling"}},
		{"a transfer coding other than chunked is refused by net/http", req("POST /api/v1/auth/register HTTP/1.1", "Host: gw", "Transfer-Encoding: gzip, chunked", "", "0", "", ""),
			refusal{status: 501}},
		{"a websocket upgrade is refused", req("GET /api/v1/catalog HTTP/1.1", "Host: gw", "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "", ""),
			refusal{400, secevent.RequestRejected, "upgrade"}},
		{"an h2c upgrade is refused", req("GET /api/v1/catalog HTTP/1.1", "Host: gw", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA", "", ""),
			refusal{400, secevent.RequestRejected, "upgrade"}},
		{"prior-knowledge h2c on the HTTP/1 port is a bad path", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			refusal{400, secevent.RequestRejected, "bad_path"}},
		{"a declared body over the route class limit is 413", req("POST /api/v1/auth/register HTTP/1.1", "Host: gw", "Content-Length: 600", "", strings.Repeat("a", 600)),
			refusal{413, secevent.RequestRejected, "body_too_large"}},
		{"a chunked body over the limit is 413 as it streams", req("POST /api/v1/orders HTTP/1.1", "Host: gw", "Authorization: Bearer {token}", "Transfer-Encoding: chunked", "",
			"400", strings.Repeat("a", 1024), "400", strings.Repeat("b", 1024), "0", "", ""),
			refusal{413, secevent.RequestRejected, "body_too_large"}},
		{"a second Host is refused by net/http", req("GET /api/v1/catalog HTTP/1.1", "Host: gw", "Host: evil", "", ""),
			refusal{status: 400}},
		{"an invalid header name is refused by net/http", req("GET /api/v1/catalog HTTP/1.1", "Host: gw", "X A: b", "", ""),
			refusal{status: 400}},
		{"a control byte in a value is refused by net/http", req("GET /api/v1/catalog HTTP/1.1", "Host: gw", "X-A: a\x01b", "", ""),
			refusal{status: 400}},
		{"a raw NUL in the target is refused by net/http", "GET /api/v1/\x00catalog HTTP/1.1\r\nHost: gw\r\n\r\n",
			refusal{status: 400}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			request := strings.ReplaceAll(tc.request, "{token}", g.token(t, nil))
			g.expectRefusal(t, tc.want, func() *http.Response { return g.raw(t, request) })
			g.drainSeen()
		})
	}
}

// TestSmugglingRefusalClosesTheConnection: after an ambiguous head the
// rest of the byte stream is never parsed as a request.
func TestSmugglingRefusalClosesTheConnection(t *testing.T) {
	g := newGateway(t)
	smuggled := "GET /api/v1/catalog HTTP/1.1\r\nHost: gw\r\n\r\n"
	resp := g.raw(t, "POST /api/v1/auth/register HTTP/1.1\r\nHost: gw\r\nContent-Length: "+strconv.Itoa(len("0\r\n\r\n"+smuggled))+
		"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+smuggled)
	if resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("status %d close %v", resp.StatusCode, resp.Close)
	}
	select {
	case r := <-g.seen:
		t.Fatalf("smuggled request reached the service: %s %s", r.Method, r.URL)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestKeepAliveFramingStaysInStep: clean requests with bodies, chunked and
// sized, pipelined on one connection, are each judged on their own head.
func TestKeepAliveFramingStaysInStep(t *testing.T) {
	g := newGateway(t)
	// Bodies that look like header lines: only framing-aware parsing
	// keeps them out of the next head.
	body := "X-Evil: 1\r\n\r\n abc"
	one := "POST /api/v1/auth/register HTTP/1.1\r\nHost: gw\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	two := "POST /api/v1/auth/register HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\r\n a\r\n0\r\n\r\n"
	three := "GET /api/v1/catalog HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
	conn := dial(t, g.addr)
	if _, err := io.WriteString(conn, one+two+three); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		resp := readResponse(t, conn)
		if resp.StatusCode != 200 {
			t.Fatalf("response %d: status %d", i+1, resp.StatusCode)
		}
	}
	if evs := g.events.all(); len(evs) != 0 {
		t.Fatalf("clean pipelined requests produced events %v", evs)
	}
}

// TestFramingKeepsJudgingAfterPaddedLengths: net/http reads a chunk size
// of up to 16 hex digits and a Content-Length of any number of digits below
// 2^63, leading zeros included. The framing check must follow those bodies
// too: if it gives up on them, every later request on the connection
// (here a Content-Length + Transfer-Encoding head) goes unjudged.
func TestFramingKeepsJudgingAfterPaddedLengths(t *testing.T) {
	smuggling := "POST /api/v1/auth/register HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	tests := []struct{ name, first string }{
		{"16-digit chunk size", "POST /api/v1/auth/register HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"0000000000000002\r\n{}\r\n0\r\n\r\n"},
		// A body that looks like the end of a head: read as one, it would
		// also shift every later verdict onto the wrong request.
		{"20-digit Content-Length", "POST /api/v1/auth/register HTTP/1.1\r\nHost: gw\r\nContent-Length: 00000000000000000006\r\n\r\n{}\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t)
			conn := dial(t, g.addr)
			if _, err := io.WriteString(conn, tc.first+smuggling); err != nil {
				t.Fatal(err)
			}
			if resp := readResponse(t, conn); resp.StatusCode != 200 {
				t.Fatalf("padded but valid request: status %d, want 200", resp.StatusCode)
			}
			<-g.seen
			if resp := readResponse(t, conn); resp.StatusCode != 400 || !resp.Close {
				t.Fatalf("CL+TE after it: status %d close %v, want 400 and close", resp.StatusCode, resp.Close)
			}
			if evs := g.events.all(); len(evs) != 1 || evs[0].Reason != "smuggling" {
				t.Fatalf("events %v, want one request.rejected/smuggling", evs)
			}
		})
	}
}

// TestOptionsAsteriskMeetsTheHandler: net/http answers "OPTIONS *" itself
// unless told not to, without calling the handler, so the framing verdict
// queued for it was never taken and the next request on the connection
// took it instead of its own: a CL+TE request after "OPTIONS *" went
// through as clean. The edge passes it to the handler, which refuses it
// (not origin form) with one event like any other bad target.
func TestOptionsAsteriskMeetsTheHandler(t *testing.T) {
	g := newGateway(t)
	g.expectRefusal(t, refusal{400, secevent.RequestRejected, "bad_path"}, func() *http.Response {
		return g.raw(t, "OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n")
	})
	g.drainSeen()

	conn := dial(t, g.addr)
	smuggling := "POST /api/v1/auth/register HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	if _, err := io.WriteString(conn, "OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n"+smuggling); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		resp := readResponse(t, conn)
		if resp.Close || i == 1 {
			if resp.StatusCode != 400 || i == 1 && !resp.Close {
				t.Fatalf("response %d: status %d close %v, want 400 (and the connection closed before the smuggled request)", i+1, resp.StatusCode, resp.Close)
			}
			break
		}
		if resp.StatusCode != 400 {
			t.Fatalf("OPTIONS *: status %d, want 400", resp.StatusCode)
		}
	}
	select {
	case r := <-g.seen:
		t.Fatalf("request reached the service: %s %s", r.Method, r.URL)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestConnectionHeaderCannotDropTheGatewaysHeaders: a client naming the
// gateway's own request headers in Connection (hop-by-hop, so the proxy
// deletes them) must not strip them from the forwarded request: the
// service would mint another request id, and its security events would
// no longer match the gateway's log or the id the client was shown.
func TestConnectionHeaderCannotDropTheGatewaysHeaders(t *testing.T) {
	g := newGateway(t)
	resp := g.rawLine(t, "GET", "/api/v1/catalog", "Connection: X-Request-Id, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := (<-g.seen).Header
	if id := got.Get("X-Request-Id"); id == "" || id != resp.Header.Get("X-Request-Id") {
		t.Errorf("service saw request id %q, want the gateway's %q", id, resp.Header.Get("X-Request-Id"))
	}
	if got.Get("X-Forwarded-For") != "127.0.0.1" || got.Get("X-Forwarded-Host") != "gateway.test" || got.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("gateway's forwarding record: For=%q Host=%q Proto=%q", got.Get("X-Forwarded-For"), got.Get("X-Forwarded-Host"), got.Get("X-Forwarded-Proto"))
	}
}

// TestStatusIsTheFinalAnswers: a 103 passed on before the answer is not
// what the access log and the metrics record.
func TestStatusIsTheFinalAnswers(t *testing.T) {
	s := &statusWriter{ResponseWriter: httptest.NewRecorder()}
	s.WriteHeader(http.StatusEarlyHints)
	if got := s.status(); got != http.StatusOK {
		t.Fatalf("after a 103 alone: %d, want 200 (net/http's default)", got)
	}
	s.WriteHeader(http.StatusNotFound)
	if got := s.status(); got != http.StatusNotFound {
		t.Fatalf("after 103 then 404: %d, want 404", got)
	}
}
